"""Writes that may be repeated: each finds the row an earlier attempt stored before adding one.

A write whose commit reached the database but whose answer was lost (the
connection cut right after ``COMMIT``), or a journal replayed again after a
crash mid-replay, must not store a second stream session, gap or audio file.
Each of these rows has a natural key, so the write looks for it first:
a stream session by (meeting, participant, ``opened_at``), a gap by (meeting,
uid, from, to, cause), an audio file by (meeting, uid, ``start_ms``). Turns
need nothing more: they are upserted by (stream session, turn order).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from storage.audio import add_segment
from storage.gaps import add_gap
from storage.models import AudioSegmentRow, GapRow, ParticipantRow, StreamSessionRow
from storage.rows import storable_text
from storage.store import TranscriptStore

__all__ = ["add_gap_once", "add_segment_once", "open_stream_session_once"]


async def open_stream_session_once(
    store: TranscriptStore,
    meeting_id: int,
    uid: int,
    opened_at: datetime,
    provider_session_id: str | None = None,
) -> int:
    """The id of the participant's session opened at ``opened_at``, stored if it is not yet."""
    query = (
        select(StreamSessionRow.id)
        .join(ParticipantRow, ParticipantRow.id == StreamSessionRow.participant_id)
        .where(
            StreamSessionRow.meeting_id == meeting_id,
            ParticipantRow.uid == uid,
            StreamSessionRow.opened_at == opened_at,
        )
        .limit(1)
    )
    found = await store.run_in_transaction(lambda c: c.scalar(query), write=False)
    if found is not None:
        return int(found)
    return await store.open_stream_session(
        meeting_id, uid, opened_at, provider_session_id=provider_session_id
    )


async def add_gap_once(
    store: TranscriptStore,
    meeting_id: int,
    uid: int,
    from_ms: int,
    to_ms: int,
    cause: str,
    *,
    state: str = "open",
    detail: str | None = None,
) -> int:
    """The id of this gap, stored if it is not yet."""
    query = (
        select(GapRow.id)
        .where(
            GapRow.meeting_id == meeting_id,
            GapRow.uid == uid,
            GapRow.from_ms == int(from_ms),
            GapRow.to_ms == int(to_ms),
            GapRow.cause == storable_text(cause),
        )
        .limit(1)
    )
    found = await store.run_in_transaction(lambda c: c.scalar(query), write=False)
    if found is not None:
        return int(found)
    return await add_gap(store, meeting_id, uid, from_ms, to_ms, cause, state=state, detail=detail)


async def add_segment_once(
    store: TranscriptStore,
    meeting_id: int,
    uid: int,
    *,
    start_ms: int,
    sample_rate_hz: int,
    format: str,
    path: str,
) -> int:
    """The id of the participant's audio file starting at ``start_ms``, indexed if it is not yet."""
    query = (
        select(AudioSegmentRow.id)
        .where(
            AudioSegmentRow.meeting_id == meeting_id,
            AudioSegmentRow.uid == uid,
            AudioSegmentRow.start_ms == int(start_ms),
        )
        .limit(1)
    )
    found = await store.run_in_transaction(lambda c: c.scalar(query), write=False)
    if found is not None:
        return int(found)
    return await add_segment(
        store,
        meeting_id,
        uid,
        start_ms=start_ms,
        sample_rate_hz=sample_rate_hz,
        format=format,
        path=path,
    )
