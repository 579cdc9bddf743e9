"""A sliding-window budget for new STT sessions, shared by every participant of a meeting.

The provider limits new sockets per minute (5 on free accounts, 100+ paid,
closing extra ones with code 3009; docs/providers.md, "Streaming: limits and
billing"). Closing idle sockets saves money but every reopen spends a session,
so reopening is rationed here and idle sockets are only closed while the budget
can afford to reopen them. It counts sessions in a sliding window, as the
provider does, not in a token bucket: a bucket that starts full and refills
keeps granting while the window is still full (with 5 a minute, 5 at once and
a sixth 12 s later), and that sixth is refused.

The configured rate may be wrong (a paid rate on a free key, or a key shared
with other recorders), so the budget learns: a refusal (3009) lowers the rate to
what the last minute shows the account allows; the rate then rises again by 10%
a minute while sessions open cleanly, never above the configured rate (as the
provider's own allowance rises 10% a minute).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable

__all__ = ["SessionBudget"]

# The provider counts a session when our upgrade reaches it, a little after we
# count it, so our window is a little longer than its minute.
_WINDOW_S = 62.0
# After a refusal, the rate rises by this factor per minute of clean opens.
_RAISE_FACTOR = 1.1
_RAISE_EVERY_S = 60.0
# Refusals this soon after one that lowered the rate answer attempts made before it
# (several streams opening at once): they do not lower it again.
_REFUSAL_BURST_S = 10.0
# A refusal never takes the rate below one session a minute.
_FLOOR_PER_MINUTE = 1.0


class SessionBudget:
    """Allows at most ``per_minute`` new sessions in any minute (a sliding window).

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
        self._lock = asyncio.Lock()
        self._granted: collections.deque[float] = collections.deque()  # in the window
        self._opened: collections.deque[float] = collections.deque()  # cleanly, last minute
        self._changed_at = clock()
        self._lowered_at: float | None = None
        self.granted = 0
        self.refusals = 0

    @property
    def limit(self) -> int:
        """Sessions allowed in any minute now (the learned rate, whole)."""
        return max(1, math.floor(self.per_minute))

    @property
    def is_scarce(self) -> bool:
        """Whether less than half of a minute's sessions are left to spend."""
        return self.available < self.limit / 2

    def _expire(self, now: float) -> None:
        granted = self._granted
        while granted and granted[0] <= now - _WINDOW_S:
            granted.popleft()

    @property
    def available(self) -> float:
        """Sessions that could start right now."""
        self._expire(self._clock())
        return float(max(0, self.limit - len(self._granted)))

    def can_afford_close(self, reserve: float = 2.0) -> bool:
        """Whether closing an idle socket is safe: a reopen plus a spare remain affordable."""
        return self.available >= min(reserve, self.limit)

    async def acquire(self) -> None:
        """Wait until a session fits in the window, then spend it."""
        async with self._lock:
            while True:
                now = self._clock()
                self._expire(now)
                if len(self._granted) < self.limit:
                    self._granted.append(now)
                    self.granted += 1
                    return
                wait_s = self._granted[0] + _WINDOW_S - now
                await asyncio.sleep(max(wait_s, 0.001) / self._speed)

    def opened(self) -> None:
        """A session opened cleanly (``Begin`` arrived): count it; maybe raise the rate."""
        now = self._clock()
        self._opened.append(now)
        while self._opened and self._opened[0] <= now - 60:
            self._opened.popleft()
        if self.per_minute < self.configured and now - self._changed_at >= _RAISE_EVERY_S:
            self.per_minute = min(self.configured, self.per_minute * _RAISE_FACTOR)
            self._changed_at = now

    def refused(self) -> None:
        """A new session was refused for the rate (3009): learn a lower rate.

        The sessions that opened in the last minute are what the account allowed:
        fewer than the rate, and the rate drops to that; as many, and the rate was
        too high anyway (another user of the key), so it drops by a fifth. Refusals
        within 10 s of a drop answer attempts made before it and drop nothing more.
        The refused attempt stays counted, so the next waits for the window to make
        room.
        """
        now = self._clock()
        self.refusals += 1
        if self._lowered_at is not None and now - self._lowered_at < _REFUSAL_BURST_S:
            return
        while self._opened and self._opened[0] <= now - 60:
            self._opened.popleft()
        allowed = float(len(self._opened))
        lowered = allowed if allowed < self.per_minute else self.per_minute * 0.8
        self.per_minute = max(_FLOOR_PER_MINUTE, lowered)
        self._changed_at = self._lowered_at = now
