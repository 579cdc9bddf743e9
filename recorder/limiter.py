"""A token bucket for new STT sessions, shared by every participant of a meeting, that learns.

The provider limits new sockets per minute (5 on free accounts, 100+ paid,
closing extra ones with code 3009; docs/providers.md, "Streaming: limits and
billing"). Closing idle sockets saves money but every reopen spends a session,
so reopening is rationed here and idle sockets are only closed while the budget
can afford to reopen them.

The configured rate may be wrong (a paid rate on a free key, or a key shared
with other recorders), so the budget learns: a refusal (3009) lowers the rate to
what the last minute shows the account allows and empties the bucket; the rate
then rises again by 10% a minute while sessions open cleanly, never above the
configured rate (as the provider's own allowance rises 10% a minute).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

__all__ = ["SessionBudget"]

# After a refusal, the rate rises by this factor per minute of clean opens.
_RAISE_FACTOR = 1.1
_RAISE_EVERY_S = 60.0
# A refusal never takes the rate below one session a minute.
_FLOOR_PER_MINUTE = 1.0


class SessionBudget:
    """Allows at most ``per_minute`` new sessions in any 60 s window (token bucket).

    Args:
        per_minute: sessions a minute the account is configured to allow.
        clock: seconds, monotonic (injectable for tests).
        speed: clock seconds per wall-clock second (a meeting replayed N times
            faster runs its budget on the meeting's clock); only waits use it.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        speed: float = 1.0,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.configured = float(per_minute)
        self.per_minute = float(per_minute)
        self._clock = clock
        self._speed = speed
        self._tokens = float(per_minute)
        self._updated = clock()
        self._lock = asyncio.Lock()
        self._opened: collections.deque[float] = collections.deque()
        self._changed_at = self._updated
        self.granted = 0
        self.refusals = 0

    @property
    def _capacity(self) -> float:
        return self.per_minute

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
                wait_s = (1.0 - self._tokens) * 60 / self.per_minute
                await asyncio.sleep(wait_s / self._speed)

    def opened(self) -> None:
        """A session opened cleanly (``Begin`` arrived): count it; maybe raise the rate."""
        now = self._clock()
        self._opened.append(now)
        self._forget_before(now - 60)
        if self.per_minute < self.configured and now - self._changed_at >= _RAISE_EVERY_S:
            self.per_minute = min(self.configured, self.per_minute * _RAISE_FACTOR)
            self._changed_at = now

    def refused(self) -> None:
        """A new session was refused for the rate (3009): learn a lower rate, wait a refill.

        The sessions that opened in the last minute are what the account allowed,
        so the rate drops to at most that (and by at least a fifth).
        """
        self._refill()
        now = self._clock()
        self._forget_before(now - 60)
        allowed = float(len(self._opened))
        self.per_minute = max(_FLOOR_PER_MINUTE, min(self.per_minute * 0.8, allowed))
        self._tokens = 0.0
        self._changed_at = now
        self.refusals += 1

    def _forget_before(self, cutoff: float) -> None:
        opened = self._opened
        while opened and opened[0] <= cutoff:
            opened.popleft()
