"""The transcript as the model reads it, and its split into parts that fit a request.

Each turn is one line, ``[T<turn id> <start>-<end>] <speaker>: <text>``, times as
``HH:MM:SS`` from the start of the meeting. The turn id lets every item the model
returns point back at the turns it comes from; the times and names let it say who
said what when. Parts are cut only between turns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from storage.records import Turn

__all__ = [
    "DEFAULT_PART_TOKENS",
    "TranscriptLine",
    "clock",
    "estimate_tokens",
    "lines_for",
    "render",
    "speaker_label",
    "split_parts",
]

# Transcript tokens per request: far below every current model's context (200k+), so a
# part's notes fit comfortably in the answer and long meetings are split in a few parts.
DEFAULT_PART_TOKENS = 30_000
_UNSAFE = re.compile(r"[\[\]:\r\n\t]+")
_SPACE = re.compile(r"\s+")


def clock(ms: int) -> str:
    """``HH:MM:SS`` for a position in the meeting."""
    seconds = max(0, ms) // 1000
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def estimate_tokens(text: str) -> int:
    """About four characters a token (docs/providers.md, "LLM Gateway: pricing")."""
    return (len(text) + 3) // 4


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One turn as sent to the model.

    Attributes:
        turn_id: the stored turn's id.
        speaker: the participant's name as shown everywhere (display name or uid).
        label: the name as written in the line (no brackets, colons or line breaks).
        start_ms: where the turn starts.
        end_ms: where it ends.
        text: the turn's text on one line.
    """

    turn_id: int
    speaker: str
    label: str
    start_ms: int
    end_ms: int
    text: str

    def render(self) -> str:
        """The line, as the model reads it."""
        return (
            f"[T{self.turn_id} {clock(self.start_ms)}-{clock(self.end_ms)}] "
            f"{self.label}: {self.text}"
        )


def speaker_label(name: str) -> str:
    """A participant's name made safe for the line format."""
    return _SPACE.sub(" ", _UNSAFE.sub(" ", name)).strip() or "unknown"


def lines_for(turns: Iterable[Turn]) -> list[TranscriptLine]:
    """Transcript lines for the turns that have words, in time order."""
    lines = []
    for turn in sorted(turns, key=lambda t: (t.start_ms, t.id)):
        text = _SPACE.sub(" ", turn.text).strip()
        if not text:
            continue
        lines.append(
            TranscriptLine(
                turn_id=turn.id,
                speaker=turn.speaker,
                label=speaker_label(turn.speaker),
                start_ms=turn.start_ms,
                end_ms=turn.end_ms,
                text=text,
            )
        )
    return lines


def render(lines: Iterable[TranscriptLine]) -> str:
    """The lines joined as one transcript."""
    return "\n".join(line.render() for line in lines)


def split_parts(
    lines: Sequence[TranscriptLine], max_tokens: int = DEFAULT_PART_TOKENS
) -> list[list[TranscriptLine]]:
    """Consecutive parts of at most ``max_tokens`` each, cut between turns.

    A single turn longer than the budget is a part of its own.
    """
    parts: list[list[TranscriptLine]] = []
    current: list[TranscriptLine] = []
    used = 0
    for line in lines:
        cost = estimate_tokens(line.render()) + 1
        if current and used + cost > max_tokens:
            parts.append(current)
            current, used = [], 0
        current.append(line)
        used += cost
    if current:
        parts.append(current)
    return parts
