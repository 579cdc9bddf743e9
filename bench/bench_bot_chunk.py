"""The recorder's own cost per chunk: MeetingRecorder.on_audio, the audio keeper, the speech spans.

Every 100 ms chunk of every participant passes through ``MeetingRecorder.on_audio``
(issue 13: the whole path at <= 0.5 ms CPU per participant-second at 200 speakers).
This drives a real recorder, with its audio kept on disk, from a transport that
hands it 200 speakers' chunks tick by tick on the loop, as the bridge's drain does,
and prints the CPU each chunk costs. The STT pipeline is not measured: its
``ParticipantStream.feed`` is replaced by a no-op (bench_agora_path.py measures
everything together).

    PYTHONPATH=$PWD python bench/bench_bot_chunk.py    # BENCH_SPEAKERS, BENCH_SECONDS
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from recorder.audio import Chunk
from recorder.audio_store import AudioKeeper
from recorder.bot import MeetingRecorder, RecorderSettings
from recorder.pipeline import ParticipantStream, SpeechStream
from recorder.transport.base import Transport, TransportSink
from storage.store import TranscriptStore

SPEAKERS = int(os.environ.get("BENCH_SPEAKERS", "200"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "30"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CHUNK_MS = 100
# The bridge hands the loop about this many chunks per drain at 200 speakers (bench_agora_path).
PER_TICK = 20


class TickTransport(Transport):
    """A channel whose speakers' chunks the bench hands over itself."""

    channel = "bench"

    def __init__(self) -> None:
        self.sink: TransportSink | None = None
        self.started = asyncio.Event()
        self.now_ms = 0.0
        self._finished = asyncio.Event()

    async def start(self, sink: TransportSink) -> None:
        self.sink = sink
        self.started.set()

    async def wait_finished(self) -> None:
        await self._finished.wait()

    def clock_ms(self) -> float:
        return self.now_ms

    async def stop(self) -> None:
        self._finished.set()


def chunks_for(uids: list[int]) -> list[tuple[int, Chunk]]:
    """Every chunk of the run, in arrival order: speech 3 s, then 1 s of silence, staggered."""
    pcm = bytes(CHUNK_MS * 32)
    out = []
    for tick in range(SECONDS * 1000 // CHUNK_MS):
        for uid in uids:
            is_speech = (tick + uid) % 40 < 30
            out.append((uid, Chunk(pcm, float(tick * CHUNK_MS), is_speech)))
    return out


async def one_round(folder: Path, *, keep_audio: bool, feed: bool = True) -> tuple[float, float]:
    """µs of the loop's thread, and of the whole process, per chunk."""
    db = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    uids = list(range(1000, 1000 + SPEAKERS))
    chunks = chunks_for(uids)
    async with await TranscriptStore.open(db, auto_migrate=True) as store:
        transport = TickTransport()

        def no_stream(uid: int) -> SpeechStream:
            raise AssertionError("the pipeline is not measured here")

        recorder = MeetingRecorder(
            transport=transport,
            store=store,
            open_stream=no_stream,
            settings=RecorderSettings(bot_uid=9999),
            audio_dir=folder / "audio" if keep_audio else None,
        )
        task = asyncio.create_task(recorder.run())
        await transport.started.wait()
        sink = transport.sink
        assert sink is not None
        loop0, all0 = time.thread_time(), time.process_time()
        for at in range(0, len(chunks), PER_TICK):
            if feed:
                for uid, chunk in chunks[at : at + PER_TICK]:
                    sink.on_audio(uid, chunk)
            transport.now_ms = chunks[at][1].end_ms
            await asyncio.sleep(0)  # a tick: what the loop does after a drain runs here
        loop_s, all_s = time.thread_time() - loop0, time.process_time() - all0
        recorder.request_stop()
        await task
    return loop_s * 1e6 / len(chunks), all_s * 1e6 / len(chunks)


async def main() -> None:
    ParticipantStream.feed = lambda self, chunk: None  # type: ignore[method-assign]
    print(f"{SPEAKERS} speakers, {SECONDS} s, {CHUNK_MS} ms chunks; best of {ROUNDS}")
    with tempfile.TemporaryDirectory() as folder:
        median_ns, quickest_ns, commands = await keeper_alone(Path(folder))
    print(
        f"  AudioKeeper.feed alone: {median_ns:5.0f} ns per chunk (median tick), quickest tick "
        f"{quickest_ns:4.0f} ns; {commands} commands to its thread"
    )
    # The loop's own turn per tick (a drain's worth of chunks) is not the recorder's:
    # measured alone, it is taken off the figures below.
    base_loop, base_all = await best(keep_audio=True, feed=False)
    print(f"  the loop's ticks alone: {base_loop:5.2f} µs per chunk (taken off below)")
    for keep_audio in (False, True):
        loop_us, all_us = await best(keep_audio=keep_audio)
        loop_us, all_us = loop_us - base_loop, all_us - base_all
        what = "on_audio, audio kept  " if keep_audio else "on_audio, no audio dir"
        print(
            f"  {what}: {loop_us:5.2f} µs per chunk on the loop, {all_us:5.2f} µs every thread "
            f"({all_us * 1000 / CHUNK_MS / 1000:5.3f} ms per participant-second)"
        )


async def keeper_alone(folder: Path) -> tuple[float, float, int]:
    """AudioKeeper.feed alone, every speaker's chunk each tick: ns per chunk (median and
    quickest tick), and the commands its thread got."""
    db = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    pcm = bytes(CHUNK_MS * 32)
    async with await TranscriptStore.open(db, auto_migrate=True) as store:
        meeting = await store.start_meeting("bench", 9999, datetime.now(UTC))
        keeper = AudioKeeper(store, meeting, folder / "audio")
        commands = 0
        files = keeper.files
        write, write_many = files.write, files.write_many

        def one(key: int, blocks: list[bytes]) -> None:
            nonlocal commands
            commands += 1
            write(key, blocks)

        def many(writes: list[tuple[int, list[bytes]]]) -> None:
            nonlocal commands
            commands += 1
            write_many(writes)

        files.write, files.write_many = one, many  # type: ignore[method-assign]
        feed = keeper.feed
        per_tick: list[float] = []
        for tick in range(SECONDS * 1000 // CHUNK_MS):
            given = [(uid, Chunk(pcm, float(tick * CHUNK_MS), True)) for uid in range(SPEAKERS)]
            started = time.thread_time_ns()
            for uid, chunk in given:
                feed(uid, chunk)
            await asyncio.sleep(0)  # the tick ends: the batches due go to the thread
            per_tick.append((time.thread_time_ns() - started) / SPEAKERS)
        await keeper.aclose()
    return statistics.median(per_tick), min(per_tick), commands


async def best(*, keep_audio: bool, feed: bool = True) -> tuple[float, float]:
    """The quickest of ``ROUNDS`` rounds (the least disturbed by other processes)."""
    results = []
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory() as folder:
            results.append(await one_round(Path(folder), keep_audio=keep_audio, feed=feed))
    return min(results)


if __name__ == "__main__":
    asyncio.run(main())
