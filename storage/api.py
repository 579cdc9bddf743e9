"""Queries the HTTP service needs beyond the store's: a page of meetings, an audited delete.

Both work on an engine of :func:`storage.db.create_engine` and own their
transaction, like the store's methods.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, delete
from sqlalchemy.ext.asyncio import AsyncEngine

from recorder.errors import NotFoundError, UsageError
from storage.db import WRITE, given_url
from storage.errors import map_db_errors
from storage.models import AuditRow, MeetingRow
from storage.records import MeetingSummary
from storage.rows import summary_from_row, summary_select

__all__ = ["delete_meeting", "meetings_page"]


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


async def meetings_page(
    engine: AsyncEngine,
    *,
    channel: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: tuple[datetime, int] | None = None,
    limit: int = 50,
) -> tuple[list[MeetingSummary], bool]:
    """Meetings newest first, after a keyset cursor (started_at, id).

    Returns:
        The page and whether more meetings follow it.
    """
    query = summary_select()
    if channel is not None:
        query = query.where(MeetingRow.channel == channel)
    if status is not None:
        query = query.where(MeetingRow.status == status)
    if since is not None:
        query = query.where(MeetingRow.started_at >= since)
    if until is not None:
        query = query.where(MeetingRow.started_at < until)
    if after is not None:
        at, meeting_id = after
        query = query.where(
            (MeetingRow.started_at < at)
            | ((MeetingRow.started_at == at) & (MeetingRow.id < meeting_id))
        )
    query = query.order_by(MeetingRow.started_at.desc(), MeetingRow.id.desc()).limit(limit + 1)
    with map_db_errors(given_url(engine)):
        async with engine.connect() as connection:
            rows = (await connection.execute(query)).all()
    found = [summary_from_row(row) for row in rows[:limit]]
    return found, len(rows) > limit


async def delete_meeting(
    engine: AsyncEngine, meeting_id: int, *, actor: str, detail: dict[str, Any] | None = None
) -> MeetingSummary:
    """Delete a meeting with its participants, turns, notes and events; record who did it.

    Raises:
        NotFoundError: no such meeting.
        UsageError: the meeting is still being recorded.
    """
    with map_db_errors(given_url(engine)):
        async with engine.execution_options(**WRITE).begin() as connection:
            row = (
                await connection.execute(summary_select().where(MeetingRow.id == meeting_id))
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"no meeting with id {meeting_id}")
            summary = summary_from_row(row)
            if summary.status == "recording":
                raise UsageError(
                    f"meeting {meeting_id} is still being recorded; stop the recording first"
                )
            await connection.execute(delete(MeetingRow).where(MeetingRow.id == meeting_id))
            await connection.execute(
                _table(AuditRow)
                .insert()
                .values(
                    at=datetime.now(UTC),
                    actor=actor,
                    action="meeting.delete",
                    target=f"meeting:{meeting_id}",
                    detail={
                        "channel": summary.channel,
                        "started_at": summary.started_at.isoformat(),
                        "turns": summary.turn_count,
                        **(detail or {}),
                    },
                )
            )
    return summary
