"""Batch caller audio into 50-1000 ms chunks, the only sizes the v3 API accepts.

Pure and allocation-light: a caller that already hands over chunks of the
target size gets them back unchanged, with no copy (docs/providers.md,
"Streaming: audio").
"""

from __future__ import annotations

__all__ = ["Chunker"]


class Chunker:
    """Cut a byte stream into chunks of ``chunk_bytes``, passing through ready-made ones.

    A chunk pushed while nothing is buffered and whose size is already between
    ``chunk_bytes`` and ``max_bytes`` (and a whole number of samples) is
    returned as is; anything else is buffered and cut into ``chunk_bytes``
    pieces. :meth:`flush` returns the tail padded with silence to
    ``min_bytes``, since a message under 50 ms may close the socket.

    Args:
        chunk_bytes: the size to cut to (e.g. 100 ms = 3,200 B at 16 kHz PCM16).
        min_bytes: the smallest chunk the server accepts (50 ms).
        max_bytes: the largest chunk the server accepts (1000 ms).
        sample_bytes: bytes per sample (2 for PCM16); chunks hold whole samples.
        silence: the byte value of silence (0 for PCM16, 0xFF for μ-law).
    """

    def __init__(
        self,
        *,
        chunk_bytes: int,
        min_bytes: int,
        max_bytes: int,
        sample_bytes: int = 2,
        silence: int = 0,
    ) -> None:
        if not 0 < min_bytes <= chunk_bytes <= max_bytes:
            raise ValueError("need 0 < min_bytes <= chunk_bytes <= max_bytes")
        if chunk_bytes % sample_bytes or min_bytes % sample_bytes:
            raise ValueError("chunk sizes must hold whole samples")
        self.chunk_bytes = chunk_bytes
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self._sample_bytes = sample_bytes
        self.silence = silence
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting for a full chunk."""
        return len(self._buf)

    def push(self, pcm: bytes) -> list[bytes]:
        """Add audio; return the complete chunks it made (often zero or one)."""
        n = len(pcm)
        if (
            not self._buf
            and self.chunk_bytes <= n <= self.max_bytes
            and n % self._sample_bytes == 0
        ):
            return [pcm]
        buf = self._buf
        buf += pcm
        size = self.chunk_bytes
        if len(buf) < size:
            return []
        count = len(buf) // size
        chunks = [bytes(buf[i * size : (i + 1) * size]) for i in range(count)]
        del buf[: count * size]
        return chunks

    def flush(self) -> bytes | None:
        """Return the buffered tail padded with silence to ``min_bytes``, or None if empty."""
        if not self._buf:
            return None
        tail = bytes(self._buf)
        self._buf.clear()
        # Round up to a whole sample, then to the minimum size (pad: never send < 50 ms).
        size = max(self.min_bytes, -(-len(tail) // self._sample_bytes) * self._sample_bytes)
        return tail + bytes([self.silence]) * (size - len(tail))
