"""Engines and migrations for the two supported databases: SQLite (aiosqlite) and PostgreSQL.

:func:`create_engine` sets every SQLite connection up for a recorder that
writes while other processes read or write (WAL, foreign keys, a busy
timeout, ``BEGIN IMMEDIATE`` for writes). Migrations run through alembic on a
connection of that engine, inside the caller's event loop (``run_sync``).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event, func, select
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, SingletonThreadPool, StaticPool

import migrations
from recorder.config import ASYNC_DRIVERS, default_database_url
from recorder.errors import ConfigError, MigrationRequired, StorageError
from storage.errors import map_db_errors, mask_url
from storage.models import MeetingRow, NoteRow, TurnRow

__all__ = [
    "BUSY_TIMEOUT_S",
    "WRITE",
    "create_engine",
    "create_sync_sqlite_engine",
    "current_revision",
    "database_info",
    "default_database_url",
    "downgrade_database",
    "ensure_schema",
    "given_url",
    "head_revision",
    "is_memory_database",
    "migrations_config",
    "normalize_url",
    "prepare_sqlite_file",
    "sqlite_path",
    "upgrade_database",
]

log = logging.getLogger("storage.db")

# How long a SQLite connection waits for another process's write lock before
# giving up with "database is locked". Writes are short (one batch of turns),
# so 10 s only runs out if another process is stuck.
BUSY_TIMEOUT_S = 10.0
# Switching a new file to WAL: tries, and the pause between them (about 2 s in all).
_WAL_ATTEMPTS = 100
_WAL_RETRY_S = 0.02
# Connect timeout for PostgreSQL (asyncpg waits 60 s by default).
_CONNECT_TIMEOUT_S = 10.0
# Execution option read by the SQLite "begin" hook: writers take the write
# lock up front (BEGIN IMMEDIATE), so a transaction never has to upgrade a
# read lock, which SQLite refuses at once with SQLITE_BUSY instead of waiting.
WRITE = {"recorder_begin": "IMMEDIATE"}
MIGRATIONS_DIR = Path(migrations.__file__).parent
# The URL each engine was made from, for messages: the engine's own URL
# lacks the search_path that create_engine moves into the connect arguments.
_GIVEN_URLS: weakref.WeakKeyDictionary[Any, URL] = weakref.WeakKeyDictionary()


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL and switch it to its async driver.

    Raises:
        ConfigError: the URL is malformed or names an unsupported database.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise ConfigError(
            f"{mask_url(str(url))!r} is not a database URL; expected e.g. "
            "sqlite+aiosqlite:///path/recorder.db or postgresql+asyncpg://user@host/db"
        ) from exc
    driver = ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            f"the database URL {mask_url(parsed)} uses the unsupported driver "
            f"{parsed.drivername!r}; use sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    return parsed.set(drivername=driver)


def is_memory_database(url: URL) -> bool:
    """Whether the URL is an in-memory SQLite database (gone when the engine closes)."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for PostgreSQL and in-memory databases."""
    if url.get_backend_name() != "sqlite" or is_memory_database(url):
        return None
    database = url.database or ""
    if database.startswith("file:"):  # URI form: file:path?mode=...
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database).expanduser()


def _on_sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # The driver's own transaction handling would start transactions behind
    # our back; turn it off and emit BEGIN ourselves (see _on_sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL, which lets readers (exports, search) run while we write.

    WAL is a property of the file, so most connections find it set already. The
    switch itself needs the file to itself and SQLite does not wait for that (the
    busy timeout does not apply): two processes creating one database at once
    see "database is locked", so the switch is retried briefly.
    """
    cursor.execute("PRAGMA journal_mode")
    row = cursor.fetchone()
    if row is not None and str(row[0]).lower() == "wal":
        return
    for attempt in range(_WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as exc:  # the driver's OperationalError, adapted by SQLAlchemy
            if "locked" not in str(exc).lower() or attempt == _WAL_ATTEMPTS - 1:
                raise
            time.sleep(_WAL_RETRY_S)  # only while a new file is created


def _on_sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get("recorder_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def create_engine(url: str | URL, *, pooled: bool = True) -> AsyncEngine:
    """Create the async engine for a recorder database.

    SQLite connections get WAL mode, ``foreign_keys=ON`` and a busy timeout on
    every connect. A PostgreSQL URL may carry ``?search_path=schema`` to keep
    recorder's tables in a schema of their own.

    Args:
        url: the database URL.
        pooled: keep connections open for reuse; False closes each one when
            it is returned (NullPool).

    Raises:
        ConfigError: the URL is malformed or unsupported.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        options: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
        if is_memory_database(parsed):
            # One shared connection, or every checkout would see a new empty database.
            options = {"poolclass": StaticPool}
        with map_db_errors(parsed):
            engine = create_async_engine(parsed, **options)
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
        _GIVEN_URLS[engine.sync_engine] = parsed
        return engine
    connect_args: dict[str, Any] = {"timeout": _CONNECT_TIMEOUT_S}
    given = parsed
    search_path = parsed.query.get("search_path")
    if search_path:
        value = search_path if isinstance(search_path, str) else ",".join(search_path)
        connect_args["server_settings"] = {"search_path": value}
        parsed = parsed.difference_update_query(["search_path"])
    pool: dict[str, Any] = {"pool_pre_ping": True} if pooled else {"poolclass": NullPool}
    with map_db_errors(given):
        engine = create_async_engine(parsed, connect_args=connect_args, **pool)
    _GIVEN_URLS[engine.sync_engine] = given
    return engine


def create_sync_sqlite_engine(url: URL) -> Engine:
    """A sync engine on a SQLite file, its connections set up as :func:`create_engine`'s.

    For a thread that runs the store's write batches on ``sqlite3`` directly
    (:mod:`storage.sqlite_thread`), one connection at a time.
    """
    engine = create_sync_engine(
        url.set(drivername="sqlite+pysqlite"), poolclass=SingletonThreadPool
    )
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def given_url(engine: AsyncEngine) -> URL:
    """The URL an engine of :func:`create_engine` was made from (with its search_path)."""
    return _GIVEN_URLS.get(engine.sync_engine, engine.url)


def migrations_config() -> AlembicConfig:
    """The alembic configuration, built in code from the installed migrations package."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """The revision this version of recorder needs."""
    head = ScriptDirectory.from_config(migrations_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise StorageError("recorder was installed without its database migrations")
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None if recorder never migrated it."""
    with map_db_errors(given_url(engine)):
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )


async def _run_alembic(engine: AsyncEngine, action: Callable[[AlembicConfig], None]) -> None:
    config = migrations_config()

    def work(connection: Connection) -> None:
        # env.py runs on this connection instead of starting its own event loop.
        config.attributes["connection"] = connection
        action(config)

    with map_db_errors(given_url(engine)):
        async with engine.execution_options(**WRITE).begin() as connection:
            await connection.run_sync(work)


def prepare_sqlite_file(url: URL) -> None:
    """Create the directory a SQLite database file goes in.

    Raises:
        ConfigError: the directory cannot be created.
    """
    path = sqlite_path(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the directory for the database at {mask_url(url)}: "
                f"{exc.strerror or exc}; pick a writable path with --db"
            ) from exc


async def upgrade_database(url: str | URL, revision: str = "head") -> str:
    """Migrate the database to ``revision`` (creating a SQLite file if needed).

    Returns:
        The revision the database is at afterwards.

    Raises:
        ConfigError: bad URL; DatabaseUnreachable: cannot connect; StorageError: the
            migration failed.
    """
    parsed = normalize_url(url)
    prepare_sqlite_file(parsed)
    engine = create_engine(parsed)
    try:
        if revision == "head":
            # Refuses a database from a newer recorder with a clear message.
            await ensure_schema(engine, auto_migrate=True, url=parsed)
        else:
            await _run_alembic(engine, lambda config: command.upgrade(config, revision))
        current = await current_revision(engine)
    finally:
        await engine.dispose()
    log.info("= database %s is at revision %s", mask_url(parsed), current)
    return current or "base"


async def downgrade_database(url: str | URL, revision: str = "base") -> str | None:
    """Migrate the database down to ``revision`` (``base`` drops every recorder table).

    Returns:
        The revision the database is at afterwards (None at base).
    """
    engine = create_engine(url)
    try:
        await _run_alembic(engine, lambda config: command.downgrade(config, revision))
        return await current_revision(engine)
    finally:
        await engine.dispose()


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(migrations_config())
    return {revision.revision for revision in script.walk_revisions()}


async def ensure_schema(
    engine: AsyncEngine, *, auto_migrate: bool, url: str | URL | None = None
) -> None:
    """Migrate the database, or check that it is at head.

    Args:
        engine: an engine from :func:`create_engine`.
        auto_migrate: upgrade to head if behind, instead of refusing.
        url: the URL the user gave, for messages (the engine's lacks ``search_path``).

    Raises:
        MigrationRequired: the database is behind and ``auto_migrate`` is false.
        StorageError: the database is at a revision this recorder does not know.
    """
    where = mask_url(url if url is not None else given_url(engine))
    current = await current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is not None and current not in _known_revisions():
        raise StorageError(
            f"the database at {where} is at revision {current}, which this version of "
            "recorder does not know; upgrade recorder"
        )
    if auto_migrate:
        await _run_alembic(engine, lambda config: command.upgrade(config, "head"))
        return
    hint = f"run 'recorder db upgrade --db {where}'"
    if current is None:
        raise MigrationRequired(
            f"the database at {where} has no recorder tables yet but recorder needs "
            f"revision {head}; {hint}"
        )
    raise MigrationRequired(
        f"the database at {where} is at revision {current} but recorder needs {head}; {hint}"
    )


async def database_info(url: str | URL) -> dict[str, object]:
    """Describe a database without changing it.

    Returns:
        ``url`` (password masked), ``dialect``, ``revision`` (``none`` if never
        migrated), ``head``, and, when migrated, counts of ``meetings``,
        ``turns`` and ``notes``.
    """
    parsed = normalize_url(url)
    info: dict[str, object] = {
        "url": mask_url(parsed),
        "dialect": parsed.get_backend_name(),
    }
    head = head_revision()
    path = sqlite_path(parsed)
    if path is not None and not path.exists():
        # Do not create the file just to look at it.
        info.update(revision="none (no database file yet)", head=head)
        return info
    engine = create_engine(parsed)
    try:
        current = await current_revision(engine)
        info.update(revision=current or "none", head=head)
        if current is not None:
            with map_db_errors(parsed):
                async with engine.connect() as connection:
                    for name, table in (
                        ("meetings", MeetingRow),
                        ("turns", TurnRow),
                        ("notes", NoteRow),
                    ):
                        count = await connection.scalar(select(func.count()).select_from(table))
                        info[name] = int(count or 0)
    finally:
        await engine.dispose()
    return info
