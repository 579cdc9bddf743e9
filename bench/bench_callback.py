"""CPU of the Agora frame callback path: chunked handoff against a per-frame handoff.

A "native" thread plays the SDK: every 10 ms it calls the transport's real
``on_playback_audio_frame_before_mixing`` observer once per participant with a
320-byte frame (reused, as native buffers are), all participants in one burst
as one playback pull delivers them (``--groups N`` spreads them over the tick).
Each participant has its own websocket (``compression=None``, as the STT
sockets) to a server on 127.0.0.1 in a separate process that discards what it
gets, so only the client's CPU is counted (the figures: docs/architecture.md,
"Decisions and measurements").

Variants, run interleaved in one process on the same connections:

* ``baseline``: the observer is not called (the feeder and the idle loop alone);
* ``handoff chunked``: the product path, ``AudioBridge.push_frame``: frames gather
  on the native thread, the loop is woken at most once per ~100 ms chunk and the
  sink drops the chunk;
* ``handoff per-frame``: each frame is copied and handed to the loop with
  ``call_soon_threadsafe``; the loop runs the same ``ChunkAssembler`` (timestamps,
  gaps, levels) and drops the chunks;
* ``write chunked`` (A): as ``handoff chunked``, and the sink writes every chunk to
  the participant's websocket;
* ``write per-frame`` (B): as ``handoff per-frame``, and the loop writes every
  10 ms frame to the participant's websocket;
* ``await chunked`` / ``await per-frame``: as the two above, but each message
  goes through a per-participant sender task that awaits ``conn.send``;
* ``naive per-frame``: the native thread calls
  ``asyncio.run_coroutine_threadsafe(conn.send(frame), loop)`` for every frame
  (a task and a future per frame, no assembly). Not like-for-like; shown because
  it is the obvious way to write a per-frame design.

``write`` sends the way the STT link's ``write_now`` does
(``protocol.send_binary`` + ``send_data``, no task switch), the cheapest send
there is; ``await`` is the STT session's path when a write must wait. Each pair
does the same work but for the handoff and the message size.

CPU is ``getrusage(RUSAGE_SELF)`` (user + system, all threads) between two
marks the loop runs after the warm-up and at the end of the window, so work
queued behind the loop is counted. Figures are CPU ms per participant-second
of audio, minus the baseline, best of ``--repeats`` (range in parentheses).
Real time: the feeder's lateness against its 10 ms schedule, and the loop's lag
(a probe posted every 100 ms behind the frames), worst over the repeats; a
variant whose loop lagged over 100 ms or feeder ran over 10 ms late is marked
BEHIND: it did not keep real time, and its CPU figure understates the need.

Run: .venv/bin/python bench/bench_callback.py [--warmup 1] [--seconds 3] [--sizes 50,200]
Environment: BENCH_SECONDS, BENCH_WARMUP, BENCH_SIZES, BENCH_REPEATS shorten a run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from recorder.audio import Chunk, ChunkAssembler, bytes_for_ms  # noqa: E402
from recorder.transport.agora.observers import make_observers  # noqa: E402
from recorder.transport.base import TransportEvent, TransportSink  # noqa: E402
from recorder.transport.bridge import AudioBridge  # noqa: E402

TARGET_RATIO = 5.0
FRAME_BYTES = bytes_for_ms(10)
VARIANTS = (
    "baseline",
    "handoff chunked",
    "handoff per-frame",
    "write chunked",
    "write per-frame",
    "await chunked",
    "await per-frame",
    "naive per-frame",
)

# A websockets server that discards every message; prints its port, stops when stdin closes.
SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve

async def discard(ws):
    try:
        async for _ in ws:
            pass
    except Exception:
        pass

async def main():
    async with serve(discard, "127.0.0.1", 0, compression=None, ping_interval=None,
                     max_size=2**20, backlog=1024) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _proc_cpu_s(pid: int) -> float:
    """Another process's CPU (user + system) from /proc; NaN where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sender:
    """Sends each participant's audio on its socket, one message per call, on the loop.

    ``write``: at once, as the STT link's ``write_now`` does (no task switch).
    ``await``: through a sender task per participant woken by an Event that
    awaits ``conn.send`` (the STT session's path when a write must wait).
    """

    def __init__(self, conns: dict[int, ClientConnection], mode: str) -> None:
        self.conns = conns
        self.sends = 0
        self._queues: dict[int, deque[bytes]] = {}
        self._wake: dict[int, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        if mode == "await":
            for uid in conns:
                self._queues[uid], self._wake[uid] = deque(), asyncio.Event()
                self._tasks.append(asyncio.create_task(self._sender(uid)))
        self.send = self._write if mode == "write" else self._queue

    def _write(self, uid: int, data: bytes) -> None:
        conn = self.conns[uid]
        conn.protocol.send_binary(data)
        conn.send_data()
        self.sends += 1

    def _queue(self, uid: int, data: bytes) -> None:
        self._queues[uid].append(data)
        self._wake[uid].set()

    async def _sender(self, uid: int) -> None:
        conn, queue, wake = self.conns[uid], self._queues[uid], self._wake[uid]
        while True:
            await wake.wait()
            wake.clear()
            while queue:
                await conn.send(queue.popleft())
                self.sends += 1

    async def aclose(self) -> None:
        """Send what is queued, then stop the sender tasks."""
        for _ in range(1000):  # 10 s at most
            if not any(self._queues.values()):
                break
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Sink(TransportSink):
    """The loop side of the chunked path: drops each chunk, or sends it on the uid's socket."""

    def __init__(self, sender: Sender | None) -> None:
        self.sender = sender
        self.chunks = 0

    def on_event(self, event: TransportEvent) -> None:
        """Events do not occur in this benchmark."""

    def on_audio(self, uid: int, chunk: Chunk) -> None:
        self.chunks += 1
        if self.sender is not None:
            self.sender.send(uid, chunk.pcm)


class PerFrameBridge:
    """The handoff we avoid: one ``call_soon_threadsafe`` per 10 ms frame.

    The loop then does the assembly the chunked path does on the native thread
    (same ChunkAssembler: timestamps, gaps, levels); with a ``sender`` it also
    sends every frame on the participant's socket.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Sink, sender: Sender | None) -> None:
        self._loop = loop
        self._sink = sink
        self._sender = sender
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
        if assembler.append(frame, at_ms) is not None:
            self._sink.chunks += 1
        if self._sender is not None:
            self._sender.send(uid, frame)


class NaiveBridge:
    """Per frame, from the native thread: ``run_coroutine_threadsafe(conn.send(frame))``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conns: dict[int, ClientConnection]):
        self._loop = loop
        self._conns = conns
        self.wakeups = 0
        self.futures: list[Any] = []

    def push_frame(self, uid: int, frame: bytearray) -> None:
        """Native thread: copy the frame and schedule its send on the loop."""
        send = self._conns[uid].send(bytes(frame))
        self.futures.append(asyncio.run_coroutine_threadsafe(send, self._loop))
        self.wakeups += 1


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


class Marks:
    """Runs on the loop: CPU snapshots at the window's edges, and loop-lag probes."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.ended = asyncio.Event()
        self.cpu = [0.0, 0.0]
        self.server_cpu = [0.0, 0.0]
        self.in_window = False
        self.worst_lag_s = 0.0

    def mark(self, edge: int) -> None:
        self.cpu[edge] = _cpu_s()
        self.server_cpu[edge] = _proc_cpu_s(self.server_pid)
        self.in_window = edge == 0
        if edge == 1:
            self.ended.set()

    def probe(self, posted: float) -> None:
        if self.in_window:
            self.worst_lag_s = max(self.worst_lag_s, time.monotonic() - posted)


def _feed(
    observer: Any,
    uids: list[int],
    ticks: tuple[int, int],
    groups: int,
    loop: asyncio.AbstractEventLoop,
    marks: Marks,
) -> list[float]:
    """The native thread: one frame per participant every 10 ms, paced to the wall clock.

    ``ticks`` is (warm-up, window) in 10 ms ticks; returns each window tick's
    lateness. The participants' frames come in ``groups`` bursts spread evenly
    over each tick (1: all at once, as one playback pull would deliver them).
    """
    frames = [SimpleNamespace(buffer=bytearray(b"\x10\x00" * (FRAME_BYTES // 2))) for _ in uids]
    pairs = list(zip([str(uid) for uid in uids], frames, strict=True))
    bursts = [pairs[g::groups] for g in range(groups)]
    warm, window = ticks
    step_s = 0.010 / groups
    callback = None if observer is None else observer.on_playback_audio_frame_before_mixing
    lateness: list[float] = []
    start = time.monotonic()
    for step in range((warm + window) * groups):
        tick, burst = divmod(step, groups)
        due = start + step * step_s
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if burst == 0 and tick == warm:
            loop.call_soon_threadsafe(marks.mark, 0)
        if burst == 0 and tick % 10 == 0:
            loop.call_soon_threadsafe(marks.probe, time.monotonic())
        if tick >= warm:
            lateness.append(time.monotonic() - due)  # sleep's overshoot included
        if callback is not None:
            for uid, frame in bursts[burst]:
                callback(None, "bench", uid, frame, -1, None)
    loop.call_soon_threadsafe(marks.mark, 1)
    return lateness


async def _drain(conns: dict[int, ClientConnection], timeout_s: float = 10.0) -> int:
    """Wait for the sockets' write buffers to empty; returns the bytes still buffered."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = sum(conn.transport.get_write_buffer_size() for conn in conns.values())
        if left == 0 or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.05)


async def _run(
    variant: str,
    conns: dict[int, ClientConnection],
    server_pid: int,
    ticks: tuple[int, int],
    groups: int,
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    mode = variant.split()[0]
    sender = Sender(conns, mode) if mode in ("write", "await") else None
    sink = Sink(sender)
    bridge: AudioBridge | PerFrameBridge | NaiveBridge | None = None
    if mode == "naive":
        bridge = NaiveBridge(loop, conns)
    elif variant.endswith("chunked"):
        bridge = AudioBridge(loop, sink)
    elif variant.endswith("per-frame"):
        bridge = PerFrameBridge(loop, sink, sender)
    observer = None if bridge is None else _observer(bridge.push_frame)
    marks = Marks(server_pid)
    result: dict[str, list[float]] = {}
    uids = list(conns)

    def feeder() -> None:
        result["late"] = _feed(observer, uids, ticks, groups, loop, marks)

    thread = threading.Thread(target=feeder, name="native", daemon=True)
    thread.start()
    await marks.ended.wait()
    backlog = sum(conn.transport.get_write_buffer_size() for conn in conns.values())
    await asyncio.to_thread(thread.join)
    if sender is not None:
        await sender.aclose()
    sends = sender.sends if sender else 0
    if isinstance(bridge, NaiveBridge):
        await asyncio.gather(*(asyncio.wrap_future(f) for f in bridge.futures))
        sends = len(bridge.futures)
    await _drain(conns)
    late = sorted(result["late"])
    window_s = ticks[1] / 100
    return {
        "cpu_ms": (marks.cpu[1] - marks.cpu[0]) * 1000 / (len(uids) * window_s),
        "server_ms": (marks.server_cpu[1] - marks.server_cpu[0]) * 1000 / (len(uids) * window_s),
        "late_worst_ms": late[-1] * 1000,
        "late_p99_ms": late[int(len(late) * 0.99)] * 1000,
        "lag_ms": marks.worst_lag_s * 1000,
        "wakeups_s": getattr(bridge, "wakeups", 0) / ((ticks[0] + ticks[1]) / 100),
        "sends_s": sends / ((ticks[0] + ticks[1]) / 100),
        "backlog_kb": backlog / 1024,
    }


async def _connect_all(port: int, participants: int) -> dict[int, ClientConnection]:
    conns: dict[int, ClientConnection] = {}
    for first in range(0, participants, 50):  # in batches: no listen-queue overflow
        uids = range(1000 + first, 1000 + min(participants, first + 50))
        opened = await asyncio.gather(
            *(connect(f"ws://127.0.0.1:{port}", compression=None, ping_interval=None) for _ in uids)
        )
        conns.update(zip(uids, opened, strict=True))
    return conns


async def _size(
    participants: int, port: int, server_pid: int, args: argparse.Namespace
) -> dict[str, list[dict[str, float]]]:
    conns = await _connect_all(port, participants)
    ticks = (round(args.warmup * 100), round(args.seconds * 100))
    groups = min(participants, args.groups)
    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    try:
        for _ in range(args.repeats):  # interleaved, so load from elsewhere hits all alike
            for variant in VARIANTS:
                runs[variant].append(await _run(variant, conns, server_pid, ticks, groups))
    finally:
        await asyncio.gather(*(conn.close() for conn in conns.values()))
    return runs


def _report(participants: int, runs: dict[str, list[dict[str, float]]]) -> dict[str, float]:
    base = min(run["cpu_ms"] for run in runs["baseline"])
    print(
        f"  {participants:4d} participants    CPU ms (range)       loop wakes/s  sends/s"
        "  feeder late p99/worst  loop lag  unsent  server CPU ms"
    )
    net: dict[str, float] = {}
    for variant in VARIANTS:
        cpus = [run["cpu_ms"] - (0.0 if variant == "baseline" else base) for run in runs[variant]]
        best = min(runs[variant], key=lambda run: run["cpu_ms"])
        net[variant] = max(min(cpus), 1e-6)

        def worst(key: str, variant: str = variant) -> float:
            return max(run[key] for run in runs[variant])

        print(
            f"        {variant:17s}  {min(cpus):6.3f} ({min(cpus):.2f}-{max(cpus):.2f})"
            f"  {best['wakeups_s']:9.0f}  {best['sends_s']:7.0f}"
            f"  {worst('late_p99_ms'):9.1f} / {worst('late_worst_ms'):5.1f} ms"
            f"  {worst('lag_ms'):5.0f} ms  {worst('backlog_kb'):3.0f} KiB  {best['server_ms']:6.2f}"
            + ("  BEHIND" if worst("lag_ms") > 100 or worst("late_worst_ms") > 10 else "")
        )
    ratios = {
        kind: net[f"{kind} per-frame"] / net[f"{kind} chunked"]
        for kind in ("write", "await", "handoff")
    }
    ratios["naive"] = net["naive per-frame"] / net["await chunked"]
    print(
        f"  {participants:4d}  per-frame / chunked: sends written at once (B/A) "
        f"{ratios['write']:.1f}x, sends awaited in a task {ratios['await']:.1f}x, "
        f"handoff only {ratios['handoff']:.1f}x; naive per-frame / await chunked "
        f"{ratios['naive']:.1f}x (baseline {base:.3f} ms subtracted from all)"
    )
    return ratios


def _env(name: str, default: str) -> str:
    return os.environ.get(f"BENCH_{name}", default)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=float(_env("SECONDS", "3")))
    parser.add_argument("--warmup", type=float, default=float(_env("WARMUP", "1")))
    parser.add_argument("--sizes", default=_env("SIZES", "50,200"), help="participant counts")
    parser.add_argument("--groups", type=int, default=1, help="bursts per 10 ms tick")
    parser.add_argument("--repeats", type=int, default=int(_env("REPEATS", "2")))
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(
        f"agora callback path: {args.seconds:g} s measured after {args.warmup:g} s warm-up, "
        f"frames in {args.groups} burst(s) per 10 ms, {os.cpu_count()} CPUs; CPU ms per "
        "participant-second, this process (all threads) minus the baseline, best of "
        f"{args.repeats} (range); server = the discarding server process, not included"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        worst = dict.fromkeys(("write", "await", "handoff", "naive"), float("inf"))
        for participants in sizes:
            runs = asyncio.run(_size(participants, port, server.pid, args))
            for key, ratio in _report(participants, runs).items():
                worst[key] = min(worst[key], ratio)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
    for kind, what in (
        ("write", "whole path, sends written at once"),
        ("await", "whole path, sends awaited in a task"),
        ("handoff", "handoff alone"),
        ("naive", "naive per-frame against the awaited chunked path (not like-for-like)"),
    ):
        verdict = "meets" if worst[kind] >= TARGET_RATIO else "MISSES"
        print(
            f"{what}: chunked is {worst[kind]:.1f}x cheaper at worst; "
            f"{verdict} the {TARGET_RATIO:.0f}x target"
        )


if __name__ == "__main__":
    main()
