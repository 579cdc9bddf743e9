"""A token bucket for new STT sessions, shared by every participant of a meeting.

The provider limits new sockets per minute (5 on free accounts, 100+ paid,
closing extra ones with code 3009; docs/providers.md, "Streaming: limits and
billing"). Idle-closing sockets saves
money but every reopen spends a session, so reopening is rationed here and
idle sockets are only closed while the budget can afford to reopen them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["SessionBudget"]


class SessionBudget:
    """Allows at most ``per_minute`` new sessions in any 60 s window (token bucket).

    Args:
        per_minute: sessions a minute the account allows.
        clock: seconds, monotonic (injectable for tests).
    """

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute = per_minute
        self._clock = clock
        self._capacity = float(per_minute)
        self._tokens = float(per_minute)
        self._updated = clock()
        self._lock = asyncio.Lock()
        self.granted = 0

    def _refill(self) -> None:
        now = self._clock()
        earned = (now - self._updated) * self.per_minute / 60
        self._tokens = min(self._capacity, self._tokens + earned)
        self._updated = now

    @property
    def available(self) -> float:
        """Sessions that could start right now."""
        self._refill()
        return self._tokens

    def can_afford_close(self, reserve: float = 2.0) -> bool:
        """Whether closing an idle socket is safe: a reopen plus a spare remain affordable."""
        return self.available >= min(reserve, self._capacity)

    async def acquire(self) -> None:
        """Wait for a session token, then spend it."""
        async with self._lock:
            while True:
                self._refill()
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    self.granted += 1
                    return
                await asyncio.sleep((1.0 - self._tokens) * 60 / self.per_minute)
