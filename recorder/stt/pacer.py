"""When a socket's next audio message may go: no faster than real time, within a lead.

:class:`Pacer` reads the time from an injected :class:`PacingClock` (the
monotonic clock by default), so a test can drive a socket's pacing by hand
(:class:`recorder.clock.ManualClock` fits) instead of racing the wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from recorder.clock import SystemClock

__all__ = ["MONOTONIC_CLOCK", "Pacer", "PacingClock"]


class PacingClock(Protocol):
    """Where the pacer reads the time and waits."""

    def monotonic(self) -> float:
        """Monotonic seconds."""

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``monotonic()`` has reached ``deadline``."""


MONOTONIC_CLOCK = SystemClock()


class Pacer:
    """The pacing rule of one socket: audio may lead the time since ``Begin`` by ``max_lead_s``.

    The service closes a socket whose audio runs too far ahead of real time
    (docs/providers.md, "Streaming: audio"), so a message may go once the
    audio before it, less the lead, has played at ``realtime_factor``.

    Args:
        bytes_per_second: of the audio.
        realtime_factor: audio clock speed (1.0 in production).
        max_lead_s: the lead, in audio seconds.
        clock: where the time is read.
    """

    __slots__ = ("_began_at", "_bytes_per_clock_s", "_clock", "_lead_bytes", "_now")

    def __init__(
        self,
        *,
        bytes_per_second: int,
        realtime_factor: float,
        max_lead_s: float,
        clock: PacingClock = MONOTONIC_CLOCK,
    ) -> None:
        self._clock = clock
        # The real clock is read straight from time.monotonic: asked for every chunk.
        self._now: Callable[[], float] = (
            time.monotonic if clock is MONOTONIC_CLOCK else clock.monotonic
        )
        self._bytes_per_clock_s = bytes_per_second * realtime_factor
        self._lead_bytes = max_lead_s * bytes_per_second
        self._began_at = clock.monotonic()

    def restart(self) -> None:
        """Start the socket's audio clock now (at ``Begin``)."""
        self._began_at = self._now()

    def due(self, bytes_sent: int) -> float:
        """The clock time at which the message after ``bytes_sent`` bytes may go."""
        return self._began_at + (bytes_sent - self._lead_bytes) / self._bytes_per_clock_s

    @property
    def is_monotonic(self) -> bool:
        """Whether the clock is ``time.monotonic`` itself (a loop timer can stand for it)."""
        return self._clock is MONOTONIC_CLOCK

    def delay(self, bytes_sent: int) -> float:
        """Seconds from now until the message after ``bytes_sent`` bytes may go (<= 0: now)."""
        return self.due(bytes_sent) - self._now()

    def is_due(self, bytes_sent: int) -> bool:
        """Whether the message after ``bytes_sent`` bytes may go now."""
        return (
            self._now()
            >= self._began_at + (bytes_sent - self._lead_bytes) / self._bytes_per_clock_s
        )

    async def wait(self, bytes_sent: int) -> None:
        """Wait until the message after ``bytes_sent`` bytes may go."""
        await self._clock.sleep_until(self.due(bytes_sent))
