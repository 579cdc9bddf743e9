"""Writes that may be repeated: each finds the row an earlier attempt stored before adding one.

A write whose commit reached the database but whose answer was lost (the
connection cut right after ``COMMIT``), or a journal replayed again after a
crash mid-replay, must not store a second stream session, gap or audio file.
Each of these rows has a natural key, so the write looks for it first:
a stream session by (meeting, participant, ``opened_at``), a gap by (meeting,
uid, from, to, cause), an audio file by (meeting, uid, ``start_ms``). Turns
need nothing more: they are upserted by (stream session, turn order).

A caller that knows a write was never tried before (``fresh``: the first attempt
of a batch, not a journal replayed) skips the lookup of a stream session or an
audio file, one statement per socket or file: such a row cannot be stored yet.
Gaps always look (rare, and the same gap may be reported twice).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select

from storage.audio import add_segment
from storage.gaps import add_gap
from storage.models import AudioSegmentRow, GapRow, ParticipantRow, StreamSessionRow
from storage.rows import storable_text
from storage.store import TranscriptStore

__all__ = ["add_gap_once", "add_segment_once", "open_stream_session_once"]

# The lookups by natural key, built once (a recording runs them for every socket and
# file): building a statement costs more than running it once its compiled form is cached.
_SESSION = (
    select(StreamSessionRow.id)
    .join(ParticipantRow, ParticipantRow.id == StreamSessionRow.participant_id)
    .where(
        StreamSessionRow.meeting_id == bindparam("meeting_id_"),
        ParticipantRow.uid == bindparam("uid_"),
        StreamSessionRow.opened_at == bindparam("opened_at_"),
    )
    .limit(1)
)
_GAP = (
    select(GapRow.id)
    .where(
        GapRow.meeting_id == bindparam("meeting_id_"),
        GapRow.uid == bindparam("uid_"),
        GapRow.from_ms == bindparam("from_ms_"),
        GapRow.to_ms == bindparam("to_ms_"),
        GapRow.cause == bindparam("cause_"),
    )
    .limit(1)
)
_SEGMENT = (
    select(AudioSegmentRow.id)
    .where(
        AudioSegmentRow.meeting_id == bindparam("meeting_id_"),
        AudioSegmentRow.uid == bindparam("uid_"),
        AudioSegmentRow.start_ms == bindparam("start_ms_"),
    )
    .limit(1)
)


async def open_stream_session_once(
    store: TranscriptStore,
    meeting_id: int,
    uid: int,
    opened_at: datetime,
    provider_session_id: str | None = None,
    *,
    fresh: bool = False,
) -> int:
    """The id of the participant's session opened at ``opened_at``, stored if it is not yet.

    ``fresh``: this write was never tried before, so no lookup.
    """
    if fresh:
        return await store.open_stream_session(
            meeting_id, uid, opened_at, provider_session_id=provider_session_id
        )
    key = {"meeting_id_": meeting_id, "uid_": uid, "opened_at_": opened_at}
    found = await store.run_in_transaction(lambda c: c.scalar(_SESSION, key), write=False)
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
    key = {
        "meeting_id_": meeting_id,
        "uid_": uid,
        "from_ms_": int(from_ms),
        "to_ms_": int(to_ms),
        "cause_": storable_text(cause),
    }
    found = await store.run_in_transaction(lambda c: c.scalar(_GAP, key), write=False)
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
    fresh: bool = False,
) -> int:
    """The id of the participant's audio file starting at ``start_ms``, indexed if it is not yet.

    ``fresh``: this write was never tried before, so no lookup.
    """
    if not fresh:
        key = {"meeting_id_": meeting_id, "uid_": uid, "start_ms_": int(start_ms)}
        found = await store.run_in_transaction(lambda c: c.scalar(_SEGMENT, key), write=False)
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
