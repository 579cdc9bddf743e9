"""Paced publishing of PCM16 16 kHz mono into an Agora connection (the spoken recap).

Spec §8.2-§8.3: the SDK takes any whole number of milliseconds per push and
buffers ~1000 s, so pushing a whole recap at once would leave seconds queued
inside the SDK that a barge-in could not take back. We push 10 ms frames as
``bytearray`` (``bytes`` raises ``TypeError`` in the SDK), at most
``lead_ms`` ahead of the wall clock, and ``interrupt_audio`` on a flush.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from recorder.audio import FRAME_MS, bytes_for_ms
from recorder.errors import TransportError

__all__ = ["DEFAULT_LEAD_MS", "PcmPublisher"]

log = logging.getLogger(__name__)

# Spec §8.3: keep ~100-200 ms ahead so a barge-in silences the bot within that.
DEFAULT_LEAD_MS = 150.0
_FRAME_BYTES = bytes_for_ms(FRAME_MS)
_SAMPLE_RATE_HZ = 16_000


class PcmPublisher:
    """Pushes 10 ms frames into a connection, paced to the wall clock.

    Args:
        lead_ms: most audio pushed ahead of the wall clock.
        clock: seconds, monotonic (tests may pass another).
    """

    def __init__(
        self, *, lead_ms: float = DEFAULT_LEAD_MS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if lead_ms < FRAME_MS:
            raise ValueError(f"lead_ms must be at least {FRAME_MS}")
        self.lead_s = lead_ms / 1000.0
        self._clock = clock
        self._lock = asyncio.Lock()
        self._generation = 0
        self._played_until = 0.0  # wall-clock time when the pushed audio has played out
        self.pushed_ms = 0.0
        self.flushes = 0
        self.push_errors = 0

    @property
    def queued_ms(self) -> float:
        """Audio pushed and not yet played, by the wall-clock estimate."""
        return max(0.0, self._played_until - self._clock()) * 1000.0

    async def publish(self, connection: Any, pcm: bytes | bytearray | memoryview) -> bool:
        """Push ``pcm`` in 10 ms frames; return False if a flush cut it short.

        Raises:
            TransportError: the SDK refused the audio (no PCM sender, bad size).
        """
        async with self._lock:
            generation = self._generation
            data = bytes(pcm)
            if len(data) % _FRAME_BYTES:  # pad to whole frames of silence
                data += bytes(_FRAME_BYTES - len(data) % _FRAME_BYTES)
            frame_s = FRAME_MS / 1000.0
            for offset in range(0, len(data), _FRAME_BYTES):
                now = self._clock()
                ahead = self._played_until - now
                if ahead > self.lead_s:
                    # Sleep until a few frames have played, then push those few at once.
                    await asyncio.sleep(ahead - self.lead_s + 4 * frame_s)
                    now = self._clock()
                if generation != self._generation:
                    return False
                frame = bytearray(data[offset : offset + _FRAME_BYTES])
                result = connection.push_audio_pcm_data(frame, _SAMPLE_RATE_HZ, 1)
                if result != 0:
                    self.push_errors += 1
                    raise TransportError(
                        f"the Agora SDK refused the bot's audio (push result {result}); "
                        "the connection was not created for publishing"
                        if result == -1001
                        else f"the Agora SDK refused the bot's audio (push result {result})"
                    )
                self._played_until = max(self._played_until, now) + frame_s
                self.pushed_ms += FRAME_MS
            return True

    def flush(self, connection: Any | None) -> None:
        """Drop what is queued, here and inside the SDK (barge-in)."""
        self._generation += 1
        self._played_until = 0.0
        self.flushes += 1
        if connection is not None:
            # Spec §8.3: interrupt_audio returns -1000 even when it worked.
            connection.interrupt_audio()
