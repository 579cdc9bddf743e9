"""What a takeover missed, stored as gaps, so the meeting's status tells the truth.

A worker that continues a meeting another worker held (dead, frozen or handed
back) rejoins at meeting time ``E``. For each participant the meeting knew:

* the audio the previous worker kept (the shared audio directory) after the
  participant's last stored word was received but maybe never transcribed (its
  turn was not final when the worker died): an ``open`` gap, repaired from that
  audio with the async API when the meeting ends, as any other gap;
* from where that audio ends to ``E``, nobody received anything: a ``lost``
  gap, if the participant was still in the channel. Silence and missed speech
  look the same from here, so the meeting ends ``partial`` whenever someone
  was present during the outage.

A participant the meeting did not know who is already in the channel at the
rejoin may have spoken during the outage too: :func:`store_newcomer_gaps`
gives them a ``lost`` gap at the end. Every such gap's cause starts with
``takeover:`` and says which kind it is (``show`` and the exports print it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from recorder.audio_store.reader import _length_ms
from storage.audio import list_segments
from storage.gaps import add_gap
from storage.models import MeetingEventRow, MeetingRow, ParticipantRow, TurnRow
from storage.records import Gap
from storage.store import TranscriptStore

__all__ = [
    "CAUSE",
    "Outage",
    "TakeoverGaps",
    "is_takeover",
    "store_newcomer_gaps",
    "store_takeover_gaps",
]

log = logging.getLogger(__name__)

CAUSE = "takeover"
_KEPT = f"{CAUSE}: the worker recording it stopped before transcribing this kept audio"
_UNHEARD = f"{CAUSE}: nobody received the audio while the recording moved to another worker"
_NEWCOMER = (
    f"{CAUSE}: in the channel when another worker rejoined it; nobody received what was said before"
)
#: Audio a killed worker had received but not yet written: its loop gathers half a
#: second per participant before the writer thread gets it, and the thread may lag a
#: little. Only for a participant whose audio had stopped before (their last file was
#: finished: a mute, a leave, no frames in silence) does the lost stretch start this
#: long before the worker's last sign of life rather than where their audio ends.
UNFLUSHED_MS = 2000
#: Participants already in a channel are reported within this long of a rejoin.
JOIN_BURST_MS = 2000
#: Stretches shorter than this are not worth a gap (one frame of jitter).
_MIN_MS = 20


def is_takeover(gap: Gap) -> bool:
    """Whether a gap was left by a takeover."""
    return gap.cause.startswith(f"{CAUSE}:")


@dataclass(frozen=True, slots=True)
class Outage:
    """The stretch of meeting time nobody was recording.

    Attributes:
        from_ms: the previous holder's last sign of life (lease renewal or hand-back).
        to_ms: where this worker rejoins the meeting.
        handed_back: the previous holder stopped cleanly (drain, retry): every word it
            heard was transcribed or stored as a gap by itself.
    """

    from_ms: float
    to_ms: float
    handed_back: bool


@dataclass(frozen=True, slots=True)
class TakeoverGaps:
    """The gaps a takeover stored.

    Attributes:
        known: the participants the meeting knew before the takeover.
        to_repair: ``open`` gaps (kept audio not transcribed yet).
        lost_ms: meeting time not heard, summed over participants.
        lost: how many ``lost`` gaps.
    """

    known: frozenset[int]
    to_repair: int = 0
    lost: int = 0
    lost_ms: float = 0.0


async def store_takeover_gaps(
    store: TranscriptStore, meeting_id: int, outage: Outage
) -> TakeoverGaps:
    """Store the gaps of a takeover, before this worker records anything.

    Raises:
        RecorderError: the database refused (the lease lost, say).
    """
    known = await store.run_in_transaction(lambda c: _known(c, meeting_id), write=False)
    words_end = await store.run_in_transaction(
        lambda c: _words_end(c, meeting_id, outage.to_ms), write=False
    )
    present = await store.run_in_transaction(lambda c: _present(c, meeting_id), write=False)
    audio_end: dict[int, int] = {}
    flowing: dict[int, bool] = {}  # whether the participant's last file was still being written
    for segment in await list_segments(store, meeting_id):  # by uid, then time
        if segment.start_ms < outage.to_ms:
            end = segment.start_ms + _length_ms(segment)
            audio_end[segment.uid] = max(audio_end.get(segment.uid, 0), end)
            flowing[segment.uid] = not segment.is_complete
    uids = frozenset(known) | frozenset(audio_end)
    to_repair = lost = 0
    lost_ms = 0.0
    end = round(outage.to_ms)
    for uid in sorted(uids):
        words = words_end.get(uid, 0)
        audio = audio_end.get(uid)
        if not outage.handed_back and audio is not None and audio - words >= _MIN_MS:
            await add_gap(store, meeting_id, uid, words, audio, _KEPT)
            to_repair += 1
        if not present.get(uid, True):
            continue  # left before the outage: nothing to miss
        # Audio still flowing at the death is lost from where the files end; a participant
        # who had stopped sending lost nothing before the worker's last sign of life.
        stopped = 0.0 if flowing.get(uid) else outage.from_ms - UNFLUSHED_MS
        start = round(max(words, audio or 0, stopped, 0))
        if end - start >= _MIN_MS:
            await add_gap(store, meeting_id, uid, start, end, _UNHEARD, state="lost")
            lost += 1
            lost_ms += end - start
    return TakeoverGaps(frozenset(uids), to_repair, lost, lost_ms)


async def store_newcomer_gaps(
    store: TranscriptStore, meeting_id: int, outage: Outage, known: frozenset[int]
) -> int:
    """``lost`` gaps for participants first seen at the rejoin; returns how many.

    Someone already in the channel when this worker rejoined may have joined, and
    spoken, during the outage. A rejoined live channel reports them as joining now
    (so from the outage's start); a replayed one at the time they joined.
    """
    seen = await store.run_in_transaction(lambda c: _first_seen(c, meeting_id), write=False)
    added = 0
    end = round(outage.to_ms)
    for uid, first_ms in sorted(seen.items()):
        if uid in known or first_ms >= outage.to_ms + JOIN_BURST_MS:
            continue
        start = outage.from_ms if first_ms >= outage.to_ms else max(outage.from_ms, first_ms)
        if end - start < _MIN_MS:
            continue
        await add_gap(store, meeting_id, uid, round(start), end, _NEWCOMER, state="lost")
        added += 1
    return added


# -- queries ----------------------------------------------------------------------


async def _known(connection: AsyncConnection, meeting_id: int) -> set[int]:
    rows = await connection.execute(
        select(ParticipantRow.uid).where(ParticipantRow.meeting_id == meeting_id)
    )
    return {int(uid) for (uid,) in rows}


async def _words_end(
    connection: AsyncConnection, meeting_id: int, before_ms: float
) -> dict[int, int]:
    """Where each participant's stored words end (live or repaired, first revision)."""
    rows = await connection.execute(
        select(ParticipantRow.uid, func.max(TurnRow.end_ms))
        .join(ParticipantRow, ParticipantRow.id == TurnRow.participant_id)
        .where(
            TurnRow.meeting_id == meeting_id,
            TurnRow.revision == 1,
            TurnRow.start_ms < before_ms,
        )
        .group_by(ParticipantRow.uid)
    )
    return {int(uid): int(end or 0) for uid, end in rows}


async def _present(connection: AsyncConnection, meeting_id: int) -> dict[int, bool]:
    """Whether each participant was in the channel at the last event stored.

    Joins and leaves are meeting events on PostgreSQL only (the fleet's database);
    a participant with none is taken as present.
    """
    rows = await connection.execute(
        select(MeetingEventRow.kind, MeetingEventRow.payload)
        .where(
            MeetingEventRow.meeting_id == meeting_id,
            MeetingEventRow.kind.in_(("participant.joined", "participant.left")),
        )
        .order_by(MeetingEventRow.id)
    )
    present: dict[int, bool] = {}
    for kind, payload in rows:
        uid = payload.get("uid") if isinstance(payload, dict) else None
        if isinstance(uid, int):
            present[uid] = kind == "participant.joined"
    return present


async def _first_seen(connection: AsyncConnection, meeting_id: int) -> dict[int, float]:
    """When each participant was first seen, in meeting ms."""
    started: datetime | None = await connection.scalar(
        select(MeetingRow.started_at).where(MeetingRow.id == meeting_id)
    )
    if started is None:
        return {}
    rows = await connection.execute(
        select(ParticipantRow.uid, ParticipantRow.first_seen).where(
            ParticipantRow.meeting_id == meeting_id
        )
    )
    return {int(uid): (seen - started).total_seconds() * 1000 for uid, seen in rows}
