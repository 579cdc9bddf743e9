"""CPU of the Agora frame callback path: chunked handoff against a per-frame handoff.

A "native" thread plays the SDK: every 10 ms it calls the transport's real
``on_playback_audio_frame_before_mixing`` observer once per participant with a
320-byte frame (reused, as native buffers are), all participants in one burst
as one playback pull delivers them (``--groups N`` spreads them over the tick).
The loop side is the product's next stage, modelled as the STT stream has it:
per participant a buffer and a sender task woken by an ``asyncio.Event``.

* ``baseline``: the observer is not called (the feeder's own cost, subtracted);
* ``chunked``: the product path, ``AudioBridge.push_frame``: frames gather on the
  native thread and the loop (and the participant's task) wakes once per ~100 ms;
* ``per-frame``: each frame is copied and handed to the loop with
  ``call_soon_threadsafe``; the loop runs the same assembly and hands on chunks;
* ``per-frame+stream``: as ``per-frame``, and every frame also goes on to the
  participant's stream, waking its sender task for every 10 ms frame.

Prints CPU ms per participant-second of audio (process CPU, all threads, minus
the baseline; best of ``--repeats``) and the per-frame/chunked ratios.
Target: chunked at least 5x cheaper.

Run: .venv/bin/python bench/bench_callback.py [--seconds 2] [--sizes 50,200] [--groups 1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recorder.audio import Chunk, ChunkAssembler, bytes_for_ms  # noqa: E402
from recorder.transport.agora_observers import make_observers  # noqa: E402
from recorder.transport.base import AudioBridge, TransportEvent, TransportSink  # noqa: E402

TARGET_RATIO = 5.0
FRAME_BYTES = bytes_for_ms(10)


class StreamSink(TransportSink):
    """The bot's next stage: per participant a buffer and a sender task woken by an Event."""

    def __init__(self) -> None:
        self.chunks = 0
        self.audio_bytes = 0
        self.task_wakeups = 0
        self._buffers: dict[int, bytearray] = {}
        self._wake: dict[int, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def on_event(self, event: TransportEvent) -> None:
        """Events do not occur in this benchmark."""

    def on_audio(self, uid: int, chunk: Chunk) -> None:
        """A chunk arrived (the chunked path)."""
        self.chunks += 1
        self.feed(uid, chunk.pcm)

    def feed(self, uid: int, pcm: bytes) -> None:
        """Buffer audio for ``uid`` and wake its sender (StreamingSession.send does this)."""
        buffer = self._buffers.get(uid)
        if buffer is None:
            buffer = self._buffers[uid] = bytearray()
            self._wake[uid] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._sender(uid)))
        buffer += pcm
        self._wake[uid].set()

    async def _sender(self, uid: int) -> None:
        wake, buffer = self._wake[uid], self._buffers[uid]
        while True:
            await wake.wait()
            wake.clear()
            self.task_wakeups += 1
            self.audio_bytes += len(buffer)
            buffer.clear()

    async def aclose(self) -> None:
        """Stop the sender tasks."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class PerFrameBridge:
    """The handoff we avoid: one ``call_soon_threadsafe`` per 10 ms frame.

    The loop then does the assembly the chunked path does on the native thread
    (same ChunkAssembler: timestamps, gaps, levels). With ``feed_frames`` each
    frame also goes straight to the participant's stream, waking its sender
    for every frame, as a design without chunking before the stream would.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sink: StreamSink, *, feed_frames: bool
    ) -> None:
        self._loop = loop
        self._sink = sink
        self._feed_frames = feed_frames
        self._assemblers: dict[int, ChunkAssembler] = {}
        self._origin = time.monotonic()
        self.wakeups = 0

    def push_frame(self, uid: int, frame: bytearray) -> None:
        """Native thread: copy (the buffer is reused) and wake the loop for this frame."""
        at_ms = (time.monotonic() - self._origin) * 1000
        self._loop.call_soon_threadsafe(self._on_loop, uid, bytes(frame), at_ms)
        self.wakeups += 1

    def _on_loop(self, uid: int, frame: bytes, at_ms: float) -> None:
        assembler = self._assemblers.get(uid)
        if assembler is None:
            assembler = self._assemblers[uid] = ChunkAssembler()
        chunk = assembler.append(frame, at_ms)
        if self._feed_frames:
            self._sink.feed(uid, frame)
        elif chunk is not None:
            self._sink.on_audio(uid, chunk)


class _NoHandler:
    """Observer handler stub: the frame path never calls it."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args: None


def _observer(push: Callable[[int, bytearray], None]) -> Any:
    bases = SimpleNamespace(
        connection_observer=SimpleNamespace(IRTCConnectionObserver=object),
        local_user_observer=SimpleNamespace(IRTCLocalUserObserver=object),
        audio_frame_observer=SimpleNamespace(IAudioFrameObserver=object),
    )
    return make_observers(bases, _NoHandler(), push).audio_frame  # type: ignore[arg-type]


def _feed(
    observer: Any, participants: int, seconds: float, groups: int, done: Callable[[], None]
) -> tuple[float, int]:
    """The native thread: one frame per participant every 10 ms, paced to the wall clock.

    The participants' frames come in ``groups`` bursts spread evenly over each
    10 ms tick (1: all at once, as one playback pull would deliver them).
    """
    uids = [str(1000 + n) for n in range(participants)]
    frames = [SimpleNamespace(buffer=bytearray(b"\x10\x00" * (FRAME_BYTES // 2))) for _ in uids]
    pairs = list(zip(uids, frames, strict=True))
    bursts = [pairs[g::groups] for g in range(groups)]
    steps = int(seconds * 100) * groups
    step_s = 0.010 / groups
    start = time.monotonic()
    worst_late = 0.0
    for step in range(steps):
        due = start + step * step_s
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            worst_late = max(worst_late, -delay)
        if observer is not None:
            callback = observer.on_playback_audio_frame_before_mixing
            for uid, frame in bursts[step % groups]:
                callback(None, "bench", uid, frame, -1, None)
    done()
    return worst_late, int(seconds * 100) * participants


async def _run(variant: str, participants: int, seconds: float, groups: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    sink = StreamSink()
    bridge: AudioBridge | PerFrameBridge | None = None
    observer = None
    if variant == "chunked":
        bridge = AudioBridge(loop, sink)
        observer = _observer(bridge.push_frame)
    elif variant.startswith("per-frame"):
        bridge = PerFrameBridge(loop, sink, feed_frames=variant == "per-frame+stream")
        observer = _observer(bridge.push_frame)
    finished = asyncio.Event()
    result: dict[str, Any] = {}

    def feeder() -> None:
        result["late"], result["frames"] = _feed(
            observer, participants, seconds, groups, lambda: loop.call_soon_threadsafe(finished.set)
        )

    thread = threading.Thread(target=feeder, name="native", daemon=True)
    cpu_start, wall_start = time.process_time(), time.monotonic()
    thread.start()
    await finished.wait()
    await asyncio.sleep(0)  # run the handoffs already queued
    await asyncio.sleep(0)  # and the sender tasks they woke
    cpu = time.process_time() - cpu_start
    await sink.aclose()
    wall = time.monotonic() - wall_start
    thread.join()
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "late_ms": result["late"] * 1000,
        "wakeups": float(getattr(bridge, "wakeups", 0)),
        "frames": float(result["frames"]),
        "chunks": float(sink.chunks),
        "task_wakeups": float(sink.task_wakeups),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="audio per run")
    parser.add_argument("--sizes", default="50,200", help="participant counts")
    parser.add_argument("--groups", type=int, default=1, help="bursts per 10 ms tick")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant (best kept)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(
        f"agora callback path: {args.seconds:.0f} s of real-time audio per run, frames in "
        f"{args.groups} burst(s) per 10 ms; CPU ms per participant-second "
        "(all threads, best of runs, minus the feeder's own cost)"
    )
    worst_ratio = float("inf")
    variants = ("baseline", "chunked", "per-frame", "per-frame+stream")
    for participants in sizes:
        groups = min(participants, args.groups)
        runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
        for _ in range(args.repeats):  # interleaved, so load from elsewhere hits all alike
            for variant in variants:
                runs[variant].append(asyncio.run(_run(variant, participants, args.seconds, groups)))
        best = {variant: min(runs[variant], key=lambda r: r["cpu_s"]) for variant in variants}
        audio_s = participants * args.seconds
        base_ms = best["baseline"]["cpu_s"] * 1000 / audio_s
        costs = {}
        for variant in variants[1:]:
            run = best[variant]
            cost = max(run["cpu_s"] * 1000 / audio_s - base_ms, 1e-6)
            costs[variant] = cost
            print(
                f"  {participants:4d} participants  {variant:16s} {cost:6.3f} ms   "
                f"loop handoffs {run['wakeups']:6.0f}, sender wake-ups "
                f"{run['task_wakeups']:6.0f} for {run['frames']:6.0f} frames; "
                f"feeder late at worst {run['late_ms']:4.1f} ms"
            )
        for variant in variants[2:]:
            ratio = costs[variant] / costs["chunked"]
            if variant == "per-frame":
                worst_ratio = min(worst_ratio, ratio)
            print(f"  {participants:4d} participants  {variant} / chunked = {ratio:.1f}x")
        print(f"  {participants:4d} participants  (feeder's own {base_ms:.3f} ms subtracted)")
    verdict = "meets" if worst_ratio >= TARGET_RATIO else "MISSES"
    print(
        f"chunked handoff is {worst_ratio:.1f}x cheaper at worst; "
        f"{verdict} the {TARGET_RATIO:.0f}x target"
    )


if __name__ == "__main__":
    main()
