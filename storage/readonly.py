"""``recorder sql``: run one user statement on a connection the database keeps read-only.

Read-only is enforced by the database, not by inspecting the SQL:

* SQLite: a separate connection opened ``mode=ro`` (URI), ``PRAGMA
  query_only=ON``, and an authorizer (https://www.sqlite.org/c3ref/set_authorizer.html)
  that refuses ATTACH/DETACH (which would create files, as would ``VACUUM INTO``),
  any PRAGMA that is not a known read (``writable_schema``, ``journal_mode=...``
  and friends), and reading any table outside :data:`READABLE_TABLES` (the API's
  token hashes, webhook secrets, audit log), as the reader role's grants do on
  PostgreSQL (:mod:`storage.bounded`);
* PostgreSQL: a fresh, unpooled connection whose session default and
  transaction are ``READ ONLY``, with a statement timeout; it is closed
  afterwards, so no ``SET`` can leak into the store's pool. ``COPY`` is
  refused as well, since ``COPY ... TO 'file'`` writes on the server even in a
  read-only transaction (for privileged roles: run recorder as an ordinary one).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import URL

from recorder.errors import ReadOnlyViolation, RecorderError, StorageError
from storage.db import create_engine, is_memory_database, normalize_url, sqlite_path
from storage.errors import map_db_errors, translate_db_error
from storage.records import QueryResult

__all__ = ["READABLE_TABLES", "Column", "TableSchema", "describe_schema", "run_read_only_query"]

# What read-only SQL may see: the transcripts, not the API's token hashes, webhook
# secrets or audit log. PostgreSQL grants the reader role these (storage.bounded);
# on SQLite the authorizer below refuses reading any other table.
READABLE_TABLES = ("meetings", "participants", "stream_sessions", "turns", "notes", "transcript")
# What else a SQLite statement may read, none of it beyond the transcripts: the
# full-text index of turns and its shadow tables, which FTS5 also reads on the
# statement's behalf (on PostgreSQL, the column turns.text_search), and the JSON
# table-valued functions. The schema (sqlite_master; on PostgreSQL pg_catalog is
# readable too) and the PRAGMA functions (checked as PRAGMAs) are not tables of the
# database, so the authorizer lets them through.
_SQLITE_READABLE = frozenset({"json_each", "json_tree", "jsonb_each", "jsonb_tree"})
_SQLITE_READABLE_PREFIX = "turns_fts"

# Internal objects `recorder sql --tables` does not list: migration bookkeeping,
# the SQLite full-text index and its shadow tables, the PostgreSQL tsvector.
_HIDDEN_TABLE_PREFIXES = ("alembic_version", "turns_fts", "sqlite_")
_HIDDEN_COLUMNS = frozenset({("turns", "text_search")})

# 25006 read_only_sql_transaction; 25001 active_sql_transaction, raised by
# "SET TRANSACTION READ WRITE" once the transaction has run a query.
_READ_ONLY_SQLSTATES = ("25006", "25001")
_LEADING_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_TIMEOUT_SQLSTATE = "57014"  # query_canceled (statement_timeout)
# PRAGMAs whose argument names a table or index, or a limit: reads only.
_PRAGMAS_WITH_ARGUMENT = frozenset(
    {
        "foreign_key_check",
        "foreign_key_list",
        "index_info",
        "index_list",
        "index_xinfo",
        "integrity_check",
        "quick_check",
        "table_info",
        "table_list",
        "table_xinfo",
    }
)
# PRAGMAs allowed only without a value (reading a setting, not changing it).
# data_version is also run internally by FTS5 when reading turns_fts.
_PRAGMAS_READ = frozenset(
    {
        "application_id",
        "auto_vacuum",
        "busy_timeout",
        "cache_size",
        "collation_list",
        "compile_options",
        "data_version",
        "database_list",
        "encoding",
        "foreign_keys",
        "freelist_count",
        "function_list",
        "journal_mode",
        "module_list",
        "page_count",
        "page_size",
        "pragma_list",
        "query_only",
        "schema_version",
        "synchronous",
        "user_version",
    }
)
_PROGRESS_STEPS = 10_000  # SQLite VM steps between deadline checks


class _Authorizer:
    """SQLite's authorizer callback for one query; remembers a table it refused to read.

    SQLite calls it while preparing each statement, on aiosqlite's thread; the
    query's coroutine reads :attr:`refused` only after that statement failed.

    Args:
        objects: the lower-cased names of the database's tables, views and
            virtual-table modules (``dbstat`` and the like). A read of one of them
            outside the readable ones is refused; any other name read is a CTE's.
    """

    def __init__(self, objects: frozenset[str]) -> None:
        self.refused: str | None = None
        self._objects = objects

    def __call__(
        self,
        action: int,
        arg1: str | None,
        arg2: str | None,
        database: str | None,
        trigger: str | None,
    ) -> int:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in _PRAGMAS_WITH_ARGUMENT or (name in _PRAGMAS_READ and arg2 is None):
                return sqlite3.SQLITE_OK
            return sqlite3.SQLITE_DENY
        # SQLITE_READ comes for each column read, with the column "" when none is
        # (count(*)), and for each table behind a view; a recursive CTE's own name
        # comes too, which is why only the database's own names are checked.
        if action == sqlite3.SQLITE_READ:
            name = (arg1 or "").lower()
            if name in self._objects and not _is_readable(name):
                self.refused = arg1
                return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK


def _is_readable(name: str) -> bool:
    return (
        name in READABLE_TABLES
        or name in _SQLITE_READABLE
        or name.startswith(_SQLITE_READABLE_PREFIX)
    )


async def _sqlite_objects(connection: Any) -> frozenset[str]:
    names: set[str] = set()
    for sql in ("SELECT name FROM sqlite_master", "PRAGMA module_list"):
        async with connection.execute(sql) as cursor:
            names.update(str(row[0]).lower() for row in await cursor.fetchall())
    return frozenset(names)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _sqlite_error(
    exc: sqlite3.Error, *, refused: str | None, timed_out: bool, timeout_s: float
) -> RecorderError:
    message = _first_line(exc)
    name = getattr(exc, "sqlite_errorname", "") or ""
    if refused is not None:
        return ReadOnlyViolation(
            f"read-only SQL may read only recorder's transcript tables "
            f"({', '.join(READABLE_TABLES)}), not {refused}"
        )
    if name.startswith("SQLITE_READONLY") or "readonly database" in message:
        return ReadOnlyViolation(
            f"'recorder sql' is read-only; the statement tried to change the database ({message})"
        )
    if name == "SQLITE_AUTH" or "not authorized" in message:
        return ReadOnlyViolation(
            "'recorder sql' is read-only; ATTACH, DETACH and PRAGMAs that change settings "
            f"are refused ({message})"
        )
    if timed_out or name == "SQLITE_INTERRUPT":
        return StorageError(f"the query ran longer than {timeout_s:g} s and was stopped")
    return StorageError(f"the query failed: {message}")


async def _run_sqlite(url: URL, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
    import aiosqlite

    path = sqlite_path(url)
    if path is None:
        raise StorageError("read-only SQL needs a database file; an in-memory database has none")
    if not path.exists():
        raise StorageError(f"there is no database file at {path}")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    deadline = time.monotonic() + timeout_s
    timed_out = False
    authorizer: _Authorizer | None = None

    def past_deadline() -> int:
        nonlocal timed_out
        timed_out = time.monotonic() > deadline
        return 1 if timed_out else 0

    try:
        async with aiosqlite.connect(uri, uri=True) as connection:
            await connection.execute("PRAGMA query_only = ON")
            await connection.execute("PRAGMA busy_timeout = 10000")
            authorizer = _Authorizer(await _sqlite_objects(connection))
            await connection.set_authorizer(authorizer)
            await connection.set_progress_handler(past_deadline, _PROGRESS_STEPS)
            async with connection.execute(sql) as cursor:
                columns = tuple(item[0] for item in cursor.description or ())
                rows = list(await cursor.fetchmany(max_rows + 1))
            # A DML statement has run by now (and failed); undo anything partial.
            await connection.rollback()
    except sqlite3.Error as exc:
        raise _sqlite_error(
            exc,
            refused=authorizer.refused if authorizer else None,
            timed_out=timed_out,
            timeout_s=timeout_s,
        ) from exc
    except ValueError as exc:  # e.g. NUL in the statement
        raise StorageError(f"the query failed: {_first_line(exc)}") from exc
    return QueryResult(
        columns=columns,
        rows=tuple(tuple(row) for row in rows[:max_rows]),
        truncated=len(rows) > max_rows,
    )


def _postgres_error(exc: BaseException, url: URL, timeout_s: float) -> RecorderError:
    state = getattr(exc, "sqlstate", None)
    message = _first_line(exc)
    if state in _READ_ONLY_SQLSTATES:
        return ReadOnlyViolation(
            f"'recorder sql' is read-only; the statement tried to change the database ({message})"
        )
    if state == _TIMEOUT_SQLSTATE:
        return StorageError(f"the query ran longer than {timeout_s:g} s and was stopped")
    if state is not None and state[:2] not in ("08", "28", "3D"):
        return StorageError(f"the query failed: {message}")
    mapped = translate_db_error(exc, url)
    return mapped if mapped is not None else StorageError(f"the query failed: {message}")


def _first_keyword(sql: str) -> str:
    rest = _LEADING_COMMENTS.sub("", sql, count=1)
    match = re.match(r"[A-Za-z]+", rest)
    return match.group(0).lower() if match else ""


async def _run_postgres(url: URL, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
    # COPY TO a server file or program writes outside the database, which a
    # read-only transaction allows for privileged roles; refuse it outright.
    if _first_keyword(sql) == "copy":
        raise ReadOnlyViolation(
            "'recorder sql' is read-only and does not run COPY; use a SELECT instead"
        )
    # A connection of its own, closed afterwards: whatever session state the
    # statement sets dies with it instead of returning to the store's pool.
    query_engine = create_engine(url, pooled=False)
    try:
        async with query_engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            await driver.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            async with driver.transaction(readonly=True):
                await driver.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
                # A first query pins the transaction read-only: after it,
                # "SET TRANSACTION READ WRITE" fails (25001).
                await driver.fetchval("SELECT 1")
                statement = await driver.prepare(sql)
                columns = tuple(attribute.name for attribute in statement.get_attributes())
                if columns:
                    cursor = await statement.cursor()
                    rows = await cursor.fetch(max_rows + 1)
                else:
                    await statement.fetch()
                    rows = []
    except RecorderError:
        raise
    except Exception as exc:
        raise _postgres_error(exc, url, timeout_s) from exc
    finally:
        await query_engine.dispose()
    return QueryResult(
        columns=columns,
        rows=tuple(tuple(row) for row in rows[:max_rows]),
        truncated=len(rows) > max_rows,
    )


async def run_read_only_query(
    url: URL, sql: str, *, max_rows: int = 1000, timeout_s: float = 30.0
) -> QueryResult:
    """Run one statement read-only and return at most ``max_rows`` rows.

    Raises:
        ReadOnlyViolation: the statement tried to change the database.
        StorageError: the statement failed or ran past ``timeout_s``.
    """
    if max_rows < 0:
        raise ValueError("max_rows must not be negative")
    if not _first_keyword(sql) and not _LEADING_COMMENTS.sub("", sql, count=1).strip():
        raise StorageError("the query failed: the statement is empty")
    if url.get_backend_name() == "sqlite":
        if is_memory_database(url):
            raise StorageError(
                "read-only SQL needs a database file; an in-memory database has none"
            )
        return await _run_sqlite(url, sql, max_rows=max_rows, timeout_s=timeout_s)
    try:
        return await asyncio.wait_for(
            _run_postgres(url, sql, max_rows=max_rows, timeout_s=timeout_s), timeout_s + 10
        )
    except TimeoutError as exc:
        raise StorageError(f"the query ran longer than {timeout_s:g} s and was stopped") from exc


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table or view, as the database describes it."""

    name: str
    type: str
    nullable: bool


@dataclass(frozen=True, slots=True)
class TableSchema:
    """A table or view a user can query with ``recorder sql``.

    Attributes:
        name: the table or view name.
        kind: ``table`` or ``view``.
        columns: in their order in the table.
    """

    name: str
    kind: str
    columns: tuple[Column, ...]


def _type_name(value: Any) -> str:
    from sqlalchemy.types import NullType

    if isinstance(value, NullType):  # an expression in a view: no declared type
        return ""
    try:
        return str(value)
    except Exception:  # a type the dialect cannot render (e.g. tsvector)
        return str(value.__class__.__name__).lower()


async def describe_schema(url: str | URL) -> list[TableSchema]:
    """The tables and views of the database and their columns, by name.

    Raises:
        StorageError: no database file, or the database cannot be read.
    """
    from sqlalchemy import inspect

    parsed = normalize_url(url)
    path = sqlite_path(parsed)
    if path is not None and not path.exists():
        raise StorageError(
            f"there is no database file at {path}; record a meeting first ('recorder demo')"
        )

    def read(sync: Any) -> list[TableSchema]:
        inspector = inspect(sync)
        found = []
        for kind, names in (
            ("table", inspector.get_table_names()),
            ("view", inspector.get_view_names()),
        ):
            for name in names:
                if name.startswith(_HIDDEN_TABLE_PREFIXES):
                    continue
                columns = tuple(
                    Column(str(c["name"]), _type_name(c["type"]), bool(c.get("nullable", True)))
                    for c in inspector.get_columns(name)
                    if (name, c["name"]) not in _HIDDEN_COLUMNS
                )
                found.append(TableSchema(name, kind, columns))
        return sorted(found, key=lambda table: table.name)

    engine = create_engine(parsed, pooled=False)
    try:
        with map_db_errors(parsed):
            async with engine.connect() as connection:
                return await connection.run_sync(read)
    finally:
        await engine.dispose()
