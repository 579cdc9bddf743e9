"""The streaming emulator's own CPU per session-second and its turn latency, at 50-500 sessions.

Starts ``recorder emulate`` in a subprocess (as bench_agora_path.py does), opens
N lean websockets to it (:mod:`recorder.stt.wire`: one write per chunk, text
handed to a callback) and has each send ``BENCH_SECONDS`` (default 10) of
tone-coded speech in 100 ms chunks on a real-time clock, the sessions spread
evenly over each 100 ms so the load is steady. Prints, per size:

* the emulator process's CPU (user + system, every thread, read from
  ``/proc/<pid>/stat``) from the first chunk to 1.5 s after the last (so a
  backlog is worked off inside the window), in ms per session-second of audio,
  and the kernel's share of it;
* turn latency p50/p99/max: for each ``Turn`` that brings a new last word, the
  time from sending the chunk that carries that word's end to receiving the
  ``Turn``. Its floor is the emulator's model, not its cost: the pause that
  ends a word is heard one or two chunks later (``min_turn_silence``, 100 ms),
  and every message waits ``processing_delay_s`` (200 ms);
* turns received, and the client's own CPU (it shares the cores).

Run: ``python bench/bench_emulator_streaming.py`` (``BENCH_SIZES=50,200`` for
other sizes; ``BENCH_PROFILE=prefix`` profiles the emulator with cProfile into
``prefix.<size>``, one emulator per size then).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.support import open_bench_wire, start_emulator  # noqa: E402
from recorder.audio import bytes_for_ms  # noqa: E402
from recorder.config import DEFAULT_SPEECH_MODEL  # noqa: E402
from recorder.stt.protocol import build_url  # noqa: E402
from recorder.stt.wire import WireSocket  # noqa: E402
from recorder.tonecode import encode_words  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
PROFILE = os.environ.get("BENCH_PROFILE", "")
CHUNK_MS = 100
CHUNK = bytes_for_ms(CHUNK_MS)
SLOTS = 10  # sending slots per chunk period: 10 ms apart
CLK_TCK = os.sysconf("SC_CLK_TCK")


def speech() -> tuple[bytes, list[int]]:
    """Enough tone code for every session, and the end (ms) of each word in it."""
    text = " ".join(f"word{i} alpha bravo charlie delta." for i in range(60))
    audio, words = encode_words(text)
    need = bytes_for_ms((SECONDS + 60) * 1000)
    if len(audio) < need:
        raise RuntimeError("BENCH_SECONDS too long for the script")
    return audio, [word.end_ms for word in words]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def process_cpu_s(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stop_emulator(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)  # cProfile writes its file on a clean exit
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Session:
    """One client socket: where its audio starts, when each chunk went out, what came back."""

    def __init__(self, wire: WireSocket, offset_ms: int, ends: list[int], latencies: list[float]):
        self.wire = wire
        self.offset_ms = offset_ms
        self.ends = ends  # word ends in this session's audio time
        self.sent_at: list[float] = []
        self.last_end = -1
        self.turns = 0
        self.terminated = asyncio.get_running_loop().create_future()
        self._latencies: list[float] | None = latencies
        wire.receive(self.on_text)

    def stop_measuring(self) -> None:
        self._latencies = None

    def on_text(self, text: str) -> None:
        now = time.monotonic()
        if text.startswith('{"type": "Turn"'):
            self.turns += 1
            words = json.loads(text)["words"]
            end = words[-1]["end"] if words else -1
            if end > self.last_end:
                self.last_end = end
                # The chunk holding the word's last sample (the decoder may place the end a
                # sample or two either side of the encoded one).
                chunk = max(0, end - 1) // CHUNK_MS
                if self._latencies is not None and chunk < len(self.sent_at):
                    self._latencies.append((now - self.sent_at[chunk]) * 1000)
        elif '"Termination"' in text and not self.terminated.done():
            self.terminated.set_result(None)


async def run_size(size: int, url: str, pid: int, audio: bytes, ends: list[int]) -> str:
    target = build_url(url, speech_model=DEFAULT_SPEECH_MODEL)
    latencies: list[float] = []
    sessions: list[Session] = []
    for i in range(size):
        wire = await open_bench_wire(target, close_timeout_s=2.0)
        offset = (i * 7919 * CHUNK_MS) % 60_000 // CHUNK_MS * CHUNK_MS
        first = bisect.bisect_right(ends, offset)
        sessions.append(Session(wire, offset, [e - offset for e in ends[first:]], latencies))
    await asyncio.sleep(0.5)  # every Begin out, the handshakes' CPU settled
    chunks = round(SECONDS * 1000 / CHUNK_MS)
    slots = [sessions[k::SLOTS] for k in range(SLOTS)]
    slot_s = CHUNK_MS / 1000 / SLOTS
    loop = asyncio.get_running_loop()
    cpu0, mine0 = process_cpu_s(pid), own_cpu_s()
    start = loop.time() + 0.05
    late = 0.0
    for tick in range(chunks * SLOTS):
        due = start + tick * slot_s
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late = max(late, -delay)
        index = tick // SLOTS
        now = time.monotonic()
        for session in slots[tick % SLOTS]:
            at = bytes_for_ms(session.offset_ms + index * CHUNK_MS)
            session.sent_at.append(now)
            session.wire.send_binary(audio[at : at + CHUNK])
    # The last chunks' turns: one more pause and the processing delay.
    await asyncio.sleep(1.5)
    user1, system1 = process_cpu_s(pid)
    cpu, system = user1 + system1 - sum(cpu0), system1 - cpu0[1]
    mine = own_cpu_s() - mine0
    for session in sessions:
        session.stop_measuring()  # the finals Terminate flushes wait for no pause
        session.wire.send_text('{"type": "Terminate"}')
    done = [s.terminated for s in sessions]
    _, pending = await asyncio.wait(done, timeout=30)
    for session in sessions:
        session.wire.close()
    await asyncio.gather(*(s.wire.closed for s in sessions), return_exceptions=True)
    session_s = size * SECONDS  # the drain's CPU counts: a backlog is worked off there
    turns = sum(s.turns for s in sessions)
    return (
        f"{size:4d} sessions: emulator {cpu * 1000 / session_s:6.3f} ms CPU per session-second "
        f"(kernel {system * 1000 / session_s:5.3f}); "
        f"turn latency p50 {percentile(latencies, 0.5):6.0f} p99 "
        f"{percentile(latencies, 0.99):6.0f} max {max(latencies, default=0.0):6.0f} ms "
        f"({len(latencies)} words); {turns} Turns; client {mine * 1000 / session_s:5.3f} ms/s, "
        f"sender late up to {late * 1000:.0f} ms; {len(pending)} without Termination"
    )


async def main() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "50,200,500").split(",")]
    audio, ends = speech()
    print(
        f"{SECONDS:g} s of tone-coded speech per session, 100 ms chunks in real time; "
        "emulator CPU over the window (every thread, user + system)",
        flush=True,
    )
    emulator = None
    try:
        for size in sizes:
            if emulator is None or PROFILE:
                if emulator is not None:
                    stop_emulator(emulator)
                emulator, url = start_emulator(profile=f"{PROFILE}.{size}" if PROFILE else None)
            print(await run_size(size, url, emulator.pid, audio, ends), flush=True)
    finally:
        if emulator is not None:
            stop_emulator(emulator)


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    asyncio.run(main())
