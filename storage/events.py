"""Meeting events for live streams: written in the transaction that commits what they tell.

On PostgreSQL every commit that stores turns, a participant joining or leaving,
or a meeting starting or ending also inserts rows into ``meeting_events`` and
calls ``pg_notify`` (delivered at commit, never for a rolled-back transaction:
https://www.postgresql.org/docs/current/sql-notify.html), so API processes on
any machine learn of them without polling.

Ordering: an event's id comes from a sequence, and sequences hand out numbers
in call order, not commit order. Two transactions of one meeting could then
commit ids 11 before 10, and a reader resuming after 11 would never see 10.
Each event-writing transaction therefore takes a transaction-level advisory
lock on its meeting before drawing ids, so within a meeting ids become visible
in increasing order, and "every event with an id above the last one seen" loses
nothing and repeats nothing (``Last-Event-ID``).

On SQLite (one process, no listeners) nothing is written: the service runs on
PostgreSQL only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, and_, exists, func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.db import given_url
from storage.errors import map_db_errors
from storage.models import MeetingEventRow, MeetingRow, ParticipantRow, TurnRow
from storage.records import TurnRecord

__all__ = [
    "CHANNEL",
    "EVENT_KINDS",
    "MeetingEvent",
    "events_after",
    "last_event_id",
    "meeting_status",
    "record_meeting_event",
    "record_turn_events",
]


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


# The NOTIFY channel; the payload is the meeting id.
CHANNEL = "recorder_events"
EVENT_KINDS = (
    "meeting.started",
    "meeting.ended",
    "meeting.resumed",
    "participant.joined",
    "participant.left",
    "turn.final",
    "turn.updated",
)
# First key of the two-key advisory lock ("reco"), the meeting id being the second.
_LOCK_KEY = 0x7265636F


@dataclass(frozen=True, slots=True)
class MeetingEvent:
    """One event as read back."""

    id: int
    meeting_id: int
    kind: str
    payload: dict[str, Any]
    created_at: datetime


async def _append(
    connection: AsyncConnection, meeting_id: int, rows: Sequence[dict[str, Any]]
) -> None:
    if not rows:
        return
    await connection.execute(
        text("SELECT pg_advisory_xact_lock(:key, :meeting)"),
        {"key": _LOCK_KEY, "meeting": meeting_id},
    )
    await connection.execute(_table(MeetingEventRow).insert(), list(rows))
    await connection.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": CHANNEL, "payload": str(meeting_id)},
    )


async def record_meeting_event(
    connection: AsyncConnection,
    dialect: str,
    meeting_id: int,
    kind: str,
    payload: dict[str, Any],
) -> None:
    """Add one event (a status change, someone joining or leaving) to the caller's transaction."""
    if dialect != "postgresql":
        return
    now = datetime.now(UTC)
    await _append(
        connection,
        meeting_id,
        [
            {
                "meeting_id": meeting_id,
                "kind": kind,
                "turn_id": None,
                "payload": {"meeting_id": meeting_id, **payload},
                "created_at": now,
            }
        ],
    )


async def record_turn_events(
    connection: AsyncConnection, dialect: str, records: Sequence[TurnRecord]
) -> None:
    """Add ``turn.final`` (or ``turn.updated`` for a replaced turn) for just-upserted turns."""
    if dialect != "postgresql" or not records:
        return
    keys = sorted({(record.stream_session_id, record.turn_order) for record in records})
    events = _table(MeetingEventRow)
    seen_before = exists().where(
        and_(events.c.turn_id == TurnRow.id, events.c.kind == "turn.final")
    )
    query = (
        select(
            TurnRow.id,
            TurnRow.meeting_id,
            ParticipantRow.uid,
            ParticipantRow.display_name,
            TurnRow.start_ms,
            TurnRow.end_ms,
            TurnRow.text,
            seen_before.label("seen_before"),
        )
        .join(ParticipantRow, ParticipantRow.id == TurnRow.participant_id)
        .where(tuple_(TurnRow.stream_session_id, TurnRow.turn_order).in_(keys))
        .order_by(TurnRow.meeting_id, TurnRow.start_ms, TurnRow.id)
    )
    now = datetime.now(UTC)
    by_meeting: dict[int, list[dict[str, Any]]] = {}
    for row in (await connection.execute(query)).all():
        by_meeting.setdefault(row.meeting_id, []).append(
            {
                "meeting_id": row.meeting_id,
                "kind": "turn.updated" if row.seen_before else "turn.final",
                "turn_id": row.id,
                "payload": {
                    "meeting_id": row.meeting_id,
                    "turn_id": row.id,
                    "uid": row.uid,
                    "speaker": row.display_name or str(row.uid),
                    "display_name": row.display_name,
                    "start_ms": row.start_ms,
                    "end_ms": row.end_ms,
                    "text": row.text,
                },
                "created_at": now,
            }
        )
    for meeting_id in sorted(by_meeting):
        await _append(connection, meeting_id, by_meeting[meeting_id])


def _event(row: Any) -> MeetingEvent:
    return MeetingEvent(
        id=int(row.id),
        meeting_id=row.meeting_id,
        kind=row.kind,
        payload=dict(row.payload or {}),
        created_at=row.created_at,
    )


async def events_after(
    engine: AsyncEngine, meeting_id: int, after_id: int, *, limit: int = 1000
) -> list[MeetingEvent]:
    """The meeting's events with an id above ``after_id``, in id order (at most ``limit``)."""
    table = _table(MeetingEventRow)
    query = (
        select(*table.c)
        .where(table.c.meeting_id == meeting_id, table.c.id > after_id)
        .order_by(table.c.id)
        .limit(limit)
    )
    with map_db_errors(given_url(engine)):
        async with engine.connect() as connection:
            return [_event(row) for row in (await connection.execute(query)).all()]


async def last_event_id(engine: AsyncEngine, meeting_id: int) -> int:
    """The meeting's highest event id (0 if it has none)."""
    table = _table(MeetingEventRow)
    with map_db_errors(given_url(engine)):
        async with engine.connect() as connection:
            found = await connection.scalar(
                select(func.max(table.c.id)).where(table.c.meeting_id == meeting_id)
            )
    return int(found or 0)


async def meeting_status(engine: AsyncEngine, meeting_id: int) -> str | None:
    """The meeting's status, or None if there is no such meeting."""
    with map_db_errors(given_url(engine)):
        async with engine.connect() as connection:
            found: str | None = await connection.scalar(
                select(MeetingRow.status).where(MeetingRow.id == meeting_id)
            )
    return found
