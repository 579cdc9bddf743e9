"""When a participant's open socket may close: at the end of a turn, or after a fixed silence.

Streaming bills the time a socket is open (docs/providers.md, "Streaming: limits and
billing"), so a socket should close soon after its speaker stops, but not while a turn is
still being transcribed, and not so soon that the speaker's next sentence pays for a
reopen. :class:`SocketHold` decides, from what the pipeline already has: its own level
detection on the participant's chunks and the final turns the socket returned. Pure: no
clock, no asyncio; times are meeting ms.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DEFAULT_HOLD_MS", "SPEECH_SLACK_MS", "ClosePolicy", "CloseSettings", "SocketHold"]

#: How long a socket stays open after its speaker's last speech once a final turn covers it.
#: Chosen with bench/bench_cost.py: on its meetings a speaker's next sentence starts within
#: 0.4-0.6 s (median) and 0.6-1.1 s (p90) of the last, while their next turn comes after
#: someone else's, 3 s or more later (p10). Any hold in between separates the two; the
#: bench shows the shortest bills least (a reopen costs no billed time: the socket opens
#: on speech and the pre-roll goes out at once), so the hold covers the typical sentence
#: pause (about p75-p90 on long turns) and leaves the rest to the session budget:
#: 0.6 s billed 1.17x speech on the stand-up and 1.08-1.09x on longer turns, 1.0 s
#: 1.25x and 1.09-1.12x (docs/architecture.md, "Decisions and measurements").
DEFAULT_HOLD_MS = 600.0

#: Speech that starts this soon after a final's last word counts as that word's tail
#: (the level is measured per 100 ms chunk, so a chunk may start before the word ends
#: and the next chunk carry its decay).
SPEECH_SLACK_MS = 100.0


class ClosePolicy(enum.Enum):
    """How an open socket decides it is idle."""

    TURN_END = "turn-end"
    """Close ``hold_ms`` after the last speech, once a final turn covers it (the default)."""
    IDLE = "idle"
    """Close after ``idle_close_ms`` of silence, whatever the turns (the earlier policy)."""


@dataclass(frozen=True, slots=True)
class CloseSettings:
    """When a participant's socket closes.

    Attributes:
        policy: see :class:`ClosePolicy`.
        hold_ms: with ``TURN_END``, silence after the last speech before closing.
        idle_close_ms: silence after which a socket closes under either policy (with
            ``TURN_END`` it is the fallback when no final covers the last speech: a
            cough the model did not transcribe).
    """

    policy: ClosePolicy = ClosePolicy.TURN_END
    hold_ms: float = DEFAULT_HOLD_MS
    idle_close_ms: float = 2000.0

    def __post_init__(self) -> None:
        if self.hold_ms < 0 or self.idle_close_ms <= 0:
            raise ValueError("close hold and idle close must be positive")


class SocketHold:
    """One participant's open socket: has its speaker stopped, and has the server caught up?

    Feed it the participant's speech chunks (:meth:`heard_speech`) and the end of each
    final turn (:meth:`heard_final`); ask :meth:`due` with the meeting time now.
    :meth:`reset` when a new socket opens.
    """

    __slots__ = ("_final_end_ms", "_settings", "_speech_end_ms", "_speech_start_ms")

    def __init__(self, settings: CloseSettings) -> None:
        self._settings = settings
        self._speech_start_ms = 0.0
        self._speech_end_ms = 0.0
        self._final_end_ms: float | None = None

    @property
    def settings(self) -> CloseSettings:
        """The rule applied."""
        return self._settings

    @property
    def last_speech_end_ms(self) -> float:
        """Where the participant's last speech chunk ended."""
        return self._speech_end_ms

    def reset(self) -> None:
        """A new socket: no final turn has come on it yet."""
        self._final_end_ms = None

    def heard_speech(self, start_ms: float, end_ms: float) -> None:
        """The participant's chunk from ``start_ms`` to ``end_ms`` was speech (local level)."""
        self._speech_start_ms = start_ms
        self._speech_end_ms = max(self._speech_end_ms, end_ms)

    def heard_final(self, end_ms: float) -> None:
        """A final turn arrived whose last word ends at ``end_ms``."""
        if self._final_end_ms is None or end_ms > self._final_end_ms:
            self._final_end_ms = end_ms

    @property
    def turn_is_covered(self) -> bool:
        """Whether a final turn covers the participant's last speech (nothing in flight)."""
        final = self._final_end_ms
        return final is not None and self._speech_start_ms <= final + SPEECH_SLACK_MS

    def due(self, now_ms: float, *, scarce: bool = False) -> bool:
        """Whether the socket may close at meeting time ``now_ms``.

        Args:
            now_ms: the meeting time now.
            scarce: new sessions are scarce (a free account's 5 a minute, mostly
                spent): a close must then be worth its reopen, so it waits for
                ``idle_close_ms`` of silence (the speaker's turn is over and someone
                else has the floor) rather than a sentence pause.
        """
        silent_ms = now_ms - self._speech_end_ms
        settings = self._settings
        if silent_ms >= settings.idle_close_ms:
            return True
        return (
            settings.policy is ClosePolicy.TURN_END
            and not scarce
            and silent_ms >= settings.hold_ms
            and self.turn_is_covered
        )
