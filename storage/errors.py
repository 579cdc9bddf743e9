"""The seam where foreign database errors become recorder errors.

SQLAlchemy, the DBAPI drivers (sqlite3/aiosqlite, asyncpg), the socket layer
and alembic each raise their own exceptions. :func:`map_db_errors` is the one
place that turns them into :mod:`recorder.errors` classes with a one-line,
lowercase message that names the database (password masked) and what to try.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from alembic.util.exc import CommandError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from recorder.errors import (
    ConfigError,
    DatabaseUnreachable,
    ReadOnlyViolation,
    RecorderError,
    StorageError,
)

__all__ = [
    "LOCK_BACKOFF_S",
    "LOCK_RETRIES",
    "is_locked_error",
    "map_db_errors",
    "mask_url",
    "raise_translated",
    "translate_db_error",
]

# PostgreSQL SQLSTATE classes meaning "could not get a working connection":
# 08 connection exception, 28 invalid authorization, 3D invalid catalog (no such
# database), 57P0x server shutting down / cannot connect now (PostgreSQL
# documentation, appendix A "Error Codes").
_UNREACHABLE_SQLSTATE_PREFIXES = ("08", "28", "3D", "57P0")
_READ_ONLY_SQLSTATE = "25006"  # read_only_sql_transaction
_NO_SCHEMA_SQLSTATE = "3F000"  # invalid_schema_name: search_path names no schema
_SQLITE_UNREACHABLE = ("unable to open database file", "disk i/o error")
# deadlock_detected, serialization_failure: the server rolled the transaction back.
_PG_RETRY_STATES = frozenset({"40P01", "40001"})
_SQLITE_LOCKED = ("database is locked", "database is busy", "database table is locked")


def mask_url(url: str | URL) -> str:
    """Render a database URL for display, with the password hidden.

    Unparseable input is shown only up to the scheme, since it may hold a secret.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (sa_exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        scheme = str(url).split("://", 1)[0] if "://" in str(url) else "?"
        return f"{scheme}://..."
    return parsed.render_as_string(hide_password=True)


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _root(exc: BaseException) -> BaseException:
    """The driver's own exception behind SQLAlchemy's (and the asyncpg adapter's) wrappers."""
    seen: set[int] = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        inner = getattr(current, "orig", None) or current.__cause__
        if not isinstance(inner, BaseException):
            break
        current = inner
    return current


def _sqlstate(exc: BaseException) -> str | None:
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str) and state:
            return state
        current = getattr(current, "orig", None) or current.__cause__
    return None


# SQLite: after busy_timeout (db.BUSY_TIMEOUT_S) a writer may still meet
# "database is locked" (e.g. a checkpoint): the whole short transaction runs again
# this many times, LOCK_BACKOFF_S doubling between, before the user is told.
LOCK_RETRIES = 3
LOCK_BACKOFF_S = 0.05


def is_locked_error(exc: BaseException) -> bool:
    """Whether a lock conflict refused the transaction, so running it again succeeds.

    SQLite's "database is locked"; PostgreSQL's deadlock (one of the transactions is
    rolled back to break it) and serialization failure
    (https://www.postgresql.org/docs/current/mvcc-serialization-failure-handling.html).
    """
    if _sqlstate(exc) in _PG_RETRY_STATES:
        return True
    root = _root(exc)
    return isinstance(root, sqlite3.OperationalError) and any(
        text in str(root).lower() for text in _SQLITE_LOCKED
    )


def translate_db_error(exc: BaseException, url: str | URL) -> RecorderError | None:
    """Return the recorder error for a foreign exception, or None if it is not ours to map.

    Args:
        exc: the exception raised by SQLAlchemy, a driver, the network or alembic.
        url: the database URL, shown with its password masked.
    """
    where = mask_url(url)
    if isinstance(exc, RecorderError):
        return exc
    if isinstance(exc, sa_exc.ArgumentError):  # includes NoSuchModuleError
        return ConfigError(
            f"the database URL {where} is not usable: {_first_line(str(exc))}; expected e.g. "
            "sqlite+aiosqlite:///path/recorder.db or postgresql+asyncpg://user@host/db"
        )
    if isinstance(exc, sa_exc.StatementError) and isinstance(exc.orig, ValueError | TypeError):
        return None  # a bad argument (naive datetime, wrong type): the caller's bug
    if isinstance(exc, CommandError):
        return StorageError(f"migrating the database at {where} failed: {_first_line(str(exc))}")
    root = _root(exc)
    message = _first_line(str(root)) or root.__class__.__name__
    state = _sqlstate(exc)
    if state == _READ_ONLY_SQLSTATE:
        return ReadOnlyViolation(f"the statement tried to change the database: {message}")
    if state == _NO_SCHEMA_SQLSTATE:
        return ConfigError(
            f"the database at {where} has no schema to hold recorder's tables ({message}); "
            "create the schema named by search_path, or fix the URL"
        )
    if state is not None and state.startswith(_UNREACHABLE_SQLSTATE_PREFIXES):
        return DatabaseUnreachable(
            f"cannot use the database at {where}: {message}; check the user, password, "
            "database name and that the server accepts connections"
        )
    if isinstance(root, sqlite3.Error):
        lowered = message.lower()
        if any(text in lowered for text in _SQLITE_LOCKED):
            return StorageError(
                f"the database at {where} stayed locked by another process: {message}; "
                "try again when the other writer is done"
            )
        if any(text in lowered for text in _SQLITE_UNREACHABLE):
            return DatabaseUnreachable(
                f"cannot open the database at {where}: {message}; check that the directory "
                "exists and is writable"
            )
        if "readonly database" in lowered:
            return DatabaseUnreachable(
                f"cannot write to the database at {where}: {message}; check the file's permissions"
            )
        if "not a database" in lowered or "malformed" in lowered:
            return StorageError(
                f"the file behind {where} is not a usable SQLite database: {message}"
            )
    if isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError) or isinstance(
        root, OSError | TimeoutError
    ):
        return DatabaseUnreachable(
            f"cannot connect to the database at {where}: {message}; check that the server "
            "is running and the host and port are right"
        )
    if isinstance(exc, sa_exc.InterfaceError | sa_exc.DisconnectionError):
        return DatabaseUnreachable(f"lost the connection to the database at {where}: {message}")
    if (
        isinstance(exc, sa_exc.SQLAlchemyError)
        or state is not None
        or isinstance(root, sqlite3.Error)
    ):
        return StorageError(f"the database at {where} failed: {message}")
    if type(root).__module__.split(".")[0] == "asyncpg":
        return StorageError(f"the database at {where} failed: {message}")
    return None


@contextmanager
def map_db_errors(url: str | URL) -> Iterator[None]:
    """Translate foreign database errors raised inside the block, ``raise ... from exc``.

    Args:
        url: the database URL, shown with its password masked in messages.

    Raises:
        RecorderError: the translated error (ConfigError, DatabaseUnreachable,
            ReadOnlyViolation or StorageError).
    """
    try:
        yield
    except RecorderError:
        raise
    except Exception as exc:
        raise_translated(exc, url)


def raise_translated(exc: Exception, url: str | URL) -> NoReturn:
    """Raise the recorder error for ``exc`` (``from exc``), or ``exc`` itself if it is not ours.

    A bad argument that SQLAlchemy wrapped while binding it (a naive datetime,
    a wrong type) comes out as the original ValueError or TypeError.
    """
    error = translate_db_error(exc, url)
    if error is not None:
        raise error from exc
    if isinstance(exc, sa_exc.StatementError) and isinstance(exc.orig, ValueError | TypeError):
        raise exc.orig from exc
    raise exc
