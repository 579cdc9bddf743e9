"""CPU of the client audio path per participant-second, at 50/100/200 participants.

The emulator runs in its own process (its CPU is not counted). In this process a
feeder thread plays the SDK's part: every 10 ms it hands one 10 ms frame per
participant to the AudioBridge, as Agora's native callback does; everything after
that is the product's real path: chunk assembly, the loop handoff, the per-uid
pipeline, the STT client (one socket per participant, paced), turn parsing and
the SQLite writer. Every participant talks continuously, so every socket is open.

Prints, per size: CPU ms per participant-second (process CPU over the measured
window, all threads), the feeder's lateness (is the process keeping real time?),
and loop wake-ups per second. The bar: <= 0.5 ms at 200 participants, real time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support import start_emulator  # noqa: E402
from recorder.app import RecordingOptions, record  # noqa: E402
from recorder.audio import bytes_for_ms  # noqa: E402
from recorder.config import Config  # noqa: E402
from recorder.tonecode import encode  # noqa: E402
from recorder.transport.base import Transport, TransportSink  # noqa: E402
from recorder.transport.bridge import AudioBridge  # noqa: E402
from storage.store import TranscriptStore  # noqa: E402

WARMUP_S = 4.0
MEASURE_S = float(os.environ.get("BENCH_SECONDS", "15"))
FRAME = bytes_for_ms(10)
CHUNK_MS = int(os.environ.get("BENCH_CHUNK_MS", "100"))


class FeederTransport(Transport):
    """N participants talking without pause, fed from a thread at 10 ms cadence."""

    def __init__(self, participants: int, *, deliver: bool = True) -> None:
        self.deliver = deliver
        self.channel = "bench"
        self.participants = participants
        text = " ".join(f"word{i} alpha bravo charlie delta." for i in range(40))
        self.speech = encode(text)
        self.bridge: AudioBridge | None = None
        self.stop_event = threading.Event()
        self.lateness_ms: list[float] = []
        self.thread: threading.Thread | None = None
        self.finished = asyncio.Event()

    def clock_ms(self) -> float:
        return self.bridge.clock_ms() if self.bridge is not None else 0.0

    async def start(self, sink: TransportSink) -> None:
        self.bridge = AudioBridge(asyncio.get_running_loop(), sink, chunk_ms=CHUNK_MS)
        self.thread = threading.Thread(target=self.run, name="feeder", daemon=True)
        self.thread.start()

    def run(self) -> None:
        assert self.bridge is not None
        push = self.bridge.push_frame if self.deliver else _ignore
        speech, n = self.speech, len(self.speech)
        uids = list(range(1000, 1000 + self.participants))
        # Each participant starts at a different place in the speech.
        offsets = {uid: (i * 7919 * FRAME) % n // FRAME * FRAME for i, uid in enumerate(uids)}
        origin = time.monotonic()
        tick = 0
        while not self.stop_event.is_set():
            due = origin + (tick + 1) * 0.010
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                self.lateness_ms.append((now - due) * 1000)
            for uid in uids:
                at = offsets[uid]
                frame = speech[at : at + FRAME]
                if len(frame) < FRAME:
                    at, frame = 0, speech[:FRAME]
                offsets[uid] = at + FRAME
                push(uid, frame)
            tick += 1

    async def wait_finished(self) -> None:
        await self.finished.wait()

    async def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            await asyncio.to_thread(self.thread.join, 2)


def _ignore(uid: int, frame: bytes) -> None:
    """The SDK stand-in's baseline: the same loop, handing frames to nobody."""


def feeder_baseline(participants: int, seconds: float = 5.0) -> float:
    """CPU ms per participant-second of the feeder loop alone (the SDK's part, not ours)."""

    async def run() -> float:
        transport = FeederTransport(participants, deliver=False)
        transport.bridge = AudioBridge(asyncio.get_running_loop(), _NullSink())
        thread = threading.Thread(target=transport.run, name="feeder", daemon=True)
        before = thread_cpu().get("feeder", 0.0)
        thread.start()
        await asyncio.sleep(seconds)
        used = thread_cpu().get("feeder", 0.0) - before
        transport.stop_event.set()
        thread.join()
        return used * 1000 / (participants * seconds)

    return asyncio.run(run())


class _NullSink(TransportSink):
    def on_event(self, event: object) -> None:  # type: ignore[override]
        pass

    def on_audio(self, uid: int, chunk: object) -> None:  # type: ignore[override]
        pass


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of each thread, by name (Linux /proc; coarse, 10 ms ticks)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        name = "event loop" if name == "MainThread" else name
        name = name if name in ("event loop", "feeder") else "other"
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


async def measure(participants: int, url: str, baseline: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        async with await TranscriptStore.open(db, auto_migrate=True) as store:
            transport = FeederTransport(participants)
            stop = asyncio.Event()
            config = Config(database_url=db, assemblyai_api_key="bench", stt_url=url)
            options = RecordingOptions(sessions_per_minute=100_000)
            task = asyncio.create_task(
                record(config, transport, options=options, store=store, stop=stop),
                name="recorder",
            )
            await asyncio.sleep(WARMUP_S)
            assert transport.bridge is not None
            wakeups0, late0 = transport.bridge.wakeups, len(transport.lateness_ms)
            cpu0, wall0, threads0 = cpu_seconds(), time.monotonic(), thread_cpu()
            await asyncio.sleep(MEASURE_S)
            cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
            threads = {k: v - threads0.get(k, 0.0) for k, v in thread_cpu().items()}
            wakeups = transport.bridge.wakeups - wakeups0
            late = sorted(transport.lateness_ms[late0:]) or [0.0]
            stop.set()
            report = await task
    per = cpu * 1000 / (participants * wall)
    ticks = wall / 0.010
    print(
        f"{participants:4d} participants: {per:5.3f} ms CPU per participant-second "
        f"({cpu / wall * 100:5.1f}% of a core); feeder late on {len(late) / ticks * 100:4.1f}% "
        f"of ticks, p99 {late[int(len(late) * 0.99) - 1]:5.1f} ms; "
        f"{wakeups / wall:6.0f} loop wake-ups/s; {report.turns} turns stored",
        flush=True,
    )
    split = ", ".join(
        f"{name} {seconds * 1000 / (participants * wall):5.3f}"
        for name, seconds in sorted(threads.items())
    )
    print(f"      by thread (ms per participant-second): {split}", flush=True)
    product = per - baseline
    verdict = "meets" if product <= 0.5 else "misses"
    print(
        f"      recorder's own CPU (total minus the SDK stand-in's {baseline:5.3f}): "
        f"{product:5.3f} ms per participant-second; {verdict} the 0.5 ms bar",
        flush=True,
    )


async def main() -> None:
    logging.disable(logging.WARNING)
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "50,100,200").split(",")]
    baselines = {size: await asyncio.to_thread(feeder_baseline, size) for size in sizes}
    emulator, url = start_emulator()
    try:
        for size in sizes:
            await measure(size, url, baselines[size])
    finally:
        emulator.terminate()
        emulator.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
