"""Repair transcription gaps, and re-transcribe meetings, from the stored audio.

A gap's stretch of one participant's audio (with a second of margin either
side, so a word cut by the gap's edge is heard whole) is read from the stored
files, transcribed with the pre-recorded (async) API, and its words placed at
their true meeting times: the stretch's start plus each word's offset. Words
that overlap a word already stored for that participant (live, or repaired
earlier) are dropped, so a repaired turn never repeats live words. What is
left becomes turns marked ``repaired``, stored with the gaps they fill in one
transaction.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from recorder.audio_store.files import SAMPLE_RATE_HZ
from recorder.audio_store.reader import covered_ms, read_stretch
from recorder.errors import RecorderError, SttRejected
from recorder.tonecode import ends_sentence
from storage.audio import list_segments
from storage.gaps import latest_revision, list_gaps, set_gap_state, store_transcribed_turns
from storage.records import AudioSegment, Gap, Turn, TurnRecord, Word
from storage.store import TranscriptStore

__all__ = [
    "RepairOutcome",
    "Transcriber",
    "place_repaired",
    "place_words",
    "repair_meeting",
    "retranscribe_meeting",
]

log = logging.getLogger(__name__)

#: Audio read either side of a gap, so a word its edge cuts is transcribed whole.
PAD_MS = 1000
#: A repaired word reaching this far past a gap's edge (ms) was cut by that edge.
STRADDLE_MS = 10
#: A pause this long between two words starts a new turn.
TURN_PAUSE_MS = 1000
#: Longest stretch sent as one transcript when re-transcribing.
WINDOW_MS = 30 * 60 * 1000


class _Word(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def start_ms(self) -> int: ...
    @property
    def end_ms(self) -> int: ...
    @property
    def confidence(self) -> float | None: ...


class _Transcript(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def words(self) -> Sequence[_Word]: ...
    @property
    def language_code(self) -> str | None: ...


class Transcriber(Protocol):
    """What repair needs of the async client (``recorder.batch.AsyncClient``)."""

    async def transcribe(
        self,
        audio: bytes,
        *,
        speech_models: tuple[str, ...] = (),
        keyterms: tuple[str, ...] = (),
        language_code: str | None = None,
    ) -> _Transcript:
        """Transcribe one audio file."""


@dataclass(frozen=True, slots=True)
class RepairOutcome:
    """What a repair did."""

    repaired: int = 0
    lost: int = 0
    left_open: int = 0
    words: int = 0
    problem: str | None = None

    def summary(self) -> str:
        """One line for the console: what was repaired, lost, and left for later."""
        from recorder.console import plural

        line = f"repair: {plural(self.repaired, 'gap')} repaired with {plural(self.words, 'word')}"
        if self.lost:
            line += f", {self.lost} lost (no stored audio)"
        if self.left_open:
            line += f", {self.left_open} still open"
            problem = self.problem or "the service could not transcribe them"
            # The async client's errors already say what to run; say it once.
            again = "" if "recorder repair" in problem else "; run 'recorder repair' again later"
            line += f": {problem}{again}"
        return line


async def _speakers(store: TranscriptStore, meeting_id: int) -> dict[int, str]:
    """How the console names each participant: ``Ada (101)``, else ``uid 101``."""
    meeting = await store.get_meeting(meeting_id, with_turns=False)
    names = {p.uid: p.display_name for p in meeting.participants}
    return {uid: f"{name} ({uid})" if name else f"uid {uid}" for uid, name in names.items()}


def _stretch(lo: int, hi: int) -> str:
    """A stretch of meeting time as the console prints it, ``00:01:05-00:01:40``."""
    from recorder.timeline import format_clock

    return f"{format_clock(lo)}-{format_clock(hi)}"


def _encode(pcm: bytes) -> bytes:
    import soundfile

    out = io.BytesIO()
    with soundfile.SoundFile(
        out, "w", samplerate=SAMPLE_RATE_HZ, channels=1, subtype="PCM_16", format="FLAC"
    ) as file:
        file.buffer_write(pcm, dtype="int16")
    return out.getvalue()


def _merge(gaps: Sequence[Gap]) -> list[list[Gap]]:
    """Group one participant's gaps whose padded stretches touch."""
    groups: list[list[Gap]] = []
    for gap in sorted(gaps, key=lambda g: (g.from_ms, g.to_ms)):
        if groups and gap.from_ms - PAD_MS <= max(g.to_ms for g in groups[-1]) + PAD_MS:
            groups[-1].append(gap)
        else:
            groups.append([gap])
    return groups


def place_words(
    words: Sequence[_Word],
    offset_ms: int,
    kept: Sequence[Word],
) -> list[Word]:
    """Words of a transcript at meeting time, without those already stored.

    Args:
        words: the transcript's words (ms from the start of its audio).
        offset_ms: meeting time of the audio's start.
        kept: the participant's words already stored, in any order.
    """
    spans = sorted((w.start_ms, w.end_ms) for w in kept)
    starts = [s for s, _ in spans]
    import bisect

    placed = []
    for word in words:
        start, end = offset_ms + word.start_ms, offset_ms + word.end_ms
        middle = (start + end) // 2
        index = bisect.bisect_right(starts, middle) - 1
        if index >= 0 and spans[index][0] <= middle <= spans[index][1]:
            continue  # heard live already
        placed.append(Word(word.text, start, end, word.confidence))
    return placed


def _turns(
    meeting_id: int,
    uid: int,
    words: Sequence[Word],
    *,
    source: str,
    revision: int,
    language: str | None,
) -> list[TurnRecord]:
    turns: list[TurnRecord] = []
    current: list[Word] = []

    def close() -> None:
        if current:
            turns.append(
                TurnRecord(
                    meeting_id=meeting_id,
                    uid=uid,
                    stream_session_id=0,
                    turn_order=0,
                    start_ms=current[0].start_ms,
                    end_ms=max(current[0].start_ms, current[-1].end_ms),
                    text=" ".join(w.text for w in current),
                    words=tuple(current),
                    language=language,
                    source=source,
                    revision=revision,
                )
            )
            current.clear()

    for word in words:
        if current and word.start_ms - current[-1].end_ms > TURN_PAUSE_MS:
            close()
        current.append(word)
        if ends_sentence(word.text):
            close()
    close()
    return turns


async def _stored_turns(store: TranscriptStore, meeting_id: int, uid: int) -> list[Turn]:
    return [turn async for turn in store.iter_turns(meeting_id, revision=1) if turn.uid == uid]


def _straddles(start: int, end: int, edges: Sequence[int]) -> bool:
    return any(start < edge - STRADDLE_MS and end > edge + STRADDLE_MS for edge in edges)


def place_repaired(
    words: Sequence[_Word],
    offset_ms: int,
    stored: Sequence[Turn],
    edges: Sequence[int],
) -> tuple[list[Word], set[tuple[int, int]]]:
    """A repair's words at meeting time, and the stored words they displace.

    A word that straddles a gap's edge (``edges``) was cut there for live
    transcription, which heard only part of it (a fragment, or a wrong word):
    the whole word heard in the stored audio replaces every stored word it
    overlaps. Any other word already stored (its middle inside a stored word)
    is dropped, so nothing is stored twice.

    Returns:
        The words to store, and the displaced stored words as (turn id, index).
    """
    stored_words = [
        (word.start_ms, word.end_ms, turn.id, index)
        for turn in stored
        for index, word in enumerate(turn.words)
    ]
    displaced: set[tuple[int, int]] = set()
    whole: list[Word] = []
    rest: list[_Word] = []
    for word in words:
        start, end = offset_ms + word.start_ms, offset_ms + word.end_ms
        if _straddles(start, end, edges):
            whole.append(Word(word.text, start, end, word.confidence))
            displaced |= {(t, i) for s, e, t, i in stored_words if s < end and e > start}
        else:
            rest.append(word)
    kept = [Word("", s, e) for s, e, t, i in stored_words if (t, i) not in displaced]
    placed = whole + place_words(rest, offset_ms, kept)
    placed.sort(key=lambda w: w.start_ms)
    return placed, displaced


def _without(
    stored: Sequence[Turn], displaced: set[tuple[int, int]]
) -> tuple[list[TurnRecord], list[int]]:
    """The stored turns that lose words: rewritten without them, or deleted if emptied."""
    rewritten: list[TurnRecord] = []
    deleted: list[int] = []
    for turn in stored:
        left = tuple(w for i, w in enumerate(turn.words) if (turn.id, i) not in displaced)
        if len(left) == len(turn.words):
            continue
        if not left:
            deleted.append(turn.id)
            continue
        rewritten.append(
            TurnRecord(
                meeting_id=turn.meeting_id,
                uid=turn.uid,
                stream_session_id=turn.stream_session_id,
                turn_order=turn.turn_order,
                start_ms=left[0].start_ms,
                end_ms=max(left[0].start_ms, left[-1].end_ms),
                text=" ".join(w.text for w in left),
                words=left,
                end_of_turn_confidence=turn.end_of_turn_confidence,
                language=turn.language,
                source=turn.source,
                revision=turn.revision,
            )
        )
    return rewritten, deleted


async def repair_meeting(
    store: TranscriptStore,
    meeting_id: int,
    client: Transcriber,
    *,
    say: Callable[[str], None] | None = None,
    uid: int | None = None,
    until_ms: int | None = None,
) -> RepairOutcome:
    """Transcribe every open gap of a meeting from its stored audio.

    A gap no stored audio covers is marked ``lost``. A gap the service could not
    transcribe now stays ``open`` for a later ``recorder repair``.

    Args:
        store: the meeting's store.
        meeting_id: the meeting.
        client: the async API client.
        say: where progress lines go.
        uid: repair only this participant's gaps (during the meeting).
        until_ms: repair only gaps whose padded stretch ends by this meeting time
            (during the meeting: where the participant's live transcription is
            settled, so its words there are stored and none is heard twice).

    Raises:
        SttRejected: the async API rejected the key (nothing more can be done now).
    """
    gaps = [
        g
        for g in await list_gaps(store, meeting_id)
        if g.state == "open" and (uid is None or g.uid == uid)
    ]
    repaired = lost = left_open = words = 0
    problem: str | None = None
    by_uid: dict[int, list[Gap]] = {}
    for gap in gaps:
        by_uid.setdefault(gap.uid, []).append(gap)
    speakers = await _speakers(store, meeting_id) if by_uid else {}
    for who, theirs in sorted(by_uid.items()):
        speaker = speakers.get(who, f"uid {who}")
        segments = await list_segments(store, meeting_id, who)
        for group in _merge(theirs):
            lo = max(0, min(g.from_ms for g in group) - PAD_MS)
            hi = max(g.to_ms for g in group) + PAD_MS
            if until_ms is not None and hi > until_ms:
                continue  # live transcription is not settled there yet
            if not segments or covered_ms(segments, lo, hi) == 0:
                for gap in group:
                    await set_gap_state(store, gap.id, "lost", detail="no stored audio covers it")
                lost += len(group)
                continue
            hi = min(hi, max(s.start_ms + _length(s) for s in segments))
            try:
                count = await _repair_stretch(
                    store, meeting_id, who, group, segments, lo, hi, client
                )
            except SttRejected:
                raise
            except (RecorderError, OSError) as exc:
                problem = str(exc)
                log.warning("! could not repair %s %s: %s", speaker, _stretch(lo, hi), exc)
                left_open += len(group)
                continue
            repaired += len(group)
            words += count
            if say is not None:
                from recorder.console import plural

                say(
                    f"+ repaired {speaker} {_stretch(lo, hi)} from the stored audio: "
                    f"{plural(count, 'word')}"
                )
    return RepairOutcome(repaired, lost, left_open, words, problem)


def _length(segment: AudioSegment) -> int:
    from recorder.audio_store.reader import _length_ms

    return _length_ms(segment)


async def _repair_stretch(
    store: TranscriptStore,
    meeting_id: int,
    uid: int,
    group: Sequence[Gap],
    segments: Sequence[AudioSegment],
    lo: int,
    hi: int,
    client: Transcriber,
) -> int:
    pcm = await asyncio.to_thread(read_stretch, segments, lo, hi)
    audio = await asyncio.to_thread(_encode, pcm)
    transcript = await client.transcribe(audio)
    stored = await _stored_turns(store, meeting_id, uid)
    edges = [edge for gap in group for edge in (gap.from_ms, gap.to_ms)]
    placed, displaced = place_repaired(transcript.words, lo, stored, edges)
    rewritten, deleted = _without(stored, displaced)
    if displaced:
        log.info(
            "= repair of uid %d: %d stored word(s) cut by a gap's edge replaced by whole words",
            uid,
            len(displaced),
        )
    turns = _turns(
        meeting_id,
        uid,
        placed,
        source="repaired",
        revision=1,
        language=transcript.language_code,
    )
    await store_transcribed_turns(
        store,
        meeting_id,
        uid,
        turns,
        transcript_id=transcript.id,
        transcribed_at=datetime.now(UTC),
        audio_seconds=(hi - lo) / 1000,
        repaired_gap_ids=[g.id for g in group],
        rewritten=rewritten,
        deleted_turn_ids=deleted,
    )
    return len(placed)


async def retranscribe_meeting(
    store: TranscriptStore,
    meeting_id: int,
    client: Transcriber,
    *,
    speech_models: tuple[str, ...] = (),
    keyterms: tuple[str, ...] = (),
    language_code: str | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[int, int]:
    """Transcribe a meeting's whole stored audio again, as a new transcript revision.

    Nothing earlier is deleted; readers show the newest revision unless asked.

    Returns:
        The new revision and how many words it has.

    Raises:
        NotFoundError: the meeting has no stored audio.
        SttError: the async API failed.
    """
    from recorder.errors import NotFoundError

    segments = await list_segments(store, meeting_id)
    if not segments:
        raise NotFoundError(
            f"meeting {meeting_id} has no stored audio to transcribe again "
            "(it was recorded with --no-audio, or before audio was kept)"
        )
    revision = await latest_revision(store, meeting_id) + 1
    total = 0
    by_uid: dict[int, list[AudioSegment]] = {}
    for segment in segments:
        by_uid.setdefault(segment.uid, []).append(segment)
    speakers = await _speakers(store, meeting_id)
    for uid, theirs in sorted(by_uid.items()):
        turns: list[TurnRecord] = []
        ids: list[str] = []
        seconds = 0.0
        for lo, hi in _windows(theirs):
            pcm = await asyncio.to_thread(read_stretch, theirs, lo, hi)
            audio = await asyncio.to_thread(_encode, pcm)
            transcript = await client.transcribe(
                audio, speech_models=speech_models, keyterms=keyterms, language_code=language_code
            )
            placed = place_words(transcript.words, lo, [])
            turns += _turns(
                meeting_id,
                uid,
                placed,
                source="retranscribed",
                revision=revision,
                language=transcript.language_code,
            )
            ids.append(transcript.id)
            seconds += (hi - lo) / 1000
            total += len(placed)
        await store_transcribed_turns(
            store,
            meeting_id,
            uid,
            turns,
            transcript_id=",".join(ids),
            transcribed_at=datetime.now(UTC),
            audio_seconds=seconds,
        )
        if say is not None:
            from recorder.console import plural

            heard = plural(sum(len(t.words) for t in turns), "word")
            say(f"+ {speakers.get(uid, f'uid {uid}')}: {heard} in revision {revision}")
    return revision, total


def _windows(segments: Sequence[AudioSegment]) -> list[tuple[int, int]]:
    """Stretches to transcribe: runs of files, at most WINDOW_MS each."""
    windows: list[tuple[int, int]] = []
    for segment in sorted(segments, key=lambda s: s.start_ms):
        start, end = segment.start_ms, segment.start_ms + _length(segment)
        if end <= start:
            continue
        if windows and start - windows[-1][1] < PAD_MS and end - windows[-1][0] <= WINDOW_MS:
            windows[-1] = (windows[-1][0], max(windows[-1][1], end))
        else:
            windows.append((start, end))
    return windows
