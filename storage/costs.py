"""What each meeting's streaming cost: billed socket time against the speech it carried.

Streaming bills the time a socket is open (docs/providers.md, "Streaming: limits and
billing"); every socket is a ``stream_sessions`` row with its open and close times, so
the billed time is their sum. The speech is the sum of the final turns' spans (first
word to last), the floor no socket policy can go below. Both come from rows already
stored: no column of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import StreamSessionRow, TurnRow

__all__ = ["MeetingCost", "select_costs"]


@dataclass(frozen=True, slots=True)
class MeetingCost:
    """Billed socket time and speech of one meeting, in ms."""

    meeting_id: int
    billed_ms: int
    speech_ms: int
    sessions: int

    @property
    def ratio(self) -> float | None:
        """Billed time per unit of speech, or None without speech."""
        return self.billed_ms / self.speech_ms if self.speech_ms else None


async def select_costs(
    connection: AsyncConnection, meeting_ids: Iterable[int]
) -> dict[int, MeetingCost]:
    """The cost of each meeting in ``meeting_ids`` (meetings without sockets cost 0)."""
    ids = sorted(set(meeting_ids))
    billed = dict.fromkeys(ids, 0.0)
    sessions = dict.fromkeys(ids, 0)
    speech = dict.fromkeys(ids, 0)
    for start in range(0, len(ids), 500):  # bounded IN lists
        chunk = ids[start : start + 500]
        rows = await connection.execute(
            select(
                StreamSessionRow.meeting_id, StreamSessionRow.opened_at, StreamSessionRow.closed_at
            ).where(StreamSessionRow.meeting_id.in_(chunk))
        )
        for meeting_id, opened_at, closed_at in rows:
            sessions[meeting_id] += 1
            if closed_at is not None:
                billed[meeting_id] += max(0.0, (closed_at - opened_at).total_seconds())
        spans = await connection.execute(
            select(TurnRow.meeting_id, func.sum(TurnRow.end_ms - TurnRow.start_ms))
            .where(TurnRow.meeting_id.in_(chunk))
            .group_by(TurnRow.meeting_id)
        )
        for meeting_id, total in spans:
            speech[meeting_id] = int(total or 0)
    return {i: MeetingCost(i, round(billed[i] * 1000), speech[i], sessions[i]) for i in ids}
