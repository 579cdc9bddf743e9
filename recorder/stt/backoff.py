"""Reconnect timing for the STT session: backoff delays and quick-failure detection.

Pure: no clock is read here; callers pass times in (STYLE.md §3.1, after
websockets' ``backoff()`` and pipecat's ``QuickFailureTracker``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

__all__ = ["QuickFailureTracker", "backoff"]


def backoff(
    *,
    initial_s: float = 0.5,
    max_s: float = 10.0,
    factor: float = 2.0,
    jitter: float = 0.5,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Yield reconnect delays: exponential from ``initial_s`` up to ``max_s``, with jitter.

    Each delay is scaled by a random factor in ``[1 - jitter, 1]`` so that many
    sockets dropped at once (200 participants, one network blip) do not
    reconnect in lockstep and trip the new-session rate limit (spec §6.1, 3009).
    """
    delay = initial_s
    while True:
        yield min(delay, max_s) * (1.0 - jitter * rand())
        delay = min(delay * factor, max_s)


class QuickFailureTracker:
    """Count connections that die right after opening; too many in a row means give up.

    Args:
        window_s: a connection that lived less than this counts as a quick failure.
        limit: this many quick failures in a row trips the tracker.
    """

    def __init__(self, *, window_s: float = 5.0, limit: int = 3) -> None:
        self.window_s = window_s
        self.limit = limit
        self.count = 0

    def record(self, lifetime_s: float) -> bool:
        """Record one connection's lifetime; return True when the limit is reached."""
        if lifetime_s < self.window_s:
            self.count += 1
        else:
            self.count = 0
        return self.count >= self.limit
