"""What the agent is told: the selected turns as a speaker-attributed transcript, within a budget.

:func:`build_prompt` puts the transcript in the system prompt, keeping the most
recent turns that fit :data:`MAX_SYSTEM_PROMPT_CHARS`, so a long meeting never
fails; which turns to include was decided before (:class:`~recorder.recap.ledger.TurnLedger`).
Pure functions: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from recorder.timeline import format_clock

__all__ = [
    "MAX_EXTRA_CHARS",
    "MAX_SYSTEM_PROMPT_CHARS",
    "MAX_TURN_CHARS",
    "RecapPrompt",
    "RecapRequest",
    "RecapTurn",
    "build_prompt",
    "format_line",
]

#: Prompt budget. The service documents no cap on ``system_prompt`` or
#: ``instructions`` (docs/providers.md, "Voice Agent: protocol"), so stay far
#: below any LLM context: 24,000 characters is about 6,000 tokens, an hour of
#: brisk talk, and keeps the frame under websockets' 1 MiB default message size.
MAX_SYSTEM_PROMPT_CHARS = 24_000
#: One monologue may not crowd out everyone else.
MAX_TURN_CHARS = 1_000
#: The caller's extra instructions (``prompt_extra``).
MAX_EXTRA_CHARS = 500

_PERSONA = (
    "You are the meeting recorder's recap voice. Speak only when asked. "
    "Never invent facts: use only the meeting transcript below. "
    "Speak in plain sentences, without lists, markup or emoji."
)
_INSTRUCTIONS = (
    "Give a short spoken recap of the meeting transcript in your instructions: "
    "for each speaker, their latest point in one sentence, in the order they spoke."
)
_SPACE = re.compile(r"\s+")
#: Room kept for the note about omitted turns.
_OMITTED_NOTE_CHARS = 120


class RecapTurn(Protocol):
    """What a recap reads from a turn; the ledger's turns and ``storage.records.Turn`` fit."""

    @property
    def uid(self) -> int:
        """The participant who spoke it."""

    @property
    def speaker(self) -> str:
        """The name to show."""

    @property
    def start_ms(self) -> int:
        """Start on the meeting timeline."""

    @property
    def end_ms(self) -> int:
        """End on the meeting timeline."""

    @property
    def text(self) -> str:
        """What was said."""


@dataclass(frozen=True, slots=True)
class RecapRequest:
    """What to recap and how.

    Attributes:
        turns: the turns to recap, already selected and named (the ledger's
            :meth:`~recorder.recap.ledger.TurnLedger.select`), in meeting-time order.
        prompt_extra: extra instructions from the user ("focus on decisions").
        voice: ``output.voice`` (None: the service's default).
    """

    turns: Sequence[RecapTurn]
    prompt_extra: str = ""
    voice: str | None = None


@dataclass(frozen=True, slots=True)
class RecapPrompt:
    """The text sent to the agent.

    Attributes:
        system_prompt: persona plus the transcript lines.
        instructions: the one-shot ``reply.create`` instructions.
        turn_count: turns included.
        omitted_count: older turns left out to fit the budget.
    """

    system_prompt: str
    instructions: str
    turn_count: int
    omitted_count: int


def format_line(turn: RecapTurn) -> str:
    """One transcript line: ``[hh:mm:ss] Speaker: text`` on a single line."""
    name = _SPACE.sub(" ", turn.speaker).replace(":", " ").strip()
    text = _SPACE.sub(" ", turn.text).strip()
    if len(text) > MAX_TURN_CHARS:
        text = text[: MAX_TURN_CHARS - 1].rstrip() + "…"
    return f"[{format_clock(turn.start_ms)}] {name or turn.uid}: {text}"


def build_prompt(request: RecapRequest, *, budget: int = MAX_SYSTEM_PROMPT_CHARS) -> RecapPrompt:
    """Build the system prompt and instructions, keeping the newest turns that fit.

    Args:
        request: the recap to make.
        budget: the longest system prompt to build, in characters.

    Returns:
        The prompt; never longer than ``budget`` however long the meeting.
    """
    turns = [turn for turn in request.turns if turn.text.strip()]
    head = f"{_PERSONA}\n\nMeeting transcript:\n"
    lines: list[str] = []
    used = len(head)
    # Newest first until the budget is spent; the note about omitted turns needs room too.
    for turn in reversed(turns):
        line = format_line(turn)
        if used + len(line) + 1 + _OMITTED_NOTE_CHARS > budget:
            break
        lines.append(line)
        used += len(line) + 1
    lines.reverse()
    omitted = len(turns) - len(lines)
    body = "\n".join(lines) if lines else "(nothing has been said yet)"
    if omitted:
        first_kept = turns[omitted].start_ms
        note = f"(the {omitted} earlier turns before {format_clock(first_kept)} are left out)\n"
        body = note + body
    instructions = _INSTRUCTIONS
    extra = _SPACE.sub(" ", request.prompt_extra).strip()[:MAX_EXTRA_CHARS]
    if extra:
        instructions = f"{instructions} {extra}"
    return RecapPrompt((head + body)[:budget], instructions, len(lines), omitted)
