"""API tokens of the HTTP service: created once, stored only as a hash, revoked by name.

A token is ``rec_`` followed by 43 URL-safe characters (256 random bits), so
one SHA-256 of it is as good as a slow password hash: nobody can guess back
from the digest, and a lookup by digest costs one index probe. The token itself
is returned once by :func:`create_token` and never stored, logged or shown again.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from recorder.errors import NotFoundError, StorageError, UsageError
from storage.db import WRITE, given_url
from storage.errors import map_db_errors
from storage.models import ApiTokenRow

__all__ = [
    "TOKEN_PREFIX",
    "ApiToken",
    "authenticate",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
    "touch_token",
]


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


TOKEN_PREFIX = "rec_"
_NAME_MAX = 100
# Tokens are at most this long: anything longer is refused without hashing it.
_TOKEN_MAX = 200


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A token as listed: never the token itself, only its first characters."""

    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def is_active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


def hash_token(token: str) -> str:
    """The hex SHA-256 stored for a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > _NAME_MAX or not cleaned.isprintable():
        raise UsageError(
            f"a token name is 1 to {_NAME_MAX} printable characters, like app1; got {name!r}"
        )
    return cleaned


def _record(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


async def create_token(engine: AsyncEngine, name: str) -> tuple[ApiToken, str]:
    """Make a token; returns its record and the token, which exists nowhere else.

    Raises:
        UsageError: the name is malformed or already taken.
    """
    name = _check_name(name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    table = _table(ApiTokenRow)
    statement = (
        table.insert()
        .values(
            name=name,
            token_hash=hash_token(token),
            prefix=token[:8],
            created_at=datetime.now(UTC),
        )
        .returning(*table.c)
    )
    try:
        with map_db_errors(given_url(engine)):
            async with engine.execution_options(**WRITE).begin() as connection:
                row = (await connection.execute(statement)).one()
    except StorageError as exc:
        if isinstance(exc.__cause__, IntegrityError):
            raise UsageError(
                f"a token named {name!r} exists already; pick another name or revoke it "
                f"with 'recorder tokens revoke {name}'"
            ) from None
        raise
    return _record(row), token


async def list_tokens(engine: AsyncEngine) -> list[ApiToken]:
    """Every token, revoked ones too, oldest first."""
    with map_db_errors(given_url(engine)):
        async with engine.connect() as connection:
            rows = (
                await connection.execute(select(*_table(ApiTokenRow).c).order_by(ApiTokenRow.id))
            ).all()
    return [_record(row) for row in rows]


async def revoke_token(engine: AsyncEngine, name_or_id: str) -> ApiToken:
    """Revoke a token by name (or id); it stops working at once.

    Raises:
        NotFoundError: no active token of that name or id.
    """
    key = name_or_id.strip()
    table = _table(ApiTokenRow)
    condition = table.c.name == key
    if key.isdigit() and len(key) < 10:
        condition = condition | (table.c.id == int(key))
    with map_db_errors(given_url(engine)):
        async with engine.execution_options(**WRITE).begin() as connection:
            row = (
                await connection.execute(
                    update(table)
                    .where(condition, table.c.revoked_at.is_(None))
                    .values(revoked_at=datetime.now(UTC))
                    .returning(*table.c)
                )
            ).first()
    if row is None:
        raise NotFoundError(
            f"no active token named {key!r}; see 'recorder tokens list' for the names"
        )
    return _record(row)


async def authenticate(engine: AsyncEngine, token: str) -> ApiToken | None:
    """The active token matching ``token``, or None (unknown, malformed or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > _TOKEN_MAX:
        return None
    table = _table(ApiTokenRow)
    with map_db_errors(given_url(engine)):
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    select(*table.c).where(
                        table.c.token_hash == hash_token(token), table.c.revoked_at.is_(None)
                    )
                )
            ).first()
    if row is None:
        return None
    return _record(row)


async def touch_token(engine: AsyncEngine, token_id: int) -> None:
    """Note that a token was just used (``tokens list`` shows when)."""
    table = _table(ApiTokenRow)
    with map_db_errors(given_url(engine)):
        async with engine.execution_options(**WRITE).begin() as connection:
            await connection.execute(
                update(table).where(table.c.id == token_id).values(last_used_at=datetime.now(UTC))
            )
