"""What one recap did: :class:`RecapOutcome`, kept by the observer and stored as the note's meta."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recorder.recap.triggers import SpokenTrigger, Trigger

__all__ = ["RecapOutcome"]


@dataclass(slots=True)
class RecapOutcome:
    """What one recap did (also stored as the note's ``meta``).

    Attributes:
        trigger: what started it.
        requested_at_ms: meeting time it was asked for.
        started_at_ms: meeting time its first frame was published (None: never).
        audio_ms: recap audio the channel played.
        text: what the agent said ("" if it failed).
        is_interrupted: cut short (a barge-in, the meeting ending, the agent).
        interrupted_at_ms: position in the recap audio where it stopped.
        stop_reason: why it was cut short ("barge-in", "the meeting ended", ...).
        barge_in: ``(uid, meeting ms)`` of the participant who spoke over it.
        turn_count: turns handed to the agent.
        session_id: the Voice Agent session.
        note_id: the stored note (None if the recap failed).
        error: why it failed, if it did.
    """

    trigger: Trigger
    requested_at_ms: float
    started_at_ms: float | None = None
    audio_ms: float = 0.0
    text: str = ""
    is_interrupted: bool = False
    interrupted_at_ms: float | None = None
    stop_reason: str | None = None
    barge_in: tuple[int, float] | None = None
    turn_count: int = 0
    session_id: str | None = None
    note_id: int | None = None
    error: str | None = None

    def as_meta(self) -> dict[str, Any]:
        """The note's ``meta``."""
        trigger = (
            self.trigger.as_meta() if isinstance(self.trigger, SpokenTrigger) else self.trigger
        )
        return {
            "trigger": trigger,
            "interrupted": self.is_interrupted,
            "interrupted_at_ms": _rounded(self.interrupted_at_ms),
            "stop_reason": self.stop_reason,
            "audio_ms": round(self.audio_ms),
            "requested_at_ms": round(self.requested_at_ms),
            "started_at_ms": _rounded(self.started_at_ms),
            "barge_in": (
                None
                if self.barge_in is None
                else {"uid": self.barge_in[0], "at_ms": round(self.barge_in[1])}
            ),
            "turns": self.turn_count,
            "session_id": self.session_id,
        }


def _rounded(value: float | None) -> int | None:
    return None if value is None else round(value)
