"""What the write journal costs while the database is away, and how fast it is stored after.

A recording's turns (each with its word timings, as the emulator's speech gives
them: about 10 words) are handed to :class:`recorder.writer.TranscriptWriter`
with the database away, so they go to the journal; then the database comes
back and the journal is stored (SQLite). Prints:

- bytes per turn in the journal (disk per hour of outage: multiply by turns/hour);
- ms per spill of 1000 turns (one ``write`` and one ``fsync``, on a thread);
- turns/s stored from the journal once the database is back.

Run: ``python bench/bench_journal.py`` (BENCH_TURNS sets how many turns).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recorder.errors import StorageError  # noqa: E402
from recorder.journal import Journal  # noqa: E402
from recorder.persist import StoreWrites, Write, session_write, turn_write  # noqa: E402
from recorder.writer import TranscriptWriter  # noqa: E402
from storage.records import TurnRecord, Word  # noqa: E402
from storage.store import TranscriptStore  # noqa: E402

TURNS = int(os.environ.get("BENCH_TURNS", "5000"))


class Outage:
    """The real store behind a switch: away until ``is_away`` is cleared."""

    def __init__(self, inner: StoreWrites) -> None:
        self.inner = inner
        self.is_away = True
        self.tried = asyncio.Event()

    async def apply(self, writes: Sequence[Write], *, fresh: bool = False) -> None:
        self.tried.set()
        if self.is_away:
            raise StorageError("cannot connect to the database")
        await self.inner.apply(writes)

    def resolve(self, write: Write) -> Write:
        return self.inner.resolve(write)


def turn(meeting: int, order: int) -> TurnRecord:
    words = tuple(
        Word(f"word{i}", order * 4000 + i * 300, order * 4000 + i * 300 + 250, 0.93)
        for i in range(10)
    )
    return TurnRecord(
        meeting_id=meeting,
        uid=101,
        stream_session_id=0,
        turn_order=order,
        start_ms=order * 4000,
        end_ms=order * 4000 + 3000,
        text=" ".join(w.text for w in words),
        words=words,
    )


async def main(folder: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    async with await TranscriptStore.open(db_url, auto_migrate=True) as store:
        started = datetime.now(UTC)
        meeting = await store.start_meeting("bench", 1, started)
        database = Outage(StoreWrites(store))
        path = folder / "journals" / f"meeting-{meeting}.jsonl"
        writer = TranscriptWriter(database, retry_delay_s=0.05, max_retry_delay_s=0.05)
        writer.journal_to(path, meeting, "bench", started)
        task = asyncio.create_task(writer.run(), name="writer")
        writer.submit(session_write("s", meeting, 101, started, None))
        for order in range(TURNS):
            writer.put(turn(meeting, order), session="s")
            if order % 100 == 99:
                await asyncio.sleep(0)
        # Everything made during the outage is on disk before the database is back.
        while writer.pending:  # noqa: ASYNC110 - the writer has no event for "journaled"
            await asyncio.sleep(0.01)
        size = path.stat().st_size
        database.is_away = False
        t0 = time.perf_counter()
        writer.close()
        await task
        stored_s = time.perf_counter() - t0
        count = len((await store.get_meeting(meeting)).turns)
    assert count == TURNS, count
    spill = Journal(folder / "spill.jsonl")
    batch = [turn_write(turn(1, order), session="s") for order in range(1000)]
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        spill.append(batch)
        runs.append(time.perf_counter() - t0)
    spill.remove()
    print(f"turns: {TURNS}, journal: {size / 1e6:.1f} MB, {size / TURNS:.0f} bytes/turn")
    print(f"spill of 1000 turns (write + fsync): median {1000 * sorted(runs)[2]:.1f} ms")
    print(f"stored from the journal once back: {TURNS / stored_s:.0f} turns/s")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(main(Path(folder)))
