"""Transcription gaps and the turns that repair them.

A gap is a stretch of one participant's audio that live transcription missed
(the service unreachable, the key rejected, an outage longer than the
reconnect buffer, a stop with audio not yet sent). It stays ``open`` until a
transcript of the stored audio fills it (``repaired``), or is ``lost`` when
there is no audio to repair it from. Repaired and re-transcribed turns are
stored against a stream-session row of their own (one per async transcript),
so the turns table keeps one shape whatever the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from recorder.errors import NotFoundError
from storage.models import GapRow, MeetingRow, ParticipantRow, StreamSessionRow, TurnRow
from storage.records import GAP_STATES, MEETING_STATUSES, Gap, TurnRecord
from storage.rows import clean_optional, load_gaps, storable_text
from storage.store import TranscriptStore
from storage.writes import upsert_participant, upsert_turn_rows

__all__ = [
    "add_crash_gaps",
    "add_gap",
    "latest_revision",
    "list_gaps",
    "set_gap_state",
    "set_meeting_status",
    "store_transcribed_turns",
]

# Built once: building a statement costs more than running it once its compiled form
# is cached.
_ADD_GAP = insert(GapRow).returning(GapRow.id)


async def add_gap(
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
    """Record a gap; returns its id.

    Raises:
        ValueError: an unknown state, or ``to_ms`` before ``from_ms``.
    """
    if state not in GAP_STATES:
        raise ValueError(f"a gap is {', '.join(GAP_STATES)}, not {state!r}")
    if to_ms < from_ms:
        raise ValueError(f"a gap ends after it starts, got {from_ms}..{to_ms}")

    async def work(connection: AsyncConnection) -> int:
        result = await connection.execute(
            _ADD_GAP,
            {
                "meeting_id": meeting_id,
                "uid": uid,
                "from_ms": int(from_ms),
                "to_ms": int(to_ms),
                "cause": storable_text(cause),
                "state": state,
                "detail": clean_optional(detail),
            },
        )
        return int(result.scalar_one())

    return await store.run_in_transaction(work, write=True)


async def list_gaps(store: TranscriptStore, meeting_id: int) -> list[Gap]:
    """A meeting's gaps in time order."""

    async def work(connection: AsyncConnection) -> list[Gap]:
        return list(await load_gaps(connection, meeting_id))

    return await store.run_in_transaction(work, write=False)


async def set_gap_state(
    store: TranscriptStore, gap_id: int, state: str, *, detail: str | None = None
) -> None:
    """Mark a gap ``open``, ``repaired`` or ``lost`` (with why, if given).

    Raises:
        NotFoundError: no such gap.
    """
    if state not in GAP_STATES:
        raise ValueError(f"a gap is {', '.join(GAP_STATES)}, not {state!r}")
    values: dict[str, object] = {"state": state}
    if detail is not None:
        values["detail"] = storable_text(detail)

    async def work(connection: AsyncConnection) -> None:
        result = await connection.execute(
            update(GapRow).where(GapRow.id == gap_id).values(**values)
        )
        if result.rowcount == 0:
            raise NotFoundError(f"no gap with id {gap_id}")

    await store.run_in_transaction(work, write=True)


async def latest_revision(store: TranscriptStore, meeting_id: int) -> int:
    """The newest transcript revision of a meeting (1 if it has no turns)."""

    async def work(connection: AsyncConnection) -> int:
        found = await connection.scalar(
            select(func.max(TurnRow.revision)).where(TurnRow.meeting_id == meeting_id)
        )
        return int(found or 1)

    return await store.run_in_transaction(work, write=False)


async def store_transcribed_turns(
    store: TranscriptStore,
    meeting_id: int,
    uid: int,
    turns: Sequence[TurnRecord],
    *,
    transcript_id: str,
    transcribed_at: datetime,
    audio_seconds: float,
    repaired_gap_ids: Sequence[int] = (),
    rewritten: Sequence[TurnRecord] = (),
    deleted_turn_ids: Sequence[int] = (),
) -> int:
    """Store turns transcribed from the stored audio, in one transaction.

    ``rewritten`` turns (already stored, keyed by their own session and order)
    replace their stored versions and ``deleted_turn_ids`` are removed, in the
    same transaction: a live word cut by a gap's edge gives way to the whole
    word heard in the stored audio.

    One stream-session row stands for the async transcript (its provider id and
    the audio it was given); the turns are attached to it, their
    ``stream_session_id`` and ``turn_order`` filled in here; the gaps they
    repair are marked ``repaired`` in the same transaction, so a crash never
    leaves a repaired gap without its turns or turns whose gap is still open.

    Returns:
        The stream-session id.
    """

    async def work(connection: AsyncConnection) -> int:
        participant_id = await upsert_participant(
            connection, store.dialect, meeting_id, uid, transcribed_at, None
        )
        result = await connection.execute(
            insert(StreamSessionRow)
            .values(
                meeting_id=meeting_id,
                participant_id=participant_id,
                provider_session_id=storable_text(f"async:{transcript_id}")[:128],
                opened_at=transcribed_at,
                closed_at=transcribed_at,
                audio_seconds=float(audio_seconds),
                close_reason="async transcript of the stored audio",
            )
            .returning(StreamSessionRow.id)
        )
        session_id = int(result.scalar_one())
        records = [
            TurnRecord(
                meeting_id=meeting_id,
                uid=uid,
                stream_session_id=session_id,
                turn_order=order,
                start_ms=turn.start_ms,
                end_ms=turn.end_ms,
                text=turn.text,
                words=turn.words,
                end_of_turn_confidence=turn.end_of_turn_confidence,
                language=turn.language,
                source=turn.source,
                revision=turn.revision,
            )
            for order, turn in enumerate(turns)
        ]
        if records or rewritten:
            await upsert_turn_rows(connection, store.dialect, [*rewritten, *records])
        if deleted_turn_ids:
            await connection.execute(delete(TurnRow).where(TurnRow.id.in_(list(deleted_turn_ids))))
        if repaired_gap_ids:
            await connection.execute(
                update(GapRow).where(GapRow.id.in_(list(repaired_gap_ids))).values(state="repaired")
            )
        return session_id

    return await store.run_in_transaction(work, write=True)


async def set_meeting_status(store: TranscriptStore, meeting_id: int, status: str) -> None:
    """Change a finished meeting's status (after a repair, say), keeping its end time.

    Raises:
        ValueError: not a finished status.
        NotFoundError: no such meeting.
    """
    if status not in MEETING_STATUSES or status == "recording":
        raise ValueError(f"a finished meeting is {', '.join(MEETING_STATUSES[1:])}, not {status!r}")

    async def work(connection: AsyncConnection) -> None:
        result = await connection.execute(
            update(MeetingRow).where(MeetingRow.id == meeting_id).values(status=status)
        )
        if result.rowcount == 0:
            raise NotFoundError(f"no meeting with id {meeting_id}")

    await store.run_in_transaction(work, write=True)


async def add_crash_gaps(
    store: TranscriptStore, meeting_id: int, audio_end_ms: dict[int, int]
) -> int:
    """Gaps for what a killed recorder never transcribed: audio after each one's last word.

    Args:
        store: the store.
        meeting_id: an interrupted meeting.
        audio_end_ms: where each participant's stored audio ends, by uid.

    Returns:
        How many gaps were added (none twice: an open or repaired gap reaching the
        end of the audio already stands for it).
    """
    existing = await list_gaps(store, meeting_id)

    async def last_words(connection: AsyncConnection) -> dict[int, int]:
        rows = await connection.execute(
            select(ParticipantRow.uid, func.max(TurnRow.end_ms))
            .join(ParticipantRow, ParticipantRow.id == TurnRow.participant_id)
            .where(TurnRow.meeting_id == meeting_id, TurnRow.revision == 1)
            .group_by(ParticipantRow.uid)
        )
        return {int(uid): int(end or 0) for uid, end in rows}

    ends = await store.run_in_transaction(last_words, write=False)
    added = 0
    for uid, audio_end in sorted(audio_end_ms.items()):
        start = ends.get(uid, 0)
        if audio_end <= start:
            continue
        if any(g.uid == uid and g.to_ms >= audio_end and g.from_ms <= start for g in existing):
            continue
        await add_gap(
            store,
            meeting_id,
            uid,
            start,
            audio_end,
            "the recorder stopped before transcribing it",
        )
        added += 1
    return added
