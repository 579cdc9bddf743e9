"""Foreign database errors become one clear, masked line: the mapping, the store and the CLI."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.util.exc import CommandError
from click.testing import CliRunner
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import make_url

from recorder.cli import cli
from recorder.errors import (
    ConfigError,
    DatabaseUnreachable,
    ReadOnlyViolation,
    RecorderError,
    StorageError,
)
from storage.db import database_info, upgrade_database
from storage.errors import map_db_errors, mask_url
from storage.store import TranscriptStore
from tests.support.timing import TIMEOUT

SECRET = "hunter2"
URL = f"postgresql+asyncpg://rec:{SECRET}@db.example:5432/recorder"


def _wrapped(cls: type[sa_exc.DBAPIError], orig: BaseException) -> sa_exc.DBAPIError:
    return cls("SELECT 1", {}, orig)  # type: ignore[arg-type]


# Every kind of foreign exception the storage seam catches, and what it becomes.
MAPPING = [
    (sa_exc.ArgumentError("Could not parse SQLAlchemy URL"), ConfigError),
    (sa_exc.NoSuchModuleError("Can't load plugin: sqlalchemy.dialects:nope"), ConfigError),
    (CommandError("Can't locate revision identified by 'x'"), StorageError),
    (
        _wrapped(sa_exc.OperationalError, sqlite3.OperationalError("unable to open database file")),
        DatabaseUnreachable,
    ),
    (
        _wrapped(sa_exc.OperationalError, sqlite3.OperationalError("disk I/O error")),
        DatabaseUnreachable,
    ),
    (
        _wrapped(sa_exc.OperationalError, sqlite3.OperationalError("database is locked")),
        StorageError,
    ),
    (
        _wrapped(
            sa_exc.OperationalError,
            sqlite3.OperationalError("attempt to write a readonly database"),
        ),
        DatabaseUnreachable,
    ),
    (_wrapped(sa_exc.DatabaseError, sqlite3.DatabaseError("file is not a database")), StorageError),
    (
        _wrapped(sa_exc.IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed")),
        StorageError,
    ),
    (_wrapped(sa_exc.ProgrammingError, sqlite3.ProgrammingError("bad parameter")), StorageError),
    (_wrapped(sa_exc.InterfaceError, Exception("connection is closed")), DatabaseUnreachable),
    (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)"), DatabaseUnreachable),
    (socket.gaierror(-2, "Name or service not known"), DatabaseUnreachable),
    (TimeoutError(), DatabaseUnreachable),
    (sa_exc.TimeoutError("QueuePool limit reached"), DatabaseUnreachable),
    (asyncpg.InvalidCatalogNameError('database "x" does not exist'), DatabaseUnreachable),
    (
        asyncpg.InvalidPasswordError('password authentication failed for user "rec"'),
        DatabaseUnreachable,
    ),
    (
        asyncpg.InvalidAuthorizationSpecificationError('role "x" does not exist'),
        DatabaseUnreachable,
    ),
    (asyncpg.CannotConnectNowError("the database system is starting up"), DatabaseUnreachable),
    (
        asyncpg.ReadOnlySQLTransactionError("cannot execute DELETE in a read-only transaction"),
        ReadOnlyViolation,
    ),
    (asyncpg.UniqueViolationError("duplicate key value"), StorageError),
    (asyncpg.InvalidSchemaNameError("no schema has been selected to create in"), ConfigError),
    (asyncpg.UndefinedTableError('relation "x" does not exist'), StorageError),
    (
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        StorageError,
    ),
]


@pytest.mark.parametrize(("foreign", "expected"), MAPPING, ids=lambda v: type(v).__name__)
def test_every_foreign_error_is_mapped(foreign: BaseException, expected: type) -> None:
    with pytest.raises(RecorderError) as caught, map_db_errors(URL):
        raise foreign
    assert type(caught.value) is expected
    assert caught.value.__cause__ is foreign
    message = str(caught.value)
    assert SECRET not in message
    assert "\n" not in message and not message.endswith(".")
    assert message[0].islower() or message[0] in "'\""


def test_a_bad_argument_stays_a_value_error() -> None:
    wrapped = sa_exc.StatementError("bind failed", "INSERT", {}, ValueError("naive datetime"))
    with pytest.raises(ValueError, match="naive datetime"), map_db_errors(URL):
        raise wrapped


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError), map_db_errors(URL):
        raise KeyError("not a database problem")


def test_mask_url() -> None:
    assert SECRET not in mask_url(URL) and "***" in mask_url(URL)
    assert mask_url(make_url(URL)) == mask_url(URL)
    assert mask_url(f"garbage://a:{SECRET}@ b c") != ""


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "mysql+aiomysql://u@h/db",
        f"oracle://u:{SECRET}@h/db",
        "sqlite+nodriver:///x.db",
    ],
)
async def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        await TranscriptStore.open(url)
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)


async def test_unreachable_postgres() -> None:
    url = f"postgresql+asyncpg://rec:{SECRET}@127.0.0.1:1/recorder"
    with pytest.raises(DatabaseUnreachable) as caught:
        await TranscriptStore.open(url)
    message = str(caught.value)
    assert "127.0.0.1:1" in message and SECRET not in message and "\n" not in message


@pytest.mark.postgres
async def test_postgres_schema_that_does_not_exist(postgres_url: str) -> None:
    url = make_url(postgres_url).update_query_dict({"search_path": "no_such_schema_here"})
    with pytest.raises(ConfigError, match="search_path=no_such_schema_here.*create the schema"):
        await upgrade_database(url.render_as_string(hide_password=False))


async def test_unusable_sqlite_paths(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create the directory"):
        await upgrade_database(f"sqlite+aiosqlite:///{blocker / 'sub' / 'r.db'}")
    # A directory where the database file should be.
    with pytest.raises(DatabaseUnreachable, match="cannot open the database"):
        await TranscriptStore.open(f"sqlite+aiosqlite:///{tmp_path}", auto_migrate=True)
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("these are not the droids " * 100)
    with pytest.raises(StorageError, match="not a usable SQLite database"):
        await TranscriptStore.open(f"sqlite+aiosqlite:///{not_sqlite}", auto_migrate=True)


def _cli(*args: str):
    result = CliRunner().invoke(cli, list(args))
    return result, result.stderr.strip().splitlines()


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        f"postgresql+asyncpg://rec:{SECRET}@127.0.0.1:1/recorder",
        "mysql://u@h/db",
    ],
)
def test_cli_db_upgrade_fails_in_one_line(url: str) -> None:
    result, lines = _cli("db", "upgrade", "--db", url)
    assert result.exit_code != 0
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and SECRET not in result.output


def test_cli_db_upgrade_and_info_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sub' / 'r.db'}"
    result, _ = _cli("db", "info", "--db", url)
    assert result.exit_code == 0 and "revision: none" in result.stdout
    assert not (tmp_path / "sub" / "r.db").exists()
    result, _ = _cli("db", "upgrade", "--db", url)
    assert result.exit_code == 0, result.output
    result, _ = _cli("db", "info", "--db", url)
    assert result.exit_code == 0
    assert "meetings: 0" in result.stdout and "dialect: sqlite" in result.stdout


@pytest.mark.postgres
def test_cli_db_info_masks_the_password(postgres_url: str) -> None:
    # The test server trusts local connections, so any password gets in.
    url = make_url(postgres_url).set(password=SECRET).render_as_string(hide_password=False)
    result, _ = _cli("db", "upgrade", "--db", url)
    assert result.exit_code == 0, result.output
    result, _ = _cli("db", "info", "--db", url)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output and "***" in result.stdout
    assert "dialect: postgresql" in result.stdout and "turns: 0" in result.stdout


def test_cli_on_a_database_behind_gives_one_line(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # exists, never migrated
    url = f"sqlite+aiosqlite:///{path}"
    result, lines = _cli("meetings", "--db", url)
    assert result.exit_code == 1
    assert len(lines) == 1 and "recorder db upgrade --db" in lines[0], result.stderr
    assert "Traceback" not in result.output
    result, _ = _cli("db", "upgrade", "--db", url)
    assert result.exit_code == 0
    result, _ = _cli("meetings", "--db", url)
    assert "recorder db upgrade" not in result.output


async def test_database_info_counts(store: TranscriptStore, db_url: str) -> None:
    from datetime import UTC, datetime

    await store.start_meeting("c", 1, datetime.now(UTC))
    info = await database_info(db_url)
    assert info["meetings"] == 1 and info["turns"] == 0 and info["revision"] == info["head"]


@pytest.mark.postgres
async def test_a_postgres_deadlock_victim_runs_again(postgres_url: str) -> None:
    # Two transactions lock two rows in opposite orders: PostgreSQL rolls one back
    # (deadlock detected); the store runs it again, and both are stored.
    async with await TranscriptStore.open(postgres_url, auto_migrate=True) as store:

        async def setup(connection: Any) -> None:
            await connection.execute(text("CREATE TABLE probe (id int PRIMARY KEY, v int)"))
            await connection.execute(text("INSERT INTO probe VALUES (1, 0), (2, 0)"))

        await store.run_in_transaction(setup, write=True)
        holding = {1: asyncio.Event(), 2: asyncio.Event()}
        attempts = {1: 0, 2: 0}

        def locking(first: int, then: int) -> Any:
            async def work(connection: Any) -> None:
                attempts[first] += 1
                update = text("UPDATE probe SET v = v + 1 WHERE id = :id")
                await connection.execute(update, {"id": first})
                holding[first].set()
                await holding[then].wait()  # each holds its row, then wants the other's
                await connection.execute(update, {"id": then})

            return work

        async with asyncio.timeout(TIMEOUT * 2):
            await asyncio.gather(
                store.run_in_transaction(locking(1, 2), write=True),
                store.run_in_transaction(locking(2, 1), write=True),
            )
        values = await store.run_in_transaction(
            lambda c: c.execute(text("SELECT v FROM probe ORDER BY id")), write=False
        )
    assert sorted(attempts.values()) == [1, 2]  # one was the deadlock's victim, once
    assert [row[0] for row in values] == [2, 2]  # both transactions stored, once each
