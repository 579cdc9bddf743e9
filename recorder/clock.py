"""Clocks: the system clock, and a manual one tests move by hand.

The STT pacer reads and waits on one (recorder/stt/pacer.py). In the emulators, the
session cap (3008; docs/providers.md, "Streaming: limits and billing"), the inactivity
timeout and the billed session length are measured on one, so a test can jump three
hours ahead without waiting; the emulators' audio pacing uses the event loop's clock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Where the emulator reads the time."""

    def time(self) -> float:
        """Unix time in seconds (for ``Begin.expires_at``)."""

    def monotonic(self) -> float:
        """Monotonic seconds (for durations and deadlines)."""

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``monotonic()`` has reached ``deadline``."""


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """Unix time in seconds."""
        return time.time()

    def monotonic(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the monotonic clock reaches ``deadline``."""
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """A clock that only moves when :meth:`advance` is called (tests).

    Use it from the event loop that runs the emulator.

    Args:
        start: the initial Unix time.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._unix_offset = start
        self._now = 0.0
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []
        self._registered: asyncio.Event | None = None

    def time(self) -> float:
        """Unix time in seconds."""
        return self._unix_offset + self._now

    def monotonic(self) -> float:
        """Seconds advanced so far."""
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        """Wait until :meth:`advance` has moved the clock to ``deadline``."""
        if deadline <= self._now:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((deadline, future))
        if self._registered is not None:
            self._registered.set()
        try:
            await future
        finally:
            self._waiters = [(d, f) for d, f in self._waiters if f is not future]

    @property
    def deadlines(self) -> list[float]:
        """The deadlines somebody is sleeping until, soonest first."""
        return sorted(deadline for deadline, future in self._waiters if not future.done())

    async def wait_sleeping_until(self, deadline: float) -> None:
        """Wait until somebody sleeps until ``deadline`` (a test's synchronisation point)."""
        if self._registered is None:
            self._registered = asyncio.Event()
        while deadline not in self.deadlines:
            self._registered.clear()
            await self._registered.wait()

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake every sleeper whose deadline has passed."""
        self._now += seconds
        for deadline, future in self._waiters:
            if deadline <= self._now and not future.done():
                future.set_result(None)
