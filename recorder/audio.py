"""Pure PCM16 helpers: frame arithmetic, chunk assembly, energy, resampling.

Everything here is synchronous and free of asyncio and threads, so the
transports (which run it on native threads) and the tests can share it.
Audio is always PCM16 little-endian mono unless a name says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import soxr

__all__ = [
    "BYTES_PER_SAMPLE",
    "CHUNK_MS",
    "FRAME_MS",
    "SAMPLE_RATE_HZ",
    "SPEECH_DBFS",
    "Chunk",
    "ChunkAssembler",
    "StreamingResampler",
    "bytes_for_ms",
    "level_dbfs",
    "ms_for_bytes",
    "resample",
    "silence",
]

SAMPLE_RATE_HZ = 16_000
BYTES_PER_SAMPLE = 2
# Agora delivers 10 ms frames (docs/providers.md, "Agora: audio frames").
FRAME_MS = 10
# The v3 API takes 50-1000 ms per message (docs/providers.md, "Streaming: audio");
# 100 ms keeps latency low and costs at most one loop wake-up per chunk
# (docs/architecture.md, "Decisions and measurements").
CHUNK_MS = 100
# Energy above which a chunk counts as speech: speech sits around -30..-10 dBFS,
# a quiet room and the replay transport's comfort noise near -70 dBFS.
SPEECH_DBFS = -50.0
# A frame arriving this much later than the previous one ended starts a new
# run of audio on the meeting clock (a mute, an outage), instead of being
# glued onto the previous frame's end.
_GAP_TOLERANCE_MS = 200.0
_BYTES_PER_MS = SAMPLE_RATE_HZ * BYTES_PER_SAMPLE / 1000


def bytes_for_ms(duration_ms: float, sample_rate_hz: int = SAMPLE_RATE_HZ) -> int:
    """Number of PCM16 bytes holding ``duration_ms`` of mono audio (whole samples)."""
    return int(round(duration_ms * sample_rate_hz / 1000)) * BYTES_PER_SAMPLE


def ms_for_bytes(size: int, sample_rate_hz: int = SAMPLE_RATE_HZ) -> float:
    """Duration in milliseconds of ``size`` bytes of PCM16 mono audio."""
    return size / BYTES_PER_SAMPLE * 1000 / sample_rate_hz


def silence(duration_ms: float, sample_rate_hz: int = SAMPLE_RATE_HZ) -> bytes:
    """Digital silence of the given length."""
    return bytes(bytes_for_ms(duration_ms, sample_rate_hz))


def level_dbfs(pcm: bytes | bytearray | memoryview) -> float:
    """RMS level of PCM16 audio in dBFS (-inf for digital silence or no audio)."""
    samples = np.frombuffer(pcm, dtype="<i2")
    if samples.size == 0:
        return -math.inf
    # float32 keeps the sum of squares exact enough for a level and halves the work.
    floats = samples.astype(np.float32)
    power = float(np.dot(floats, floats)) / samples.size
    if power <= 0.0:
        return -math.inf
    return 10.0 * math.log10(power / (32768.0 * 32768.0))


@dataclass(frozen=True, slots=True)
class Chunk:
    """A run of contiguous audio of one participant.

    Attributes:
        pcm: PCM16 mono 16 kHz audio.
        start_ms: position of the first sample on the transport's clock
            (milliseconds since the transport started).
        is_speech: whether its level reached the speech threshold.
        duration_ms: length of the chunk in milliseconds (derived from ``pcm``).
        end_ms: position just after the last sample on the transport's clock.
    """

    pcm: bytes
    start_ms: float
    is_speech: bool
    # Derived once: the loop reads them several times per chunk, for every speaker.
    duration_ms: float = field(init=False, repr=False, compare=False)
    end_ms: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        duration_ms = len(self.pcm) / _BYTES_PER_MS
        object.__setattr__(self, "duration_ms", duration_ms)
        object.__setattr__(self, "end_ms", self.start_ms + duration_ms)


class ChunkAssembler:
    """Gathers one participant's 10 ms frames into ~100 ms chunks.

    Runs on the transport's native thread: :meth:`append` copies the frame
    (native buffers are reused) and returns a :class:`Chunk` only when a whole
    chunk has gathered, so the caller wakes the event loop once per chunk,
    never once per frame (docs/architecture.md, "One audio frame, end to end").
    Timestamps follow the sample count
    while frames arrive back to back, and re-anchor on the arrival time after
    a gap, so a mute or an outage shows up on the meeting timeline.

    Args:
        chunk_ms: target chunk length.
        first_chunk_ms: length of the first chunk; giving participants
            different values staggers their chunk boundaries so their sends
            do not all leave on the same tick (docs/architecture.md, "Decisions and
            measurements").
        speech_dbfs: level at which a chunk counts as speech.
    """

    __slots__ = ("_buffer", "_chunk_bytes", "_next_bytes", "_speech_dbfs", "_start_ms")

    def __init__(
        self,
        *,
        chunk_ms: int = CHUNK_MS,
        first_chunk_ms: int | None = None,
        speech_dbfs: float = SPEECH_DBFS,
    ) -> None:
        if not 50 <= chunk_ms <= 1000:
            raise ValueError(f"chunk_ms must be within 50-1000 ms, got {chunk_ms}")
        self._chunk_bytes = bytes_for_ms(chunk_ms)
        self._next_bytes = bytes_for_ms(first_chunk_ms if first_chunk_ms else chunk_ms)
        self._speech_dbfs = speech_dbfs
        self._buffer = bytearray()
        self._start_ms: float | None = None

    @property
    def buffered_ms(self) -> float:
        """Audio gathered towards the next chunk."""
        return ms_for_bytes(len(self._buffer))

    def append(self, frame: bytes | bytearray | memoryview, arrival_ms: float) -> Chunk | None:
        """Add one frame that arrived at ``arrival_ms``; return a chunk when one is whole.

        This runs once per 10 ms frame per participant, so it does only
        arithmetic and one copy; the chunk's level is measured once per chunk.

        Args:
            frame: PCM16 mono 16 kHz audio (copied).
            arrival_ms: when the frame arrived on the transport's clock.

        Returns:
            A whole chunk, or None while one is still gathering. After a gap the
            audio gathered so far is returned early (it is at least one frame),
            so a chunk never spans a gap.
        """
        buffer = self._buffer
        start = arrival_ms - len(frame) / _BYTES_PER_MS
        early: Chunk | None = None
        if self._start_ms is None:
            self._start_ms = start
        elif abs(start - self._start_ms - len(buffer) / _BYTES_PER_MS) > _GAP_TOLERANCE_MS:
            early = self._take()
            self._start_ms = start
        buffer += frame
        if len(buffer) >= self._next_bytes:
            self._next_bytes = self._chunk_bytes
            whole = self._take()
            return whole if early is None else early  # pragma: no branch - one frame < a chunk
        return early

    def flush(self) -> Chunk | None:
        """Return whatever audio is gathered, and end the run.

        Called when the participant's audio stops (mute, leave, an outage): the
        next frame starts a new run anchored on its own arrival, however short
        the gap, instead of being glued onto this one.
        """
        chunk = self._take()
        self._start_ms = None
        return chunk

    def _take(self) -> Chunk | None:
        if not self._buffer or self._start_ms is None:
            return None
        pcm = bytes(self._buffer)
        chunk = Chunk(pcm, self._start_ms, level_dbfs(pcm) >= self._speech_dbfs)
        self._start_ms += ms_for_bytes(len(pcm))
        self._buffer.clear()
        return chunk


def resample(pcm: bytes, from_hz: int, to_hz: int) -> bytes:
    """Resample a whole PCM16 mono signal (for files; use StreamingResampler for streams)."""
    if from_hz == to_hz:
        return bytes(pcm)
    samples = np.frombuffer(pcm, dtype="<i2")
    out = soxr.resample(samples, from_hz, to_hz, quality="HQ")
    return np.asarray(out, dtype="<i2").tobytes()


class StreamingResampler:
    """Resamples a PCM16 mono stream chunk by chunk, keeping filter state across chunks.

    Chunk edges add no clicks: the output of many small chunks equals the
    output of one big call, up to the filter's latency (soxr ``ResampleStream``).
    """

    def __init__(self, from_hz: int, to_hz: int) -> None:
        self.from_hz = from_hz
        self.to_hz = to_hz
        self._stream = soxr.ResampleStream(from_hz, to_hz, 1, dtype="int16", quality="HQ")

    def process(self, pcm: bytes, *, last: bool = False) -> bytes:
        """Feed audio; returns what the resampler can emit so far.

        Args:
            pcm: PCM16 mono at ``from_hz`` (any length, whole samples).
            last: True on the final call, to drain the filter.
        """
        samples = np.frombuffer(pcm, dtype="<i2")
        out = self._stream.resample_chunk(samples, last=last)
        return np.asarray(out, dtype="<i2").tobytes()
