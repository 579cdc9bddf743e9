"""Plays one spoken recap into the channel: whole 10 ms frames, a short pre-roll, a bounded backlog.

The agent's reply arrives in bursts; :class:`RecapPlayer` hands it to
:meth:`Transport.publish <recorder.transport.base.Transport.publish>` as it
comes, never more than ``max_backlog_ms`` ahead of what the channel has played
(waiting on :meth:`~recorder.transport.base.Transport.wait_played`), so a
barge-in has little to take back. :meth:`RecapPlayer.interrupt` drops
everything queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from recorder.audio import FRAME_MS, bytes_for_ms, ms_for_bytes
from recorder.recap.settings import DEFAULT_MAX_BACKLOG_MS, DEFAULT_PREROLL_MS
from recorder.transport.base import Transport

__all__ = ["RecapPlayer"]

log = logging.getLogger(__name__)

_FRAME_BYTES = bytes_for_ms(FRAME_MS)


class RecapPlayer:
    """Publishes one recap's PCM16 16 kHz audio into the channel, paced by the transport.

    Args:
        transport: the channel.
        cancel: set by :meth:`interrupt`; once set, nothing more is published.
        clock_ms: meeting time now.
        preroll_ms: audio gathered before publishing starts.
        max_backlog_ms: most audio queued in the transport; feeding waits beyond it.
        stall_s: a backlog that does not shrink for this long (wall clock) means the
            channel stopped playing (the replay ended, the connection is gone): the
            rest of the recap is not published.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        cancel: asyncio.Event,
        clock_ms: Callable[[], float],
        preroll_ms: float = DEFAULT_PREROLL_MS,
        max_backlog_ms: float = DEFAULT_MAX_BACKLOG_MS,
        stall_s: float = 2.0,
    ) -> None:
        self._transport = transport
        self._cancel = cancel
        self._clock_ms = clock_ms
        self._preroll_bytes = bytes_for_ms(preroll_ms)
        self._max_backlog_ms = max(max_backlog_ms, float(FRAME_MS))
        self._stall_s = stall_s
        self._pending = bytearray()
        self.published_ms = 0.0
        # The transport's played figure when this recap started publishing: it is
        # exact even while a paced publish() is still pushing.
        self._played_base: float | None = None
        self.started_at_ms: float | None = None
        self.interrupted_at_ms: float | None = None
        self.stop_reason: str | None = None
        self.is_playing = False
        self.is_stalled = False

    @property
    def played_ms(self) -> float:
        """Recap audio the channel has played so far."""
        if self.interrupted_at_ms is not None:
            return self.interrupted_at_ms
        if self._played_base is None:
            return 0.0
        return max(0.0, self._transport.publish_played_ms - self._played_base)

    async def feed(self, pcm: bytes) -> None:
        """Take the next piece of the reply (``run_recap``'s ``on_audio``); may wait for room."""
        if self._cancel.is_set() or self.is_stalled:
            return
        self._pending += pcm
        if self.started_at_ms is None and len(self._pending) < self._preroll_bytes:
            return
        await self._publish_whole_frames()

    async def finish(self) -> None:
        """Publish what is left (padded to a whole frame) and wait until it has played."""
        if self._cancel.is_set() or self.is_stalled:
            self.is_playing = False
            return
        if len(self._pending) % _FRAME_BYTES:
            self._pending += bytes(_FRAME_BYTES - len(self._pending) % _FRAME_BYTES)
        await self._publish_whole_frames()
        await self._wait_for_backlog(0.0)
        self.is_playing = False

    def interrupt(self, reason: str = "stopped") -> float:
        """Stop at once (barge-in, shutdown): drop queued audio; returns the ms played.

        Synchronous, so the caller (the observer's ``speech``, on the loop) silences
        the channel before anything else runs. Setting ``cancel`` also ends the
        agent's reply, and with it the session's billing.

        Args:
            reason: why, for the note (the first reason given is kept).
        """
        if self.interrupted_at_ms is None:
            self.interrupted_at_ms = self.played_ms
            self.stop_reason = reason
        self._cancel.set()
        self._pending.clear()
        self._transport.flush_publish()
        self.is_playing = False
        return self.interrupted_at_ms

    async def _publish_whole_frames(self) -> None:
        whole = len(self._pending) - len(self._pending) % _FRAME_BYTES
        if not whole:
            return
        data = bytes(self._pending[:whole])
        del self._pending[:whole]
        # Keep at most max_backlog_ms queued: wait until this piece fits (a piece
        # longer than the limit waits for an empty queue).
        room = max(0.0, self._max_backlog_ms - ms_for_bytes(len(data)))
        if not await self._wait_for_backlog(room):
            return
        if self.started_at_ms is None:
            self.started_at_ms = self._clock_ms()
            self._played_base = self._transport.publish_played_ms
            self.is_playing = True
        await self._transport.publish(data)
        if not self._cancel.is_set():
            self.published_ms += ms_for_bytes(len(data))

    async def _wait_for_backlog(self, limit_ms: float) -> bool:
        """Wait until at most ``limit_ms`` is queued; False if cancelled or stalled.

        Each wait is bounded by what is left of ``stall_s`` since the backlog last
        shrank, so a channel that stopped playing is noticed however the
        transport implements :meth:`~recorder.transport.base.Transport.wait_played`.
        """
        loop = asyncio.get_running_loop()
        backlog = self._transport.publish_backlog_ms
        moved_at = loop.time()
        while backlog > limit_ms and not self._cancel.is_set():
            returned = await self._wait_played(limit_ms, moved_at + self._stall_s - loop.time())
            now_backlog = self._transport.publish_backlog_ms
            # wait_played returning above the limit means nothing will play any more
            # (the channel stopped, the replay ended): no need to wait out stall_s.
            is_stopped = returned and now_backlog > limit_ms
            if now_backlog < backlog and not is_stopped:
                moved_at = loop.time()
            elif (
                is_stopped or loop.time() - moved_at >= self._stall_s
            ) and not self._cancel.is_set():
                self.is_stalled = True
                self.interrupt("the channel stopped playing")
                log.warning(
                    "! the channel stopped playing the recap (%.0f ms still queued); "
                    "the rest is not spoken",
                    now_backlog,
                )
                return False
            backlog = now_backlog
        return not self._cancel.is_set()

    async def _wait_played(self, limit_ms: float, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the backlog to reach ``limit_ms``, or for ``cancel``.

        Returns:
            Whether the transport's ``wait_played`` returned (rather than a timeout
            or ``cancel`` ending the wait).
        """
        played = asyncio.create_task(
            self._transport.wait_played(limit_ms), name="recap-wait-played"
        )
        cancelled = asyncio.create_task(self._cancel.wait(), name="recap-wait-cancel")
        try:
            await asyncio.wait(
                (played, cancelled),
                timeout=max(0.0, timeout_s),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            played.cancel()
            cancelled.cancel()
            await asyncio.gather(played, cancelled, return_exceptions=True)
        if not played.cancelled() and (error := played.exception()) is not None:
            raise error
        return played.done() and not played.cancelled()
