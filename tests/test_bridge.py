"""AudioBridge: one ordered crossing from native threads to the loop, bounded in seconds of audio.

The producer is a real thread, as Agora's native one is. The loop is a fresh,
not-running event loop: nothing drains the queue until the test runs it, which
is exactly a loop stalled for as long as the producer takes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable, Iterator

import pytest

from recorder.audio import Chunk, silence
from recorder.transport.base import (
    ConnectionState,
    ConnectionStateChanged,
    LoopFellBehind,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    TransportEvent,
    TransportSink,
)
from recorder.transport.bridge import AudioBridge

FRAME = silence(10)


class Record(TransportSink):
    """Everything the loop was handed, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[int, Chunk] | TransportEvent] = []

    def on_event(self, event: TransportEvent) -> None:
        self.items.append(event)

    def on_audio(self, uid: int, chunk: Chunk) -> None:
        self.items.append((uid, chunk))

    def chunks(self, uid: int) -> list[Chunk]:
        return [item[1] for item in self.items if isinstance(item, tuple) and item[0] == uid]

    def events(self) -> list[TransportEvent]:
        return [item for item in self.items if not isinstance(item, tuple)]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def on_native_thread(work: Callable[[], None]) -> None:
    thread = threading.Thread(target=work, name="native")
    thread.start()
    thread.join()


def drain(loop: asyncio.AbstractEventLoop) -> None:
    """Let the loop run what the native thread scheduled (the stall is over)."""
    loop.run_until_complete(asyncio.sleep(0))


def talk(bridge: AudioBridge, uid: int, start_ms: float, seconds: float) -> float:
    """Push ``seconds`` of ``uid``'s frames back to back; returns the end time."""
    at = start_ms
    for _ in range(int(seconds * 100)):
        at += 10
        bridge.push_frame(uid, FRAME, at)
    return at


def holes(chunks: list[Chunk]) -> list[tuple[float, float]]:
    """Where a participant's chunks do not follow one another."""
    return [(a.end_ms, b.start_ms) for a, b in itertools.pairwise(chunks) if b.start_ms > a.end_ms]


def test_a_stalled_loop_drops_audio_beyond_the_bound_keeps_events_and_order(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Record()
    bridge = AudioBridge(loop, sink, clock_ms=lambda: 0.0, max_queued_s=1.0)
    events: list[TransportEvent] = [
        ConnectionStateChanged(ConnectionState.CONNECTED, 0.0),
        ParticipantJoined(1, 0.0),
        ParticipantJoined(2, 0.0),
        ParticipantMuted(1, 3000.0, is_muted=True),
        ParticipantLeft(2, 3000.0),
        ParticipantJoined(3, 3000.0),
    ]

    def native() -> None:
        bridge.push_event(events[0])
        bridge.push_event(events[1])
        bridge.push_event(events[2])
        for second in range(3):  # both talk for 3 s, interleaved every second
            talk(bridge, 1, second * 1000.0, 1.0)
            talk(bridge, 2, second * 1000.0, 1.0)
        bridge.push_event(events[3])  # flushes uid 1's partial chunk: dropped, full
        bridge.push_event(events[4])
        bridge.push_event(events[5])

    on_native_thread(native)
    assert sink.items == []  # the loop has not run: everything waits in the queue
    with caplog.at_level(logging.WARNING, logger="recorder.transport.bridge"):
        drain(loop)

    # Every event arrived, in order, none lost to the full queue; then what was dropped.
    dropped = [e for e in sink.events() if isinstance(e, LoopFellBehind)]
    assert [e for e in sink.events() if not isinstance(e, LoopFellBehind)] == events
    assert sink.items[-len(dropped) :] == dropped
    for uid in (1, 2):
        chunks = sink.chunks(uid)
        kept_ms = sum(chunk.duration_ms for chunk in chunks)
        # The first second of each, no more: the queue held 1 s per participant.
        assert 900 <= kept_ms <= 1000
        assert chunks[0].start_ms == 0.0
        for before, after in zip(chunks, chunks[1:], strict=False):
            assert after.start_ms >= before.end_ms - 0.001  # in order; a hole where dropped
        assert bridge.dropped_ms[uid] == pytest.approx(3000 - kept_ms)
        # The hole is said, once, exactly.
        [stretch] = [e for e in dropped if e.uid == uid]
        assert [(stretch.at_ms, stretch.to_ms)] == holes(chunks)
    assert bridge.dropped_chunks >= 2 * 19
    assert bridge.dropped_ms_total == pytest.approx(sum(bridge.dropped_ms.values()))
    # Each participant's audio sits between their join and their mute / leave.
    position = {id(item): index for index, item in enumerate(sink.items)}
    for uid, joined, ended in ((1, events[1], events[3]), (2, events[2], events[4])):
        audio = [
            i for i, item in enumerate(sink.items) if isinstance(item, tuple) and item[0] == uid
        ]
        assert position[id(joined)] < min(audio) and max(audio) < position[id(ended)]
    # Said once, with the totals, on the loop.
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{bridge.dropped_chunks} chunks" in warning and "uid" in warning


def test_room_comes_back_once_the_loop_drains(loop: asyncio.AbstractEventLoop) -> None:
    sink = Record()
    bridge = AudioBridge(loop, sink, clock_ms=lambda: 0.0, max_queued_s=0.5)

    def two_seconds() -> None:
        talk(bridge, 7, 0.0, 2.0)
        bridge.end_audio(7)

    on_native_thread(two_seconds)
    drain(loop)
    first = sum(chunk.duration_ms for chunk in sink.chunks(7))
    dropped = bridge.dropped_ms[7]
    assert 400 <= first <= 500 and first + dropped == pytest.approx(2000)
    # Drained: the next 0.4 s all fits.
    on_native_thread(lambda: talk(bridge, 7, 3000.0, 0.4))
    drain(loop)
    assert bridge.dropped_ms[7] == dropped
    # Said once (not again when nothing more is dropped), exactly where the hole is.
    [stretch] = [e for e in sink.events() if isinstance(e, LoopFellBehind)]
    assert [(stretch.at_ms, stretch.to_ms)] == holes(sink.chunks(7))[:1]
    later = [chunk for chunk in sink.chunks(7) if chunk.start_ms >= 3000]
    assert sum(chunk.duration_ms for chunk in later) == pytest.approx(400)


def test_a_drained_loop_loses_nothing(loop: asyncio.AbstractEventLoop) -> None:
    sink = Record()
    bridge = AudioBridge(loop, sink, clock_ms=lambda: 0.0, max_queued_s=0.5)

    def native() -> None:
        bridge.push_event(ParticipantJoined(4, 0.0))
        talk(bridge, 4, 0.0, 0.4)
        bridge.push_event(ParticipantLeft(4, 400.0))

    on_native_thread(native)
    drain(loop)
    assert bridge.dropped_chunks == 0 and bridge.dropped_ms == {}
    assert sum(chunk.duration_ms for chunk in sink.chunks(4)) == pytest.approx(400)


def test_a_closed_loop_is_counted_never_raised() -> None:
    loop = asyncio.new_event_loop()
    bridge = AudioBridge(loop, Record(), clock_ms=lambda: 0.0)
    loop.close()
    on_native_thread(lambda: bridge.push_event(ParticipantJoined(1, 0.0)))
    assert bridge.lost_after_close == 1 and bridge.callback_errors == 0


def test_the_bound_must_be_positive(loop: asyncio.AbstractEventLoop) -> None:
    with pytest.raises(ValueError, match="max_queued_s"):
        AudioBridge(loop, Record(), max_queued_s=0)


# --- gaps in frames are silence (Agora may send nothing while someone is silent) ---------


class Clock:
    def __init__(self) -> None:
        self.ms = 0.0

    def __call__(self) -> float:
        return self.ms


def filling(loop: asyncio.AbstractEventLoop) -> tuple[AudioBridge, Record, Clock]:
    sink, clock = Record(), Clock()
    bridge = AudioBridge(loop, sink, clock_ms=clock, fill_gaps_after_ms=300.0)
    return bridge, sink, clock


def silent_ms(chunks: list[Chunk]) -> float:
    return sum(c.duration_ms for c in chunks if not any(c.pcm))


def test_missing_frames_become_silence_by_the_clock(loop: asyncio.AbstractEventLoop) -> None:
    bridge, sink, clock = filling(loop)
    speech = (1000).to_bytes(2, "little", signed=True) * 160

    def native() -> None:
        bridge.push_event(ConnectionStateChanged(ConnectionState.CONNECTED, 0.0))
        bridge.push_event(ParticipantJoined(1, 0.0))
        for at in range(10, 510, 10):
            bridge.push_frame(1, speech, float(at))

    on_native_thread(native)
    drain(loop)
    clock.ms = 700.0  # 200 ms without frames: could be jitter, nothing yet
    bridge.fill_gaps()
    assert silent_ms(sink.chunks(1)) == 0
    clock.ms = 1000.0  # 500 ms without frames: silence, from where the audio stopped
    bridge.fill_gaps()
    chunks = sink.chunks(1)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start_ms == pytest.approx(before.end_ms)  # one contiguous timeline
    assert chunks[0].start_ms == 0.0 and chunks[-1].end_ms == pytest.approx(990.0)
    assert silent_ms(chunks) == pytest.approx(490.0) == bridge.filled_ms
    assert all(c.duration_ms <= 100 for c in chunks)
    clock.ms = 1100.0  # still nothing: the next 100 ms
    bridge.fill_gaps()
    assert sink.chunks(1)[-1].end_ms == pytest.approx(1090.0)
    # Frames again: they follow the silence on the timeline, no overlap.
    on_native_thread(
        lambda: [bridge.push_frame(1, speech, float(at)) for at in range(1110, 1310, 10)]
    )
    drain(loop)
    later = [c for c in sink.chunks(1) if c.start_ms >= 1090.0 and any(c.pcm)]
    assert later and later[0].start_ms == pytest.approx(1100.0)


def test_no_silence_while_frames_flow_muted_left_or_in_an_outage(
    loop: asyncio.AbstractEventLoop,
) -> None:
    bridge, sink, clock = filling(loop)

    def native() -> None:
        bridge.push_event(ConnectionStateChanged(ConnectionState.CONNECTED, 0.0))
        for uid in (1, 2, 3):
            bridge.push_event(ParticipantJoined(uid, 0.0))
        talk(bridge, 1, 0.0, 2.0)  # 1 keeps sending frames (silent ones) all along
        bridge.push_event(ParticipantMuted(2, 0.0, is_muted=True))
        bridge.push_event(ParticipantLeft(3, 0.0))

    on_native_thread(native)
    drain(loop)
    clock.ms = 2000.0
    bridge.fill_gaps()
    assert bridge.filled_ms == 0 and sink.chunks(2) == [] and sink.chunks(3) == []
    # An outage is a gap, not silence; silence resumes from the reconnection only.
    on_native_thread(
        lambda: bridge.push_event(ConnectionStateChanged(ConnectionState.RECONNECTING, 2000.0))
    )
    drain(loop)
    clock.ms = 5000.0
    bridge.fill_gaps()
    assert bridge.filled_ms == 0
    on_native_thread(
        lambda: bridge.push_event(ConnectionStateChanged(ConnectionState.CONNECTED, 5000.0))
    )
    drain(loop)
    clock.ms = 5500.0
    bridge.fill_gaps()
    filled = [c for c in sink.chunks(1) if c.start_ms >= 2000.0]
    assert filled[0].start_ms == pytest.approx(5000.0)
    assert bridge.filled_ms == pytest.approx(490.0)


def test_filling_is_off_unless_asked(loop: asyncio.AbstractEventLoop) -> None:
    sink = Record()
    bridge = AudioBridge(loop, sink, clock_ms=lambda: 0.0)
    on_native_thread(lambda: bridge.push_event(ParticipantJoined(1, 0.0)))
    drain(loop)
    assert bridge._fill_timer is None
    with pytest.raises(ValueError, match="fill_gaps_after_ms"):
        AudioBridge(loop, sink, fill_gaps_after_ms=50.0)


def test_stretches_dropped_apart_are_said_apart(loop: asyncio.AbstractEventLoop) -> None:
    # While the loop drains, the native side goes on: room frees, a chunk is admitted,
    # then the queue fills again. The two stretches dropped around it stay two.
    class Refill(Record):
        def on_audio(self, uid: int, chunk: Chunk) -> None:
            super().on_audio(uid, chunk)
            if len(self.items) == 1:  # as the first chunk is taken: 0.6 s more arrives
                talk(bridge, 7, 600.0, 0.6)

    sink = Refill()
    bridge = AudioBridge(loop, sink, clock_ms=lambda: 0.0, max_queued_s=0.3)
    on_native_thread(lambda: talk(bridge, 7, 0.0, 0.6))
    drain(loop)
    chunks = sink.chunks(7)
    stretches = [(e.at_ms, e.to_ms) for e in sink.events() if isinstance(e, LoopFellBehind)]
    assert len(stretches) == 2
    # The hole between the chunks, then from the last chunk on (the rest is still gathering).
    assert [stretches[0]] == holes(chunks) and stretches[1][0] == chunks[-1].end_ms
    assert sum(b - a for a, b in stretches) == pytest.approx(bridge.dropped_ms[7])
