"""Export a 100,000-turn meeting from SQLite to every format; print time and peak memory.

Target: HTML in under 3 s, streaming. Run: .venv/bin/python bench/bench_export.py
[--turns N] [--formats html,md]. Prints wall and CPU seconds per format (wall time suffers
when the machine is busy; CPU time less so) and the render-only time from an in-memory source.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recorder.export.exporter import FORMATS  # noqa: E402
from recorder.export.exporter import export_meeting as render_export  # noqa: E402
from recorder.export.files import export_meeting  # noqa: E402
from storage.db import upgrade_database  # noqa: E402
from storage.records import Turn, TurnRecord, Word  # noqa: E402
from storage.store import TranscriptStore  # noqa: E402

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TEXT = "So I think we should ship the beta on Friday, if QA and ops agree with that plan."
UIDS = (101, 102, 103, 104)


def _words(offset_ms: int) -> tuple[Word, ...]:
    return tuple(
        Word(word, offset_ms + i * 150, offset_ms + i * 150 + 120, 0.93)
        for i, word in enumerate(TEXT.split())
    )


async def build(url: str, turns: int) -> int:
    await upgrade_database(url)
    async with await TranscriptStore.open(url) as store:
        meeting_id = await store.start_meeting("bench", 9999, START)
        sessions = {}
        for uid in UIDS:
            await store.record_participant(meeting_id, uid, START, f"Speaker {uid}")
            sessions[uid] = await store.open_stream_session(meeting_id, uid, START)
        batch: list[TurnRecord] = []
        for i in range(turns):
            uid = UIDS[(i // 3) % len(UIDS)]
            batch.append(
                TurnRecord(
                    meeting_id=meeting_id,
                    uid=uid,
                    stream_session_id=sessions[uid],
                    turn_order=i,
                    start_ms=i * 3000,
                    end_ms=i * 3000 + 2500,
                    text=f"{TEXT} ({i})",
                    words=_words(i * 3000),
                )
            )
            if len(batch) == 5000:
                await store.upsert_turns(batch)
                batch.clear()
        await store.upsert_turns(batch)
        await store.add_note(meeting_id, "recap", "All agreed.", created_at=START)
        await store.finish_meeting(meeting_id, START + timedelta(milliseconds=turns * 3000))
        return int(meeting_id)


async def render_only(url: str, meeting_id: int, fmt: str) -> float:
    """Time the renderer alone: turns from memory, output discarded."""
    async with await TranscriptStore.open(url) as store:
        header = await store.get_meeting(meeting_id)
    turns = header.turns

    async def source() -> AsyncIterator[Turn]:
        for turn in turns:
            yield turn

    started = time.perf_counter()
    await render_export(header, source(), fmt, lambda piece: None)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=100_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    args = parser.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        started = time.perf_counter()
        meeting_id = asyncio.run(build(url, args.turns))
        print(f"built {args.turns} turns in {time.perf_counter() - started:.1f} s")
        for fmt in formats:
            output = Path(tmp) / f"meeting.{fmt}"
            wall = time.perf_counter()
            cpu = time.process_time()
            asyncio.run(export_meeting(url, meeting_id, output))
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            render = asyncio.run(render_only(url, meeting_id, fmt))
            size_mb = output.stat().st_size / 1e6
            print(
                f"{fmt:5} {args.turns} turns: {wall:5.2f} s wall, {cpu:5.2f} s cpu "
                f"(render only {render:4.2f} s), {size_mb:6.1f} MB"
            )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the whole run (includes render-only's in-memory turns): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
