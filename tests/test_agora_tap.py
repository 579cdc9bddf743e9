"""The native audio tap: same chunks and order as the Python bridge, bounded, woken once per batch.

The C side is driven here through ``push_frame`` (what its frame callback does)
and through the SDK's real wrapper on the native stand-in, where no Python
runs per frame.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import random
import select
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from agora_standin.control import NativeControl
from agora_standin.plugin import require_wrapper

from recorder.audio import Chunk
from recorder.transport.agora.tap import TAP_ENV, LinearClock, NativeAudioBridge, load_tap
from recorder.transport.base import (
    LoopFellBehind,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
)
from recorder.transport.bridge import AudioBridge
from tests.support.timing import TIMEOUT
from tests.test_agora_transport import Sink, joined, tone


@pytest.fixture
def tap_module() -> Any:
    module = load_tap()
    if module is None:
        require_wrapper("the native audio tap is not built (python hatch_build.py builds it)")
    return module


def frame(uid: int, n: int, loud: bool) -> bytes:
    level = 8000 if loud else 3
    return struct.pack("<160h", *(((uid * 7 + n + i) % 17 - 8) * level // 8 for i in range(160)))


def script(seed: int) -> list[tuple[str, int, float, bool]]:
    """Frames of three speakers with jitter, gaps, mutes and a leave: (what, uid, at_ms, loud)."""
    rng = random.Random(seed)
    steps: list[tuple[str, int, float, bool]] = []
    at = {uid: 20.0 + uid % 7 for uid in (11, 22, 4_000_000_000)}
    for _ in range(900):
        uid = rng.choice(list(at))
        roll = rng.random()
        if roll < 0.01:
            steps.append(("mute", uid, at[uid], False))
            at[uid] += rng.choice([50.0, 400.0])
            steps.append(("unmute", uid, at[uid], False))
        elif roll < 0.02:
            at[uid] += rng.uniform(150, 900)  # frames stop a while: a gap
        elif roll < 0.025:
            steps.append(("end", uid, at[uid], False))
        at[uid] += 10.0 + rng.uniform(-1.5, 1.5)
        steps.append(("frame", uid, at[uid], int(at[uid] // 700) % 2 == 0))  # talk, pause
    steps.append(("leave", 22, at[22] + 1, False))
    return steps


def play(bridge: AudioBridge, steps: list[tuple[str, int, float, bool]]) -> None:
    counts: dict[int, int] = {}
    for what, uid, at_ms, loud in steps:
        if what == "frame":
            counts[uid] = counts.get(uid, 0) + 1
            bridge.push_frame(uid, frame(uid, counts[uid], loud), at_ms)
        elif what == "end":
            bridge.end_audio(uid)
        elif what == "leave":
            bridge.push_event(ParticipantLeft(uid, at_ms, "quit"))
        else:
            bridge.push_event(ParticipantMuted(uid, at_ms, what == "mute"))


class Ordered(Sink):
    """Also keeps everything in the order it arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[Any] = []

    def on_event(self, event: Any) -> None:
        self.log.append(event)
        super().on_event(event)

    def on_audio(self, uid: int, chunk: Chunk) -> None:
        self.log.append((uid, chunk.pcm, round(chunk.start_ms, 6), chunk.is_speech))
        super().on_audio(uid, chunk)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_chunks_events_and_order_match_the_python_bridge(tap_module: Any, seed: int) -> None:
    loop = asyncio.get_running_loop()
    steps = script(seed)
    python_sink, native_sink = Ordered(), Ordered()
    python = AudioBridge(loop, python_sink, clock_ms=LinearClock())
    native = NativeAudioBridge(loop, native_sink, tap_module=tap_module, clock=LinearClock())
    play(python, steps)
    play(native, steps)
    await asyncio.sleep(0)
    native.close()
    assert len(python_sink.log) > 90
    assert {item[3] for item in python_sink.log if isinstance(item, tuple)} == {True, False}
    assert native_sink.log == python_sink.log  # same chunks, same times, same interleaving
    assert native.frames == python.frames == 900
    assert len(native_sink.chunks[22]) > 10 and native_sink.of(ParticipantLeft)


async def test_a_mute_flushes_the_partial_chunk_before_the_event(tap_module: Any) -> None:
    loop = asyncio.get_running_loop()
    sink = Ordered()
    bridge = NativeAudioBridge(loop, sink, tap_module=tap_module, clock=LinearClock())
    bridge.push_event(ParticipantJoined(5, 0.0))
    for n in range(3):
        bridge.push_frame(5, frame(5, n, True), 10.0 * (n + 1))
    bridge.push_event(ParticipantMuted(5, 31.0, True))
    bridge.close()
    joined_, (uid, pcm, start, _), muted = sink.log
    assert (joined_, muted) == (ParticipantJoined(5, 0.0), ParticipantMuted(5, 31.0, True))
    assert (uid, len(pcm), start) == (5, 960, 0.0)


async def test_one_wake_up_per_batch_and_one_collect(tap_module: Any) -> None:
    loop = asyncio.get_running_loop()
    sink = Sink()
    bridge = NativeAudioBridge(loop, sink, tap_module=tap_module, clock=LinearClock())
    fd = bridge.tap.fileno()
    assert select.select([fd], [], [], 0)[0] == []
    for n in range(10):  # 100 ms of 50 speakers: every one's first chunk is ready
        for uid in range(50):
            bridge.push_frame(uid, frame(uid, n, True), 10.0 * (n + 1))
    assert select.select([fd], [], [], 0)[0] == [fd]
    assert bridge.wakeups == 1  # the first ready chunk woke the loop; the rest waited for it
    await sink.wait(lambda: len(sink.chunks) == 50)
    assert bridge.stats["collects"] == 1
    assert select.select([fd], [], [], 0)[0] == []
    bridge.close()


async def test_a_full_queue_drops_counts_and_reports(
    tap_module: Any, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    sink = Sink()
    bridge = NativeAudioBridge(
        loop, sink, tap_module=tap_module, clock=LinearClock(), max_queued_s=0.3
    )
    for n in range(100):  # 1 s while the loop is busy: at most 0.3 s may wait
        bridge.push_frame(7, frame(7, n, True), 10.0 * (n + 1))
    dropped = bridge.dropped_ms[7]
    assert 600 <= dropped <= 750 and bridge.dropped_chunks >= 6
    await sink.wait(lambda: bool(sink.chunks))
    got = sum(c.duration_ms for c in sink.chunks[7])
    assert math.isclose(got + dropped, 1000.0 - (1000.0 - got - dropped) % 100, abs_tol=100)
    assert "fell more than 0.3 s behind" in caplog.text
    # The stretch dropped reaches the sink once, where the kept audio stops.
    [stretch] = sink.of(LoopFellBehind)
    assert stretch.uid == 7 and stretch.at_ms == pytest.approx(sink.chunks[7][-1].end_ms)
    assert stretch.to_ms - stretch.at_ms == pytest.approx(dropped)
    assert bridge.tap.drop_runs() == []
    bridge.close()


async def test_stretches_dropped_apart_are_said_apart(tap_module: Any) -> None:
    # As in the Python bridge: a chunk admitted while the loop drains splits what is
    # dropped around it into two stretches, each said once, exactly.
    loop = asyncio.get_running_loop()
    sent = [0]

    def talk(start_ms: float, frames: int) -> None:
        for n in range(frames):
            sent[0] += 1
            bridge.push_frame(7, frame(7, sent[0], True), start_ms + 10.0 * (n + 1))

    class Refill(Sink):
        def on_audio(self, uid: int, chunk: Chunk) -> None:
            super().on_audio(uid, chunk)
            if sum(len(c) for c in self.chunks.values()) == 1:
                talk(600.0, 60)  # as the first chunk is taken: 0.6 s more arrives

    sink = Refill()
    bridge = NativeAudioBridge(
        loop, sink, tap_module=tap_module, clock=LinearClock(), max_queued_s=0.3
    )
    talk(0.0, 60)
    await sink.wait(lambda: len(sink.of(LoopFellBehind)) >= 2)
    bridge.close()
    chunks = sink.chunks[7]
    stretches = [(e.at_ms, e.to_ms) for e in sink.of(LoopFellBehind)]
    holes = [(a.end_ms, b.start_ms) for a, b in itertools.pairwise(chunks) if b.start_ms > a.end_ms]
    assert len(stretches) == 2
    assert [stretches[0]] == holes and stretches[1][0] == chunks[-1].end_ms
    assert sum(b - a for a, b in stretches) == pytest.approx(bridge.dropped_ms[7])


def test_detach_waits_for_a_callback_in_flight(tap_module: Any) -> None:
    tap = tap_module.Tap(Chunk, time.monotonic())
    tap.attach(12345)
    holding = threading.Thread(target=tap._hold, args=(0.3,))
    holding.start()
    time.sleep(0.05)  # the holder is inside (a sleep is the point: a callback that takes time)
    started = time.monotonic()
    tap.detach()
    waited = time.monotonic() - started
    holding.join()
    assert waited >= 0.2 and not tap.attached


async def test_frames_reach_the_sink_with_no_python_per_frame(
    native_world: NativeControl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if load_tap() is None:
        require_wrapper("the native audio tap is not built")
    import agora.rtc.local_user  # noqa: F401  (the real wrapper; binds in its own order)
    from agora.rtc._ctypes_handle import _audio_frame_observer as inner

    decoded = []
    original = inner.AudioFrameInner.get
    monkeypatch.setattr(
        inner.AudioFrameInner, "get", lambda self: decoded.append(1) or original(self)
    )
    transport, sink = await joined(tmp_path)
    assert isinstance(transport.bridge, NativeAudioBridge)
    channel = native_world.channel("standup")
    for uid in (101, 202):
        channel.add_user(uid)
        channel.speak(uid, tone(1000, uid))
    assert await asyncio.to_thread(native_world.wait_idle, TIMEOUT)
    await sink.wait(lambda: all(len(sink.pcm(uid)) == len(tone(1000)) for uid in (101, 202)))
    await transport.stop()
    assert sink.pcm(101) == tone(1000, 101) and sink.pcm(202) == tone(1000, 202)
    assert decoded == []  # the wrapper never decoded a frame: no Python ran per frame
    stats = transport.bridge.stats
    assert stats["frames"] == 200 and stats["bad_frames"] == 0 and stats["unmatched_frames"] == 0
    assert not transport.bridge.tap.attached


async def held_while_speaking(native_world: NativeControl, tmp_path: Path) -> dict[str, int]:
    """The tap held for 0.3 s, as a preempted loop thread would hold it, while frames come.

    Returns the tap's stats once the speech has arrived whole and in order.
    """
    if load_tap() is None:
        require_wrapper("the native audio tap is not built")
    transport, sink = await joined(tmp_path)
    assert isinstance(transport.bridge, NativeAudioBridge)
    channel = native_world.channel("standup")
    channel.add_user(101)
    channel.speak(101, tone(2000, 101))
    await sink.wait(lambda: len(sink.pcm(101)) > 0)  # the native thread delivers frames
    # More than a second of speech is still to come.
    await asyncio.to_thread(transport.bridge.tap._hold, 0.3)
    assert await asyncio.to_thread(native_world.wait_idle, TIMEOUT)
    await sink.wait(lambda: len(sink.pcm(101)) == len(tone(2000)))
    await transport.stop()
    assert sink.pcm(101) == tone(2000, 101)  # whole, and in order
    stats: dict[str, int] = transport.bridge.stats
    return stats


async def test_agoras_audio_thread_never_waits_for_a_held_tap(
    native_world: NativeControl, tmp_path: Path
) -> None:
    # A loop thread preempted while it holds the tap's lock would stall Agora's audio
    # thread (every participant's audio): the callback defers its frame instead.
    stats = await held_while_speaking(native_world, tmp_path)
    assert stats["most_lock_wait_ns"] == 0
    assert stats["deferred_frames"] >= 20  # 0.3 s of 10 ms frames, less the first in flight
    assert stats["bad_frames"] == 0 and stats["dropped_chunks"] == 0


async def test_past_its_deferred_limit_the_audio_thread_waits_and_it_is_counted(
    native_world: NativeControl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_tap()
    if module is None:
        require_wrapper("the native audio tap is not built")
    monkeypatch.setattr(module, "Tap", functools.partial(module.Tap, max_deferred_ms=0))
    stats = await held_while_speaking(native_world, tmp_path)
    assert stats["most_lock_wait_ns"] >= 200_000_000
    assert stats["deferred_frames"] == 0


async def test_the_fallback_is_the_wrapper_observer(
    native_world: NativeControl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TAP_ENV, "python")
    transport, sink = await joined(tmp_path)
    assert type(transport.bridge) is AudioBridge
    channel = native_world.channel("standup")
    channel.add_user(101)
    channel.speak(101, tone(500))
    await sink.wait(lambda: len(sink.pcm(101)) == len(tone(500)))
    await transport.stop()
    assert sink.pcm(101) == tone(500)


def test_doctor_names_the_frame_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from recorder.cli.doctor import check_audio_tap

    if load_tap() is None:
        require_wrapper("the native audio tap is not built")
    check = check_audio_tap()
    assert check.status == "ok" and check.detail.startswith("native tap")
    monkeypatch.setenv(TAP_ENV, "python")
    check = check_audio_tap()
    assert check.status == "warn" and f"forced by {TAP_ENV}" in check.detail
