"""How many replayed 6-person meetings one ``recorder worker`` holds in real time (prints a table).

For N = 1, 2, 4, 8, ... one worker of capacity N gets N meetings at once, each six
participants talking over each other in real time (replay transport, speed 1), against
the streaming emulator in a process of its own and a PostgreSQL schema of its own.
Holding means every said word stored once; the table prints the words lost, and the
queue's overhead per job: enqueue to claim, and enqueue to the first audio sent (the
first STT socket of the meeting opening, on its first speech).

Needs PostgreSQL: RECORDER_BENCH_POSTGRES_URL or RECORDER_TEST_POSTGRES_URL, e.g.
postgresql+asyncpg://postgres@127.0.0.1:5432/test. Usage:
    python bench/bench_fleet.py [--min 1] [--max 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from storage.db import create_engine, upgrade_database  # noqa: E402
from tests.support.fleet import Fleet, expected, words_of  # noqa: E402
from tests.support.processes import Proc, clean_env, start  # noqa: E402


def six_person_meeting(index: int, seconds: float) -> dict[str, Any]:
    """Six participants, each saying a three-word sentence every 3 s, 0.5 s apart."""
    events: list[dict[str, Any]] = [{"at": 0.0, "uid": uid, "join": True} for uid in range(1, 7)]
    n = 0
    for uid in range(1, 7):
        at = (uid - 1) * 0.5
        while at < seconds - 2.5:
            words = " ".join(f"b{index}u{uid}w{n + k}" for k in range(3))
            events.append({"at": round(at, 2), "uid": uid, "say": words + "."})
            n += 3
            at += 3.0
    return {
        "channel": f"bench-{index}",
        "participants": [{"uid": uid, "name": f"P{uid}"} for uid in range(1, 7)],
        "events": events,
        "end": seconds,
    }


async def one_round(fleet: Fleet, count: int, seconds: float, first_index: int) -> None:
    import psycopg

    scripts = [six_person_meeting(first_index + i, seconds) for i in range(count)]
    worker = await fleet.add_worker(capacity=count, heartbeat_s=2.0, stall_s=10.0)
    ids = [await fleet.enqueue(script, empty_timeout_s=60.0) for script in scripts]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds * 4 + 60
    while True:
        rows = [r for r in await fleet.rows() if r["id"] in ids]
        unfinished = [r for r in rows if r["status"] not in ("done", "failed")]
        if not unfinished or loop.time() > deadline:
            break
        await asyncio.sleep(1.0)
    if unfinished:
        states = Counter(
            (r["status"], r["lease_expires"] is not None and r["lease_expires"] > r["now"])
            for r in unfinished
        )
        print(
            f"{count:3d} meetings: {len(unfinished)} not finished after "
            f"{seconds * 4 + 60:.0f} s ((status, lease live): {dict(states)}); stopping",
            flush=True,
        )
        worker.process.terminate()
        await worker.process.wait()
        fleet.workers.remove(worker)
        raise SystemExit(1)
    said = lost = 0
    claims, first_audio = [], []
    async with await psycopg.AsyncConnection.connect(fleet.conninfo, autocommit=True) as db:
        for row, script in zip(rows, scripts, strict=True):
            words, _ = await words_of(fleet.db_url, row["meeting_id"])
            want = {word.text for word in expected(script)}
            said += len(want)
            lost += len(want - set(words))
            claims.append((row["started_at"] - row["created_at"]).total_seconds())
            cursor = await db.execute(
                "SELECT min(opened_at) FROM stream_sessions WHERE meeting_id = %s",
                (row["meeting_id"],),
            )
            (opened,) = await cursor.fetchone() or (None,)
            if opened is not None:
                first_audio.append((opened - row["created_at"]).total_seconds())
    failed = sum(1 for r in rows if r["status"] != "done")
    print(
        f"{count:3d} meetings ({6 * count:3d} participants): words lost {lost:4d}/{said:5d} "
        f"({100 * lost / max(said, 1):5.2f}%), failed {failed}; enqueue->claim median "
        f"{statistics.median(claims) * 1000:6.0f} ms, enqueue->first audio median "
        f"{statistics.median(first_audio or [0.0]) * 1000:6.0f} ms",
        flush=True,
    )
    worker.process.terminate()
    await worker.process.wait()
    fleet.workers.remove(worker)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=int, default=1, help="smallest number of meetings")
    parser.add_argument("--max", type=int, default=16, help="largest number of meetings")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each meeting")
    args = parser.parse_args()
    base = os.environ.get("RECORDER_BENCH_POSTGRES_URL") or os.environ.get(
        "RECORDER_TEST_POSTGRES_URL"
    )
    if not base:
        print("skipped: the fleet needs PostgreSQL; set RECORDER_BENCH_POSTGRES_URL")
        return
    schema = f"bench_fleet_{secrets.token_hex(3)}"
    admin = create_engine(base)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = (
        make_url(base)
        .update_query_dict({"search_path": schema})
        .render_as_string(hide_password=False)
    )
    spawned: list[Proc] = []
    try:
        await upgrade_database(url)
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            emulator = await start(tmp, "emulate", "--port=0", env=clean_env(tmp), name="emu")
            spawned.append(emulator)
            line = await emulator.wait_line("streaming:", 30)
            stt_url = line.split(": ", 1)[1]
            env = clean_env(tmp, ASSEMBLYAI_API_KEY="bench", RECORDER_STT_URL=stt_url)
            from recorder.fleet.connect import fleet_database

            # The fleet's workers join the list as they start, so a failed round ends them too.
            fleet = Fleet(tmp, url, stt_url, spawned, fleet_database(url).conninfo, env)
            print(f"one worker, {os.cpu_count()} cores, meetings of {args.seconds:.0f} s")
            count, index = args.min, 0
            while count <= args.max:
                await one_round(fleet, count, args.seconds, index)
                index += count
                count *= 2
    finally:
        for proc in spawned:
            if proc.process.returncode is None:
                proc.process.kill()
                await proc.process.wait()
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())
