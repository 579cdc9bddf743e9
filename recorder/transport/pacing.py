"""Paced publishing: hand 10 ms frames to a channel at most a lead ahead of its clock.

Both transports that speak (Agora, replay) publish through one :class:`PublishPacer`:
it pushes frames only while less than ``lead_ms`` is waiting to play, so a
barge-in has little to take back (docs/providers.md, "Agora: audio frames"),
and it knows when everything pushed will have played, so callers wait for that
instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
from collections.abc import Callable

from recorder.audio import FRAME_MS, bytes_for_ms

__all__ = ["DEFAULT_LEAD_MS", "PublishPacer"]

#: Audio pushed ahead of the channel's clock: 100-200 ms keeps playback fed
#: through scheduling jitter and still silences the bot within that on a flush.
DEFAULT_LEAD_MS = 150.0
_FRAME_BYTES = bytes_for_ms(FRAME_MS)
# After a wait, resume when this much below the lead has played, then push that
# much at once: one wake-up per few frames instead of one per frame.
_RESUME_FRAMES = 4


class PublishPacer:
    """Feeds a channel 10 ms frames, never more than ``lead_ms`` ahead of its clock.

    The channel's clock is injected (milliseconds). Waiting on it takes one of
    two forms:

    * timed (the default): the clock runs with the wall clock, so a wait is a
      timer on the event loop (Agora: the SDK plays in real time);
    * ticked: a thread advances the clock and calls :meth:`tick` after each
      step, which wakes a waiter, through ``call_soon_threadsafe``, only when
      one exists and its time has come (the replay's playback thread). Such a
      channel plays only between :meth:`start` and :meth:`close`.

    A channel that is not playing (not started, or closed) takes audio without
    pacing: it has no clock to pace to, nothing plays it yet (or ever), and
    :attr:`backlog_ms` keeps counting it, so a caller can tell it was not heard.

    What was pushed plays back to back from when it was pushed (or when the
    audio before it ends), so the time at which everything pushed has played is
    known without asking the channel. A channel whose clock and queue move
    together on another thread passes ``channel_lock``: the clock is read and
    the frame queued under it, so that estimate is exact.

    Args:
        clock_ms: the channel's clock, in milliseconds.
        lead_ms: most audio pushed and not yet played.
        ticked: the clock advances only with :meth:`tick` calls (else with the wall clock).
        channel_lock: held while reading the clock and pushing one frame.
    """

    def __init__(
        self,
        *,
        clock_ms: Callable[[], float],
        lead_ms: float = DEFAULT_LEAD_MS,
        ticked: bool = False,
        channel_lock: threading.Lock | None = None,
    ) -> None:
        if lead_ms < FRAME_MS:
            raise ValueError(f"lead_ms must be at least {FRAME_MS}")
        self.lead_ms = lead_ms
        self._clock_ms = clock_ms
        self._is_ticked = ticked
        self._channel_lock: contextlib.AbstractContextManager[object] = (
            channel_lock if channel_lock is not None else contextlib.nullcontext()
        )
        self._lock = asyncio.Lock()
        self._generation = 0
        self._played_until_ms = 0.0  # channel time when the pushed audio has played out
        self._flushed_ms = 0.0  # pushed, then dropped by a flush before it played
        self._is_closed = False
        self._is_playing = not ticked
        # Waiters on the loop, earliest first; the next wake-up time is published
        # for the ticking thread to read (a float or None: atomic under the GIL).
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._wake_at_ms: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pushed_ms = 0.0

    @property
    def backlog_ms(self) -> float:
        """Audio pushed and not played yet, in ms."""
        return max(0.0, self._played_until_ms - self._clock_ms())

    @property
    def played_ms(self) -> float:
        """Audio pushed that has played so far (a flush's dropped audio never counts), in ms.

        Exact at any moment, even while a publish is in progress, which its
        caller cannot tell from how much it handed over.
        """
        with self._channel_lock:
            return self.pushed_ms - self._flushed_ms - self.backlog_ms

    @property
    def is_closed(self) -> bool:
        """The channel stopped playing for good (nothing pushed will play any more)."""
        return self._is_closed

    def start(self) -> None:
        """A ticked channel's clock starts: pace from now on."""
        if not self._is_closed:
            self._is_playing = True

    async def publish(
        self, pcm: bytes | bytearray | memoryview, push: Callable[[bytes], None]
    ) -> bool:
        """Hand ``pcm`` to ``push`` as 10 ms frames, paced; False if a flush cut it short.

        The last frame is padded with silence. One publish runs at a time; the
        next waits for it, and a flush meanwhile drops it too. Exceptions from
        ``push`` propagate (nothing after the failed frame is pushed).
        """
        generation = self._generation
        data = bytes(pcm)
        if len(data) % _FRAME_BYTES:
            data += bytes(_FRAME_BYTES - len(data) % _FRAME_BYTES)
        async with self._lock:
            for offset in range(0, len(data), _FRAME_BYTES):
                ahead_ms = self._played_until_ms - self._clock_ms()
                if self._is_playing and ahead_ms > self.lead_ms:
                    resume_at = self._played_until_ms - self.lead_ms + _RESUME_FRAMES * FRAME_MS
                    await self._sleep_until(resume_at)
                if generation != self._generation:
                    return False
                frame = data[offset : offset + _FRAME_BYTES]
                with self._channel_lock:
                    now = self._clock_ms()
                    push(frame)
                    self._played_until_ms = max(self._played_until_ms, now) + FRAME_MS
                    self.pushed_ms += FRAME_MS
            return True

    async def wait_played(self, backlog_ms: float = 0.0) -> None:
        """Return once at most ``backlog_ms`` is still to play, or at once on a flush or close."""
        generation = self._generation
        while generation == self._generation and not self._is_closed:
            target = self._played_until_ms - backlog_ms
            if self._clock_ms() >= target:
                return
            await self._sleep_until(target)

    def flush(self) -> None:
        """Forget what was pushed (the caller drops it from the channel); on the loop.

        A publish in progress stops before its next frame; waiters return. A
        channel with a ``channel_lock`` calls this holding it, as it drops its queue.
        """
        self._generation += 1
        self._flushed_ms += self.backlog_ms
        self._played_until_ms = 0.0
        self._wake_all()

    def close(self) -> None:
        """The channel stopped playing for good: wake every waiter; pace nothing more."""
        self._is_closed = True
        self._is_playing = False
        self._wake_all()

    def tick(self) -> None:
        """The clock advanced (from the channel's thread): wake the loop if a waiter is due.

        Costs one attribute read when nobody waits; never raises.
        """
        wake_at = self._wake_at_ms
        if wake_at is None or self._clock_ms() < wake_at:
            return
        self._wake_at_ms = None  # one wake-up per due time; the loop sets the next
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._wake_due)
        except RuntimeError:  # the loop closed: nobody is waiting any more
            pass

    async def _sleep_until(self, at_ms: float) -> None:
        """Wait until the channel's clock reaches ``at_ms``, a flush, or a close."""
        if self._is_closed:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (at_ms, next(self._order), waiter)
        heapq.heappush(self._waiters, entry)
        timer: asyncio.TimerHandle | None = None
        try:
            if self._is_ticked:
                self._wake_at_ms = self._waiters[0][0]
                # Set before reading the clock: the ticking thread writes the clock
                # before reading this, so one of the two sees the other.
                if self._clock_ms() >= at_ms:
                    return
            else:
                # The caller checks the clock again: a timer firing a hair early
                # costs one more short wait, never a missed wake-up.
                delay_s = max(0.0, at_ms - self._clock_ms()) / 1000.0
                timer = loop.call_later(delay_s, _resolve, waiter)
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if entry in self._waiters:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            self._publish_wake_at()

    def _wake_due(self) -> None:
        """On the loop, ticked: resolve every waiter whose time has come."""
        now = self._clock_ms()
        while self._waiters and self._waiters[0][0] <= now:
            _resolve(heapq.heappop(self._waiters)[2])
        self._publish_wake_at()

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, []
        for _, _, waiter in waiters:
            _resolve(waiter)
        self._wake_at_ms = None

    def _publish_wake_at(self) -> None:
        if self._is_ticked:
            self._wake_at_ms = self._waiters[0][0] if self._waiters else None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
