"""Read-only SQL that stays read-only and bounded, for ``recorder sql``, the API and MCP.

SQLite: :mod:`storage.readonly` (a ``mode=ro`` connection with an authorizer
and a deadline checked every few thousand VM steps).

PostgreSQL: a read-only transaction alone is not enough. Measured: a
superuser's ``SELECT lo_export(...)`` writes a file on the server, ``pg_read_file``
reads one, and ``lo_from_bytea`` commits a large object even for a role that
may only SELECT. So each statement:

* runs inside ``recorder_read_only_query(statement, max_rows)``, a
  ``SECURITY DEFINER`` function owned by the role :data:`READER_ROLE`, which
  may only read recorder's tables: inside it the statement has that role's
  rights, and PostgreSQL refuses ``SET ROLE`` and ``SET SESSION AUTHORIZATION``
  inside a security-definer function (https://www.postgresql.org/docs/current/sql-createfunction.html,
  "Writing SECURITY DEFINER Functions Safely"), so a statement cannot climb
  back to the connecting role's rights;
* in a ``READ ONLY`` transaction that is always rolled back, so nothing it
  does (a large object, a notification) outlives it;
* with ``statement_timeout`` (default 30 s) and a ``LIMIT`` of ``max_rows + 1``
  around it, so an endless recursive CTE stops at the row limit and
  ``pg_sleep`` at the time limit.

:func:`ensure_reader` (run by ``recorder db upgrade``) creates the role and the
function when the connecting role may; otherwise the CLI falls back to
:mod:`storage.readonly` and ``recorder doctor`` warns, while the API and MCP
refuse to run SQL at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL

from recorder.errors import ReadOnlyViolation, RecorderError, StorageError
from storage.db import create_engine, normalize_url
from storage.errors import mask_url, translate_db_error
from storage.readonly import READABLE_TABLES, run_read_only_query
from storage.records import QueryResult

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_TIMEOUT_S",
    "FUNCTION",
    "READABLE_TABLES",
    "READER_ROLE",
    "ensure_reader",
    "reader_status",
    "run_bounded_query",
]

log = logging.getLogger("storage.bounded")

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_ROWS = 1000
READER_ROLE = "recorder_reader"
FUNCTION = "recorder_read_only_query"
_PERMISSION_SQLSTATES = ("42501",)  # insufficient_privilege
_READ_ONLY_SQLSTATES = ("25006", "25001")
_TIMEOUT_SQLSTATE = "57014"
_DUPLICATE_SQLSTATES = ("42710", "23505", "XX000")  # role exists; catalog race between creators
_NOT_SET_UP = (
    "read-only SQL is not set up on {where}: the role {role} and its function are missing; "
    "run 'recorder db upgrade' once as a role that may create roles (CREATEROLE)"
)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _function_sql(schema: str) -> str:
    quoted = _quote(schema)
    return f"""
CREATE OR REPLACE FUNCTION {quoted}.{FUNCTION}(statement text, max_rows integer)
RETURNS SETOF json
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, {quoted}, pg_temp
AS $body$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT pg_catalog.row_to_json(q) FROM (' || statement || E'\\n) AS q LIMIT '
        || (max_rows + 1)::text;
END
$body$
"""


async def _sqlstate_of(exc: BaseException) -> str | None:
    current: BaseException | None = exc
    while current is not None:
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str):
            return state
        current = getattr(current, "orig", None) or current.__cause__
    return None


async def ensure_reader(url: str | URL) -> str | None:
    """Create (or refresh) the reader role, its grants and the query function.

    Returns:
        None when read-only SQL is set up, else a one-line warning saying why not.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    engine = create_engine(parsed, pooled=False)
    role = _quote(READER_ROLE)
    try:
        async with engine.connect() as connection:
            schema = str(await connection.scalar(text("SELECT current_schema()")))
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": READER_ROLE}
            )
            await connection.commit()
            if not exists:
                try:
                    await connection.execute(text(f"CREATE ROLE {role} NOLOGIN"))
                    await connection.commit()
                except Exception as exc:
                    await connection.rollback()
                    if await _sqlstate_of(exc) not in _DUPLICATE_SQLSTATES:
                        raise
            statements = [
                f"GRANT USAGE ON SCHEMA {_quote(schema)} TO {role}",
                *(
                    f"GRANT SELECT ON {_quote(schema)}.{_quote(table)} TO {role}"
                    for table in READABLE_TABLES
                ),
                _function_sql(schema),
                f"ALTER FUNCTION {_quote(schema)}.{FUNCTION}(text, integer) OWNER TO {role}",
                f"REVOKE ALL ON FUNCTION {_quote(schema)}.{FUNCTION}(text, integer) FROM PUBLIC",
                f"GRANT EXECUTE ON FUNCTION {_quote(schema)}.{FUNCTION}(text, integer) "
                "TO CURRENT_USER",
            ]
            for statement in statements:
                await connection.execute(text(statement))
            await connection.commit()
    except Exception as exc:
        error = translate_db_error(exc, parsed)
        reason = str(error) if error is not None else str(exc).splitlines()[0]
        return (
            f"could not set up the read-only SQL role {READER_ROLE} on {mask_url(parsed)} "
            f"({reason}); 'recorder sql' runs without it and the API refuses SQL. Run "
            "'recorder db upgrade' as a role with CREATEROLE to fix"
        )
    finally:
        await engine.dispose()
    return None


async def reader_status(url: str | URL) -> str | None:
    """None when the reader function exists in the database's schema, else the warning."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    engine = create_engine(parsed, pooled=False)
    try:
        async with engine.connect() as connection:
            found = await connection.scalar(
                text(
                    "SELECT to_regprocedure(quote_ident(current_schema()) || :signature) "
                    "IS NOT NULL"
                ),
                {"signature": f".{FUNCTION}(text, integer)"},
            )
    except Exception as exc:
        error = translate_db_error(exc, parsed)
        raise (error or StorageError(str(exc))) from exc
    finally:
        await engine.dispose()
    if found:
        return None
    return _NOT_SET_UP.format(where=mask_url(parsed), role=READER_ROLE)


def _pairs(text_value: Any) -> list[tuple[str, Any]]:
    if isinstance(text_value, str):
        loaded: list[tuple[str, Any]] = json.loads(text_value, object_pairs_hook=list)
        return loaded
    return list(dict(text_value).items())


def _postgres_error(exc: BaseException, url: URL, timeout_s: float) -> RecorderError:
    state = None
    current: BaseException | None = exc
    while current is not None and state is None:
        found = getattr(current, "sqlstate", None)
        state = found if isinstance(found, str) else None
        current = getattr(current, "orig", None) or current.__cause__
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if state in _PERMISSION_SQLSTATES or "security-definer" in message:
        return ReadOnlyViolation(
            f"read-only SQL may only read recorder's tables; refused: {message}"
        )
    if state in _READ_ONLY_SQLSTATES:
        return ReadOnlyViolation(f"read-only SQL cannot change the database; refused: {message}")
    if state == _TIMEOUT_SQLSTATE:
        return StorageError(f"the query ran longer than {timeout_s:g} s and was stopped")
    if state is not None and state[:2] not in ("08", "28", "3D"):
        return StorageError(f"the query failed: {message}")
    mapped = translate_db_error(exc, url)
    return mapped if mapped is not None else StorageError(f"the query failed: {message}")


async def _run_as_reader(url: URL, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
    statement = sql.strip().rstrip(";").strip()
    engine = create_engine(url, pooled=False)
    try:
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            transaction = driver.transaction(readonly=True)
            await transaction.start()
            try:
                await driver.execute(
                    f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}"
                )
                await driver.execute(f"SET LOCAL ROLE {_quote(READER_ROLE)}")
                # Column names from planning alone (nothing runs), as the reader.
                prepared = await driver.prepare(f"SELECT * FROM ({statement}\n) AS q")
                columns = tuple(attribute.name for attribute in prepared.get_attributes())
                records = await driver.fetch(
                    f"SELECT {FUNCTION}($1, $2)::text AS row", statement, max_rows
                )
            finally:
                await transaction.rollback()
    except RecorderError:
        raise
    except Exception as exc:
        raise _postgres_error(exc, url, timeout_s) from exc
    finally:
        await engine.dispose()
    rows = [tuple(value for _, value in _pairs(record["row"])) for record in records]
    return QueryResult(columns=columns, rows=tuple(rows[:max_rows]), truncated=len(rows) > max_rows)


async def run_bounded_query(
    url: str | URL,
    sql: str,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    require_role: bool = False,
) -> QueryResult:
    """Run one statement read-only, stopped after ``timeout_s``, at most ``max_rows`` rows.

    Args:
        url: the database.
        sql: one statement that returns rows.
        max_rows: rows returned at most (``truncated`` says whether there were more).
        timeout_s: the statement's time limit.
        require_role: on PostgreSQL, refuse to run without the reader role (the API
            and MCP) instead of falling back to the connecting role's rights (the CLI).

    Raises:
        ReadOnlyViolation: the statement tried to write or to reach beyond recorder's tables.
        StorageError: it failed, or ran out of time; or (``require_role``) the role is missing.
    """
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "postgresql":
        return await run_read_only_query(parsed, sql, max_rows=max_rows, timeout_s=timeout_s)
    if not sql.strip().rstrip(";").strip():
        raise StorageError("the query failed: the statement is empty")
    problem = await reader_status(parsed)
    if problem is not None:
        if require_role:
            raise StorageError(problem)
        log.warning("! %s", problem)
        return await run_read_only_query(parsed, sql, max_rows=max_rows, timeout_s=timeout_s)
    try:
        return await asyncio.wait_for(
            _run_as_reader(parsed, sql, max_rows=max_rows, timeout_s=timeout_s), timeout_s + 10
        )
    except TimeoutError as exc:
        raise StorageError(f"the query ran longer than {timeout_s:g} s and was stopped") from exc
