"""Webhook endpoints and their deliveries: what to send where, and what happened.

An endpoint's signing secret is derived from a server key and the endpoint's
random salt (``recorder.fleet.signing``), so the database never holds one.
Deliveries are rows: one per (endpoint, event), ``pending`` until a 2xx answer
(``delivered``) or until the sender gives up (``failed``). Several API
processes share the work: :func:`claim_due` takes rows with ``FOR UPDATE SKIP
LOCKED`` and leases them by moving ``next_attempt_at`` forward, so a process
that dies mid-delivery only delays the row until the lease runs out. PostgreSQL
only, as the service.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from recorder.errors import NotFoundError
from storage.db import given_url
from storage.errors import map_db_errors
from storage.events import EVENT_KINDS
from storage.models import WebhookDeliveryRow, WebhookEndpointRow

__all__ = [
    "DELIVERY_STATUSES",
    "Delivery",
    "Endpoint",
    "add_endpoint",
    "check_events",
    "claim_due",
    "claim_one",
    "deliveries",
    "enqueue_new_events",
    "get_endpoint",
    "list_endpoints",
    "record_attempt",
    "remove_endpoint",
]

DELIVERY_STATUSES = ("pending", "delivered", "failed")


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A webhook target (its secret is derived, see ``recorder.fleet.signing``)."""

    id: int
    url: str
    events: tuple[str, ...]
    salt: str = ""
    allow_private: bool = False
    created_at: datetime | None = None
    disabled_at: datetime | None = None

    def __repr__(self) -> str:
        return f"Endpoint(id={self.id}, url={self.url!r}, events={self.events!r})"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one endpoint."""

    id: int
    endpoint_id: int
    event_id: int
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        id=row.id,
        url=row.url,
        events=tuple(row.events or ()),
        salt=row.salt,
        allow_private=bool(row.allow_private),
        created_at=row.created_at,
        disabled_at=row.disabled_at,
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=int(row.id),
        endpoint_id=row.endpoint_id,
        event_id=int(row.event_id),
        kind=row.kind,
        payload=dict(row.payload or {}),
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        last_attempt_at=row.last_attempt_at,
        last_status=row.last_status,
        last_error=row.last_error,
    )


def check_events(events: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The event kinds, checked (``*`` means all).

    Raises:
        ValueError: an unknown kind, or none.
    """
    chosen = tuple(dict.fromkeys(kind.strip() for kind in events if kind.strip()))
    if chosen == ("*",):
        return EVENT_KINDS
    unknown = [kind for kind in chosen if kind not in EVENT_KINDS]
    if unknown or not chosen:
        raise ValueError(
            f"unknown event kind(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(EVENT_KINDS)} or *"
        )
    return chosen


async def add_endpoint(
    engine: AsyncEngine, url: str, events: tuple[str, ...], *, allow_private: bool
) -> Endpoint:
    """Store a new endpoint; it receives events committed from now on."""
    table = _table(WebhookEndpointRow)
    with map_db_errors(given_url(engine)):
        async with engine.begin() as connection:
            row = (
                await connection.execute(
                    table.insert()
                    .values(
                        url=url,
                        events=list(events),
                        salt=secrets.token_hex(16),
                        allow_private=allow_private,
                        created_at=datetime.now(UTC),
                    )
                    .returning(*table.c)
                )
            ).one()
    return _endpoint(row)


async def list_endpoints(engine: AsyncEngine, *, with_removed: bool = False) -> list[Endpoint]:
    """Endpoints, oldest first (removed ones only if asked)."""
    table = _table(WebhookEndpointRow)
    query = select(*table.c).order_by(table.c.id)
    if not with_removed:
        query = query.where(table.c.disabled_at.is_(None))
    with map_db_errors(given_url(engine)):
        async with engine.connect() as connection:
            return [_endpoint(row) for row in (await connection.execute(query)).all()]


async def get_endpoint(engine: AsyncEngine, endpoint_id: int) -> Endpoint:
    """One active endpoint.

    Raises:
        NotFoundError: no such endpoint (or it was removed).
    """
    for endpoint in await list_endpoints(engine):
        if endpoint.id == endpoint_id:
            return endpoint
    raise NotFoundError(f"no webhook endpoint with id {endpoint_id}; see 'recorder webhooks list'")


async def remove_endpoint(engine: AsyncEngine, endpoint_id: int) -> Endpoint:
    """Stop sending to an endpoint (its delivery log stays); pending deliveries fail.

    Raises:
        NotFoundError: no such active endpoint.
    """
    endpoints = _table(WebhookEndpointRow)
    pending = _table(WebhookDeliveryRow)
    now = datetime.now(UTC)
    with map_db_errors(given_url(engine)):
        async with engine.begin() as connection:
            row = (
                await connection.execute(
                    update(endpoints)
                    .where(endpoints.c.id == endpoint_id, endpoints.c.disabled_at.is_(None))
                    .values(disabled_at=now)
                    .returning(*endpoints.c)
                )
            ).first()
            if row is None:
                raise NotFoundError(
                    f"no webhook endpoint with id {endpoint_id}; see 'recorder webhooks list'"
                )
            await connection.execute(
                update(pending)
                .where(pending.c.endpoint_id == endpoint_id, pending.c.status == "pending")
                .values(status="failed", last_error="the endpoint was removed")
            )
    return _endpoint(row)


_ENQUEUE = text(
    """
    INSERT INTO webhook_deliveries
        (endpoint_id, event_id, kind, payload, status, attempts, created_at, next_attempt_at)
    SELECT e.id, ev.id, ev.kind, ev.payload, 'pending', 0, now(), now()
    FROM meeting_events AS ev
    JOIN webhook_endpoints AS e
      ON e.disabled_at IS NULL
     AND ev.created_at >= e.created_at
     AND (e.events::jsonb ? ev.kind)
    WHERE ev.created_at >= :since
    ON CONFLICT (endpoint_id, event_id) DO NOTHING
    """
)


async def enqueue_new_events(engine: AsyncEngine, *, since: datetime) -> int:
    """Add a pending delivery for every event since ``since`` an endpoint wants (once each).

    Returns:
        How many deliveries were added.
    """
    with map_db_errors(given_url(engine)):
        async with engine.begin() as connection:
            result = await connection.execute(_ENQUEUE, {"since": since})
    return int(result.rowcount or 0)


_CLAIM = text(
    """
    UPDATE webhook_deliveries AS d
       SET next_attempt_at = now() + make_interval(secs => :lease_s),
           attempts = d.attempts + 1,
           last_attempt_at = now()
     WHERE d.id IN (
           SELECT id FROM webhook_deliveries
            WHERE status = 'pending' AND next_attempt_at <= now()
            ORDER BY next_attempt_at, id
            LIMIT :limit
              FOR UPDATE SKIP LOCKED)
    RETURNING d.*
    """
)


async def claim_due(
    engine: AsyncEngine, *, limit: int, lease_s: float
) -> list[tuple[Delivery, Endpoint]]:
    """Take up to ``limit`` due deliveries for this process (leased for ``lease_s``)."""
    endpoints = _table(WebhookEndpointRow)
    with map_db_errors(given_url(engine)):
        async with engine.begin() as connection:
            claimed = [
                _delivery(row)
                for row in (
                    await connection.execute(_CLAIM, {"limit": limit, "lease_s": lease_s})
                ).all()
            ]
            if not claimed:
                return []
            ids = sorted({delivery.endpoint_id for delivery in claimed})
            found = {
                row.id: _endpoint(row)
                for row in (
                    await connection.execute(select(*endpoints.c).where(endpoints.c.id.in_(ids)))
                ).all()
            }
    return [(delivery, found[delivery.endpoint_id]) for delivery in claimed]


_CLAIM_ONE = text(
    """
    UPDATE webhook_deliveries AS d
       SET next_attempt_at = now() + make_interval(secs => :lease_s),
           attempts = d.attempts + 1,
           last_attempt_at = now()
     WHERE d.id = (
           SELECT id FROM webhook_deliveries
            WHERE id = :id AND status = 'pending'
              AND next_attempt_at <= now() + make_interval(secs => :early_s)
              FOR UPDATE SKIP LOCKED)
    RETURNING d.*
    """
)


async def claim_one(
    engine: AsyncEngine, delivery_id: int, *, lease_s: float, early_s: float = 5.0
) -> tuple[Delivery, Endpoint] | None:
    """Take one delivery if it is pending and due (within ``early_s``); None otherwise.

    The claim leases the row for ``lease_s`` (as :func:`claim_due`), so a second
    job for the same delivery finds it not due and does nothing.
    """
    endpoints = _table(WebhookEndpointRow)
    with map_db_errors(given_url(engine)):
        async with engine.begin() as connection:
            row = (
                await connection.execute(
                    _CLAIM_ONE, {"id": delivery_id, "lease_s": lease_s, "early_s": early_s}
                )
            ).first()
            if row is None:
                return None
            delivery = _delivery(row)
            endpoint = (
                await connection.execute(
                    select(*endpoints.c).where(endpoints.c.id == delivery.endpoint_id)
                )
            ).one()
    return delivery, _endpoint(endpoint)


async def record_attempt(
    engine: AsyncEngine,
    delivery_id: int,
    *,
    status: str,
    http_status: int | None,
    error: str | None,
    next_attempt_at: datetime | None = None,
) -> None:
    """Write what an attempt gave: delivered, failed for good, or pending until later."""
    table = _table(WebhookDeliveryRow)
    values: dict[str, Any] = {"status": status, "last_status": http_status, "last_error": error}
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    with map_db_errors(given_url(engine)):
        async with engine.begin() as connection:
            await connection.execute(
                update(table).where(table.c.id == delivery_id).values(**values)
            )


async def deliveries(
    engine: AsyncEngine, *, endpoint_id: int | None = None, limit: int = 50
) -> list[Delivery]:
    """The delivery log, newest first."""
    table = _table(WebhookDeliveryRow)
    query = select(*table.c).order_by(table.c.id.desc()).limit(limit)
    if endpoint_id is not None:
        query = query.where(table.c.endpoint_id == endpoint_id)
    with map_db_errors(given_url(engine)):
        async with engine.connect() as connection:
            return [_delivery(row) for row in (await connection.execute(query)).all()]
