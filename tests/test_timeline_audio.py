from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.audio import (
    ChunkAssembler,
    StreamingResampler,
    bytes_for_ms,
    level_dbfs,
    ms_for_bytes,
    resample,
    silence,
)
from recorder.timeline import Timeline

FRAME = bytes_for_ms(10)


def tone(ms: float, hz: float = 440.0, dbfs: float = -20.0, rate: int = 16000) -> bytes:
    t = np.arange(int(rate * ms / 1000)) / rate
    amp = 32767 * 10 ** (dbfs / 20) * math.sqrt(2)
    return (amp * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def test_timeline_contiguous_and_gaps() -> None:
    timeline = Timeline()
    assert timeline.add(1000, 100) == 0
    assert timeline.add(1100, 100) == 100  # contiguous: same run
    assert timeline.add(5000, 100) == 200  # a mute of 3.8 s
    assert timeline.to_meeting_ms(50) == 1050
    assert timeline.to_meeting_ms(199) == 1199
    assert timeline.to_meeting_ms(200) == 5000
    assert timeline.to_meeting_ms(200, is_end=True) == 1200
    assert timeline.to_meeting_ms(250) == 5050
    assert timeline.to_meeting_ms(10_000) == 5100  # clamped to what was sent


@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 30)), min_size=1, max_size=40))
@settings(max_examples=100, deadline=None)
def test_timeline_is_monotonic(runs: list[tuple[int, int]]) -> None:
    timeline = Timeline()
    meeting = 0.0
    truth = []
    for gap, chunks in runs:
        meeting += gap
        for _ in range(chunks):
            position = timeline.add(meeting, 100)
            truth.append((position, meeting))
            meeting += 100
    for position, meeting_ms in truth:
        assert timeline.to_meeting_ms(position + 37) == pytest.approx(meeting_ms + 37)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=200))
@settings(max_examples=100, deadline=None)
def test_assembler_preserves_every_byte(frame_counts: list[int]) -> None:
    assembler = ChunkAssembler(first_chunk_ms=70)
    data = bytearray()
    out = bytearray()
    now = 0.0
    for count in frame_counts:
        for _ in range(count):
            frame = (
                np.random.default_rng(len(data)).integers(-3000, 3000, 160).astype("<i2").tobytes()
            )
            data += frame
            now += 10
            chunk = assembler.append(frame, now)
            if chunk is not None:
                out += chunk.pcm
                assert 50 <= chunk.duration_ms <= 1000 or chunk is None
    last = assembler.flush()
    if last is not None:
        out += last.pcm
    assert bytes(out) == bytes(data)


def test_assembler_chunk_sizes_times_and_gaps() -> None:
    assembler = ChunkAssembler(first_chunk_ms=60)
    chunks = []
    for i in range(1, 31):  # 300 ms back to back
        chunk = assembler.append(tone(10), i * 10.0)
        if chunk:
            chunks.append(chunk)
    assert [c.duration_ms for c in chunks] == [60, 100, 100]
    assert [c.start_ms for c in chunks] == [0, 60, 160]
    assert all(c.is_speech for c in chunks)
    # A 2 s outage: the 40 ms gathered come out early, then a new run starts.
    early = assembler.append(silence(10), 2310.0)
    assert early is not None and early.start_ms == 260 and early.duration_ms == 40
    rest = [assembler.append(silence(10), 2310.0 + i * 10) for i in range(1, 10)]
    whole = [c for c in rest if c]
    assert whole[0].start_ms == 2300 and not whole[0].is_speech


def test_assembler_rejects_bad_chunk_size() -> None:
    with pytest.raises(ValueError):
        ChunkAssembler(chunk_ms=10)


def test_levels() -> None:
    assert level_dbfs(b"") == -math.inf
    assert level_dbfs(silence(10)) == -math.inf
    assert level_dbfs(tone(100, dbfs=-20)) == pytest.approx(-20, abs=0.2)
    assert ms_for_bytes(bytes_for_ms(123)) == 123


def test_streaming_resampler_matches_whole_signal() -> None:
    signal = tone(2000, hz=1000, dbfs=-6, rate=24000)
    whole = np.frombuffer(resample(signal, 24000, 16000), "<i2").astype(float)
    stream = StreamingResampler(24000, 16000)
    rng = np.random.default_rng(7)
    out = bytearray()
    position = 0
    while position < len(signal):
        size = int(rng.integers(1, 2000)) * 2
        piece = signal[position : position + size]
        position += size
        out += stream.process(piece, last=position >= len(signal))
    chunked = np.frombuffer(bytes(out), "<i2").astype(float)
    n = min(len(whole), len(chunked))
    assert abs(len(whole) - len(chunked)) <= 2
    # Compare away from the edges, where a one-shot and a stream differ by design.
    a, b = whole[200 : n - 200], chunked[200 : n - 200]
    snr = 10 * math.log10(np.sum(a * a) / max(np.sum((a - b) ** 2), 1e-9))
    assert snr > 60


def test_flush_ends_the_run_so_a_short_gap_is_not_glued() -> None:
    assembler = ChunkAssembler(first_chunk_ms=100)
    for i in range(1, 6):
        assembler.append(tone(10), i * 10.0)  # 0-50 ms
    last = assembler.flush()  # the connection dropped at 50 ms
    assert last is not None and last.start_ms == 0 and last.end_ms == 50
    # Audio resumes 80 ms later (under the 200 ms gap tolerance): it starts at 130, not 50.
    chunks = [assembler.append(tone(10), 130.0 + i * 10) for i in range(1, 11)]
    (chunk,) = [c for c in chunks if c]
    assert chunk.start_ms == 130
