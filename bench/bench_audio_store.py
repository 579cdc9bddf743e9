"""CPU of keeping participants' audio on disk, per participant-second.

Feeds N participants' 100 ms chunks (what the bridge hands the recorder) into
:class:`recorder.audio_store.AudioKeeper` as fast as it takes them, one loop tick
per 100 ms step as live audio comes (``BENCH_BACKLOG=1``: a tick per 5 s, the
keeper draining a backlog), then finishes every file (FLAC). Prints, per size:

- loop ms/participant-s: CPU on the event loop's thread (the audio path's share:
  batching the chunks and handing them over), the figure the 0.05 ms bar is for;
- thread ms/participant-s: the writer thread's CPU (appending raw PCM, then
  compressing each finished run to FLAC and hashing it);
- MB/participant-hour of FLAC on disk (the audio is tone-code speech with
  background noise; real speech compresses to a similar 40-60% of raw).

Run: ``python bench/bench_audio_store.py`` (BENCH_SECONDS sets the audio length).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recorder.audio import Chunk, bytes_for_ms  # noqa: E402
from recorder.audio_store import AudioKeeper  # noqa: E402
from recorder.tonecode import encode, silence  # noqa: E402
from storage.audio import list_segments  # noqa: E402
from storage.store import TranscriptStore  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
CHUNK_MS = 100
#: Steps of audio fed between two loop ticks: 1 is live (every participant's chunk of
#: one 100 ms step, then the loop runs); 50 is a backlog drained in one go.
STEPS_A_TICK = 50 if os.environ.get("BENCH_BACKLOG") == "1" else 1


async def run(participants: int, folder: Path) -> tuple[float, float, float, float]:
    db_url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    speech = encode(" ".join(f"word{i} alpha bravo charlie." for i in range(200)))
    speech = (speech + silence(2000)) * 4
    size = bytes_for_ms(CHUNK_MS)
    chunks = [speech[i : i + size] for i in range(0, len(speech) - size, size)]
    async with await TranscriptStore.open(db_url, auto_migrate=True) as store:
        meeting = await store.start_meeting("bench", 1, datetime.now(UTC))
        keeper = AudioKeeper(store, meeting, folder / "audio")
        steps = int(SECONDS * 1000 / CHUNK_MS)
        given = [
            [
                (uid, Chunk(chunks[step % len(chunks)], step * CHUNK_MS, True))
                for uid in range(participants)
            ]
            for step in range(steps)
        ]
        feed = keeper.feed
        started = time.thread_time()
        for step, batch in enumerate(given):
            for uid, chunk in batch:
                feed(uid, chunk)
            if step % STEPS_A_TICK == 0:
                await asyncio.sleep(0)  # the loop's tick: the keeper hands batches over
        feeding = time.thread_time() - started
        # The bench's own ticks (one loop pass each) are not the keeper's: taken off.
        started = time.thread_time()
        for step in range(steps):
            if step % STEPS_A_TICK == 0:
                await asyncio.sleep(0)
        feeding -= time.thread_time() - started
        # Finishing the files: handing over the last batches and indexing (once per
        # file, not per chunk), on the loop.
        started = time.thread_time()
        await keeper.aclose()
        finishing = time.thread_time() - started
        segments = await list_segments(store, meeting)
    participant_s = participants * SECONDS
    flac_bytes = sum(s.bytes for s in segments)
    return (
        feeding * 1000 / participant_s,
        finishing * 1000 / len(segments),
        keeper.files.cpu_s * 1000 / participant_s,
        flac_bytes / participant_s * 3600 / 1e6,
    )


def main() -> None:
    cadence = "live: a tick a step" if STEPS_A_TICK == 1 else f"backlog: a tick per {STEPS_A_TICK}"
    print(
        f"audio store: {SECONDS:.0f} s of audio per participant, {CHUNK_MS} ms chunks ({cadence})"
    )
    print(
        f"{'participants':>12} {'loop ms/p-s':>12} {'finish ms/file':>15} "
        f"{'thread ms/p-s':>14} {'MB/p-hour':>10}"
    )
    for participants in (1, 6, 50):
        with tempfile.TemporaryDirectory() as folder:
            loop_ms, finish_ms, thread_ms, mb = asyncio.run(run(participants, Path(folder)))
        print(
            f"{participants:>12} {loop_ms:>12.4f} {finish_ms:>15.2f} {thread_ms:>14.4f} {mb:>10.1f}"
        )
    print("bar: loop <= 0.05 ms per participant-second (finishing is once per file)")


if __name__ == "__main__":
    main()
