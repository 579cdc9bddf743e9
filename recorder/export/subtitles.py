"""SRT and WebVTT exports: turns split into short cues at word timings.

A cue lasts at most :data:`MAX_CUE_MS` or two lines of :data:`MAX_LINE_CHARS`
characters (the usual broadcast limits), whichever comes first. Turns of
different speakers may overlap, so cues are merged into start-time order
(WebVTT requires it, https://www.w3.org/TR/webvtt1/) with a heap that only holds cues of turns still
in progress, keeping memory flat for long meetings.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass

from recorder.export.escape import clean_text, escape_srt, escape_vtt
from recorder.export.views import SpeakerView, TurnView

__all__ = [
    "MAX_CUE_MS",
    "MAX_LINES",
    "MAX_LINE_CHARS",
    "Cue",
    "iter_cues",
    "split_turn",
    "write_srt",
    "write_vtt",
]

MAX_CUE_MS = 6000
MAX_LINE_CHARS = 42
MAX_LINES = 2
# Longest speaker name on an SRT line, so "Name: " leaves room for words.
_MAX_NAME_CHARS = 24


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle: a time span and up to :data:`MAX_LINES` lines of clean text."""

    start_ms: int
    end_ms: int
    speaker: SpeakerView
    lines: tuple[str, ...]
    turn_id: int
    part: int


def _timed_words(turn: TurnView, max_chars: int) -> Iterator[tuple[str, int, int]]:
    words = [(clean_text(w.text), w.start_ms, w.end_ms) for w in turn.words]
    words = [w for w in words if w[0]]
    if not words:
        # No word timings (an old or imported turn): spread the text over the
        # turn in proportion to character offsets.
        tokens = turn.text.split()
        total = sum(len(t) + 1 for t in tokens) or 1
        span = max(0, turn.end_ms - turn.start_ms)
        offset = 0
        for token in tokens:
            start = turn.start_ms + span * offset // total
            offset += len(token) + 1
            words.append((token, start, turn.start_ms + span * offset // total))
    for text, start, end in words:
        end = max(start, end)
        if len(text) <= max_chars:
            yield text, start, end
            continue
        # A "word" longer than a line (a URL, a run of symbols) is cut into line-sized
        # pieces with interpolated times so no cue line overflows.
        pieces = [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
        for index, piece in enumerate(pieces):
            yield (
                piece,
                start + (end - start) * index // len(pieces),
                start + (end - start) * (index + 1) // len(pieces),
            )


def split_turn(
    turn: TurnView,
    *,
    prefix: str = "",
    max_ms: int = MAX_CUE_MS,
    max_chars: int = MAX_LINE_CHARS,
    max_lines: int = MAX_LINES,
) -> list[Cue]:
    """Split one turn into cues at word boundaries.

    Args:
        turn: the turn (its text already clean).
        prefix: text that opens the first line of every cue (``"Alice: "`` in SRT);
            it counts towards the line length.
        max_ms: longest cue.
        max_chars: longest line (a lone over-long word is cut to fit).
        max_lines: most lines per cue.

    Returns:
        The cues in time order; empty for a turn without text.
    """
    cues: list[Cue] = []
    lines: list[str] = []
    start = end = 0

    def flush() -> None:
        nonlocal lines
        if lines:
            cues.append(
                Cue(
                    start_ms=start,
                    end_ms=max(end, start + 1),
                    speaker=turn.speaker,
                    lines=tuple(lines),
                    turn_id=turn.id,
                    part=len(cues) + 1,
                )
            )
        lines = []

    for text, word_start, word_end in _timed_words(turn, max_chars):
        if lines:
            fits = len(lines[-1]) + 1 + len(text) <= max_chars or len(lines) < max_lines
            if word_end - start > max_ms or not fits:
                flush()
        if not lines:
            start, end = word_start, word_end
            # A long name and word do not share a line: the word starts the second one.
            too_long = prefix and len(prefix) + len(text) > max_chars and max_lines > 1
            lines = [prefix.rstrip(), text] if too_long else [prefix + text]
            continue
        if len(lines[-1]) + 1 + len(text) <= max_chars:
            lines[-1] += " " + text
        else:
            lines.append(text)
        end = max(end, word_end)
    flush()
    return cues


async def iter_cues(
    turns: AsyncIterable[TurnView], *, prefix_speaker: bool = False
) -> AsyncIterator[Cue]:
    """All cues of a meeting in start-time order.

    Turns arrive ordered by start time; every cue of a later turn starts no
    earlier than that turn, so cues starting at or before it are final.
    """
    heap: list[tuple[int, int, Cue]] = []
    order = itertools.count()
    async for turn in turns:
        while heap and heap[0][0] <= turn.start_ms:
            yield heapq.heappop(heap)[2]
        name = turn.speaker.name
        if len(name) > _MAX_NAME_CHARS:
            name = name[: _MAX_NAME_CHARS - 1] + "…"
        prefix = f"{name}: " if prefix_speaker else ""
        for cue in split_turn(turn, prefix=prefix):
            heapq.heappush(heap, (cue.start_ms, next(order), cue))
    while heap:
        yield heapq.heappop(heap)[2]


def _stamp(ms: int, separator: str) -> str:
    seconds, millis = divmod(max(0, ms), 1000)
    return (
        f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{separator}{millis:03d}"
    )


async def write_srt(turns: AsyncIterable[TurnView]) -> AsyncIterator[str]:
    """SubRip: numbered cues, ``hh:mm:ss,mmm`` times, the speaker's name on each cue."""
    number = 0
    async for cue in iter_cues(turns, prefix_speaker=True):
        number += 1
        text = "\n".join(escape_srt(line) for line in cue.lines)
        yield (f"{number}\n{_stamp(cue.start_ms, ',')} --> {_stamp(cue.end_ms, ',')}\n{text}\n\n")


async def write_vtt(turns: AsyncIterable[TurnView]) -> AsyncIterator[str]:
    """WebVTT: cues identified by turn and part, with ``<v Speaker>`` voice spans."""
    yield "WEBVTT\n\n"
    async for cue in iter_cues(turns):
        voice = escape_vtt(cue.speaker.name)
        text = "\n".join(escape_vtt(line) for line in cue.lines)
        yield (
            f"t{cue.turn_id}-{cue.part}\n"
            f"{_stamp(cue.start_ms, '.')} --> {_stamp(cue.end_ms, '.')}\n"
            f"<v {voice}>{text}</v>\n\n"
        )
