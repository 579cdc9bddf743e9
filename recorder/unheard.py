"""Speech that nothing covers: the last check before a meeting says how it ended.

Every gap live transcription misses should be reported by the stream that missed
it (:mod:`recorder.gaps`). This is the safety net under that: the recorder notes
where each participant's audio carried speech (the level detection every chunk
already has), and at the end any stretch of speech that no stored turn and no gap
covers becomes a gap of its own, which the end-of-meeting repair transcribes from
the kept audio. A missed report can then cost a repair, never a word, and never a
``completed`` that is not true.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from recorder.audio import Chunk
from storage.gaps import list_gaps
from storage.store import TranscriptStore

__all__ = ["UNHEARD_CAUSE", "SpeechSpans", "uncovered_speech"]

#: Why such a stretch is a gap (the gap row's cause).
UNHEARD_CAUSE = "speech no live transcript covered (found when the meeting ended)"

# Speech this close to the last is the same stretch (a pause between words).
_JOIN_MS = 300.0
# A turn or gap covers this much either side: level detection works in whole chunks,
# so speech may start a chunk before the first word and end a chunk after the last.
_SLACK_MS = 250.0
# Uncovered speech shorter than this is a chunk's edge or a breath, not a word.
_MIN_MS = 300.0


class SpeechSpans:
    """Where each participant's audio carried speech, as merged (start, end) spans.

    Kept flat in an ``array`` (start, end, start, end, ...) per participant: a span
    a sentence, so an hour of 500 speakers is some 500,000 spans, which as lists
    would be objects for every full garbage collection to walk (each a pause of
    every participant's audio) and ten times the memory.
    """

    __slots__ = ("_spans",)

    def __init__(self) -> None:
        self._spans: dict[int, array[float]] = {}

    def heard(self, uid: int, chunk: Chunk) -> None:
        """Note ``chunk`` if it carries speech (on the loop, once per chunk)."""
        if not chunk.is_speech:
            return
        spans = self._spans.get(uid)
        if spans is None:
            self._spans[uid] = array("d", (chunk.start_ms, chunk.end_ms))
        elif chunk.start_ms - spans[-1] <= _JOIN_MS:
            if chunk.end_ms > spans[-1]:
                spans[-1] = chunk.end_ms
        else:
            spans.append(chunk.start_ms)
            spans.append(chunk.end_ms)

    def of(self, uid: int) -> list[tuple[float, float]]:
        """``uid``'s speech spans, in time order."""
        spans = self._spans.get(uid)
        if spans is None:
            return []
        return list(zip(spans[::2], spans[1::2], strict=True))

    @property
    def uids(self) -> list[int]:
        """Everyone whose audio carried speech."""
        return list(self._spans)


def _uncovered(
    spans: Iterable[tuple[float, float]], covers: list[tuple[float, float]]
) -> list[tuple[int, int]]:
    """The parts of ``spans`` no cover reaches (each cover widened by the slack)."""
    covers = sorted((a - _SLACK_MS, b + _SLACK_MS) for a, b in covers)
    out: list[tuple[int, int]] = []
    for start, end in spans:
        at = start
        for a, b in covers:
            if b <= at or a >= end:
                continue
            if a > at and a - at >= _MIN_MS:
                out.append((int(at), int(a)))
            at = max(at, b)
            if at >= end:
                break
        if end - at >= _MIN_MS:
            out.append((int(at), int(end)))
    return out


async def uncovered_speech(
    store: TranscriptStore, meeting_id: int, speech: SpeechSpans
) -> list[tuple[int, int, int]]:
    """Speech of the meeting no stored turn or gap covers, as (uid, from_ms, to_ms).

    Raises:
        StorageError: the database failed.
    """
    covers: dict[int, list[tuple[float, float]]] = {uid: [] for uid in speech.uids}
    # Without words: bounded however long the meeting (keyset pages).
    async for turn in store.iter_turns(meeting_id, with_words=False):
        if turn.uid in covers:
            covers[turn.uid].append((turn.start_ms, turn.end_ms))
    for gap in await list_gaps(store, meeting_id):
        if gap.uid in covers:
            covers[gap.uid].append((gap.from_ms, gap.to_ms))
    return [
        (uid, start, end)
        for uid in speech.uids
        for start, end in _uncovered(speech.of(uid), covers[uid])
    ]
