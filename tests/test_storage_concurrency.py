"""Two real processes writing turns to one SQLite file at the same time both succeed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from storage.store import TranscriptStore

TURNS_PER_PROCESS = 200
ROOT = Path(__file__).resolve().parent.parent

# Each writer opens the store, says "ready", waits for "go" on stdin (so both
# start writing together), then commits its turns one transaction at a time:
# the most lock contention a recorder can cause.
WRITER = """
import asyncio, sys
from datetime import UTC, datetime
from storage.records import TurnRecord
from storage.store import TranscriptStore

async def main(url, channel, count):
    # Both writers find a new file and race to create the schema, as two
    # recorders do on first use of the default database.
    store = await TranscriptStore.open(url, auto_migrate=True)
    now = datetime.now(UTC)
    meeting = await store.start_meeting(channel, 1, now)
    session = await store.open_stream_session(meeting, 7, now)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for order in range(count):
        await store.upsert_turns([TurnRecord(
            meeting, 7, session, order, order * 10, order * 10 + 5, f"{channel} turn {order}"
        )])
        if order % 50 == 0:
            await store.add_note(meeting, "progress", str(order), created_at=now)
    await store.finish_meeting(meeting, datetime.now(UTC))
    await store.close()
    print("done", flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def _spawn(url: str, channel: str, cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        url,
        channel,
        str(TURNS_PER_PROCESS),
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_two_processes_write_one_sqlite_file(sqlite_url: str) -> None:
    writers = [await _spawn(sqlite_url, channel, ROOT) for channel in ("one", "two")]
    for writer in writers:
        assert writer.stdout is not None
        line = await asyncio.wait_for(writer.stdout.readline(), 60)
        assert line == b"ready\n", (await writer.stderr.read()).decode()  # type: ignore[union-attr]
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write(b"go\n")
        await writer.stdin.drain()
    results = await asyncio.wait_for(asyncio.gather(*(w.communicate() for w in writers)), 120)
    for writer, (stdout, stderr) in zip(writers, results, strict=True):
        assert writer.returncode == 0, stderr.decode()
        assert stdout == b"done\n" and b"locked" not in stderr, stderr.decode()

    async with await TranscriptStore.open(sqlite_url) as store:
        meetings = await store.list_meetings()
        assert sorted(m.channel for m in meetings) == ["one", "two"]
        assert all(m.turn_count == TURNS_PER_PROCESS for m in meetings)
        assert all(m.status == "completed" for m in meetings)
        hits = await store.search("turn", limit=1000)
        assert len(hits) == 2 * TURNS_PER_PROCESS
