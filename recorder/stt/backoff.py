"""Reconnect timing for the STT session: backoff delays and quick-failure detection.

Pure: no clock is read here; callers pass times in (after websockets'
``backoff()`` and pipecat's ``QuickFailureTracker``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from recorder.errors import SttConnectionError

__all__ = ["QuickFailureTracker", "RetryBudget", "backoff"]


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
    reconnect in lockstep and trip the new-session rate limit (close 3009;
    docs/providers.md, "Streaming: limits and billing").
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


class RetryBudget:
    """Reconnect policy of one session: backoff delays, quick failures, and a give-up time.

    Args:
        initial_s: first delay.
        max_s: largest delay.
        give_up_s: give up once failures have gone on this long without a ``Begin``.
        quick_failure_s: a socket that dies sooner than this after ``Begin`` is a quick failure.
        quick_failure_limit: this many quick failures in a row: give up.
    """

    def __init__(
        self,
        *,
        initial_s: float,
        max_s: float,
        give_up_s: float,
        quick_failure_s: float,
        quick_failure_limit: int,
    ) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._give_up_s = give_up_s
        self._quick = QuickFailureTracker(window_s=quick_failure_s, limit=quick_failure_limit)
        self._delays: Iterator[float] | None = None
        self._streak_start: float | None = None

    def socket_closed(
        self, lifetime_s: float, problem: str, *, made_progress: bool = False
    ) -> None:
        """A socket that had sent ``Begin`` closed retryably after ``lifetime_s``.

        Args:
            lifetime_s: seconds the socket lived after ``Begin``.
            problem: why it closed, for the message.
            made_progress: it delivered at least one final turn. Such a socket is
                never a quick failure, however short: the service works and words
                are getting through (a flaky network, not a broken setup).

        Raises:
            SttConnectionError: too many sockets in a row died right after opening.
        """
        self._delays, self._streak_start = None, None
        if self._quick.record(float("inf") if made_progress else lifetime_s):
            raise SttConnectionError(
                f"the stt connection closed within {self._quick.window_s:g} s of opening "
                f"{self._quick.limit} times in a row ({problem}); giving up"
            )

    def socket_opened(self) -> None:
        """A socket sent ``Begin``: the failure streak is over."""
        self._delays, self._streak_start = None, None

    def next_delay(self, now: float, problem: str) -> float:
        """The delay before the next attempt, after a failure at ``now``.

        Raises:
            SttConnectionError: the failures have gone on longer than ``give_up_s``.
        """
        start = self._streak_start = now if self._streak_start is None else self._streak_start
        if self._delays is None:
            self._delays = backoff(initial_s=self._initial_s, max_s=self._max_s)
        delay = next(self._delays)
        if now + delay - start > self._give_up_s:
            raise SttConnectionError(
                f"gave up reconnecting to the speech-to-text service after {now - start:.0f} s "
                f"({problem}); check the network and the stt url"
            )
        return delay
