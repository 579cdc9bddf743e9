"""Paced publishing of PCM16 16 kHz mono into an Agora connection (the spoken recap).

The SDK takes any whole number of milliseconds per push and buffers far more
than a recap, so pushing a whole recap at once would leave seconds queued
inside the SDK that a barge-in could not take back (docs/providers.md,
"Agora: audio frames"). We push 10 ms frames as ``bytearray`` (``bytes`` raises
``TypeError`` in the SDK) through a :class:`~recorder.transport.pacing.PublishPacer`
on the wall clock, and ``interrupt_audio`` on a flush.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from recorder.errors import TransportError
from recorder.transport.pacing import DEFAULT_LEAD_MS, PublishPacer

__all__ = ["DEFAULT_LEAD_MS", "PcmPublisher"]

_SAMPLE_RATE_HZ = 16_000
# push_audio_pcm_data's result when the connection was made without a PCM sender.
_NO_SENDER = -1001


class PcmPublisher:
    """Pushes 10 ms frames into a connection, paced to the wall clock.

    Args:
        lead_ms: most audio pushed ahead of the wall clock.
        clock: seconds, monotonic (tests may pass another).
    """

    def __init__(
        self, *, lead_ms: float = DEFAULT_LEAD_MS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._pacer = PublishPacer(clock_ms=lambda: clock() * 1000.0, lead_ms=lead_ms)
        self.push_errors = 0

    @property
    def queued_ms(self) -> float:
        """Audio pushed and not yet played, by the wall-clock estimate."""
        return self._pacer.backlog_ms

    @property
    def played_ms(self) -> float:
        """Audio pushed that has played, by the wall-clock estimate; a flush's never counts."""
        return self._pacer.played_ms

    async def publish(self, connection: Any, pcm: bytes | bytearray | memoryview) -> bool:
        """Push ``pcm`` in 10 ms frames; return False if a flush cut it short.

        Raises:
            TransportError: the SDK refused the audio (no PCM sender, bad size).
        """

        def push(frame: bytes) -> None:
            result = connection.push_audio_pcm_data(bytearray(frame), _SAMPLE_RATE_HZ, 1)
            if result != 0:
                self.push_errors += 1
                raise TransportError(
                    f"the Agora SDK refused the bot's audio (push result {result}); "
                    "the connection was not created for publishing"
                    if result == _NO_SENDER
                    else f"the Agora SDK refused the bot's audio (push result {result})"
                )

        return await self._pacer.publish(pcm, push)

    async def wait_played(self, backlog_ms: float = 0.0) -> None:
        """Sleep until at most ``backlog_ms`` is still to play; at once on a flush."""
        await self._pacer.wait_played(backlog_ms)

    def flush(self, connection: Any | None) -> None:
        """Drop what is queued, here and inside the SDK (barge-in)."""
        self._pacer.flush()
        if connection is not None:
            # interrupt_audio returns -1000 even when it worked (docs/providers.md,
            # "Agora: audio frames"): its result says nothing.
            connection.interrupt_audio()
