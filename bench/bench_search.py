"""Search speed over a large transcript database (target: under 100 ms per query).

Fills a SQLite file with generated turns (default 1,000,000; words drawn from
a fixed vocabulary with a Zipf-like distribution, so some words are in a large
share of all turns), then times ``TranscriptStore.search`` for a mix of rare,
common, phrase, prefix and filtered queries and prints milliseconds per query.
With RECORDER_TEST_POSTGRES_URL set, does the same on PostgreSQL in a schema
of its own (dropped afterwards).

    .venv/bin/python bench/bench_search.py [--turns N] [--keep PATH] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.db import create_engine, upgrade_database  # noqa: E402
from storage.store import TranscriptStore  # noqa: E402

TARGET_MS = 100.0
MEETINGS = 200
UIDS = (101, 202, 303, 404, 505)
BATCH = 50_000
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

_SYLLABLES = "ka lo mi ne ra to su vi pe da fu gri sho blan ter mon zel qua dri op".split()
# Real words planted at known rates, so the queries have known selectivity.
PLANTED = {"budget": 0.01, "roadmap": 0.001, "kubernetes": 0.0001, "quarterly": 0.005}
QUERIES = [
    ("rare word", "kubernetes", {}),
    ("uncommon word", "roadmap", {}),
    ("1% word", "budget", {}),
    ("frequent pseudo-word", "kalo", {}),
    ("two words", "budget quarterly", {}),
    ("phrase", '"quarterly budget"', {}),
    ("prefix", "budg*", {}),
    ("hostile syntax", 'NEAR(budget "x* AND -:', {}),
    ("channel filter", "budget", {"channel": "channel-7"}),
    ("speaker filter", "budget", {"speaker": "303"}),
]


def vocabulary() -> list[str]:
    words = ["".join(p) for p in itertools.product(_SYLLABLES, repeat=2)]
    words += ["".join(p) for p in itertools.product(_SYLLABLES[:12], repeat=3)]
    return words


def generate_texts(count: int, seed: int = 7) -> Iterator[str]:
    rng = random.Random(seed)
    words = vocabulary()
    # Zipf-like weights: the first words are very common.
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    cumulative = list(itertools.accumulate(weights))
    for _ in range(count):
        n = rng.randint(6, 30)
        turn = rng.choices(words, cum_weights=cumulative, k=n)
        for word, rate in PLANTED.items():
            if rng.random() < rate:
                turn.insert(rng.randrange(len(turn) + 1), word)
        if "quarterly" in turn and rng.random() < 0.5:
            turn.insert(turn.index("quarterly") + 1, "budget")
        yield " ".join(turn)


def turn_rows(count: int) -> Iterator[tuple[int, int, int, int, int, int, str]]:
    """(meeting_id, participant_id, stream_session_id, turn_order, start_ms, end_ms, text)."""
    per_meeting = max(1, count // MEETINGS)
    texts = generate_texts(count)
    for index, text in enumerate(texts):
        meeting = index // per_meeting % MEETINGS + 1
        slot = index % len(UIDS)
        participant = (meeting - 1) * len(UIDS) + slot + 1
        order = index // len(UIDS)
        start = (index % per_meeting) * 1500
        yield (meeting, participant, participant, order, start, start + 1400, text)


def fill_sqlite(path: Path, count: int) -> float:
    started = time.perf_counter()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = OFF")
    with connection:
        connection.executemany(
            "INSERT INTO meetings (id, channel, started_at, status, bot_uid) "
            "VALUES (?, ?, ?, 'completed', 9999)",
            [
                (m, f"channel-{m % 10}", (T0 + timedelta(hours=m)).strftime("%Y-%m-%d %H:%M:%S"))
                for m in range(1, MEETINGS + 1)
            ],
        )
        people = [
            ((m - 1) * len(UIDS) + i + 1, m, uid)
            for m in range(1, MEETINGS + 1)
            for i, uid in enumerate(UIDS)
        ]
        connection.executemany(
            "INSERT INTO participants (id, meeting_id, uid, first_seen, last_seen) "
            "VALUES (?, ?, ?, '2026-01-01 09:00:00', '2026-01-01 09:00:00')",
            people,
        )
        connection.executemany(
            "INSERT INTO stream_sessions (id, meeting_id, participant_id, opened_at, "
            "audio_seconds) VALUES (?, ?, ?, '2026-01-01 09:00:00', 0)",
            [(pid, m, pid) for pid, m, _ in people],
        )
    rows = turn_rows(count)
    while batch := list(itertools.islice(rows, BATCH)):
        with connection:
            connection.executemany(
                "INSERT INTO turns (meeting_id, participant_id, stream_session_id, turn_order, "
                "start_ms, end_ms, text, words) VALUES (?, ?, ?, ?, ?, ?, ?, '[]')",
                batch,
            )
    connection.execute("INSERT INTO turns_fts(turns_fts) VALUES ('optimize')")
    connection.commit()
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return time.perf_counter() - started


async def fill_postgres(url: str, count: int) -> float:
    from sqlalchemy.engine import make_url

    started = time.perf_counter()
    engine = create_engine(url)
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(
            "meetings",
            records=[
                (m, f"channel-{m % 10}", T0 + timedelta(hours=m), "completed", 9999)
                for m in range(1, MEETINGS + 1)
            ],
            columns=["id", "channel", "started_at", "status", "bot_uid"],
            schema_name=make_url(url).query["search_path"],
        )
        people = [
            ((m - 1) * len(UIDS) + i + 1, m, uid, T0, T0)
            for m in range(1, MEETINGS + 1)
            for i, uid in enumerate(UIDS)
        ]
        schema = make_url(url).query["search_path"]
        await driver.copy_records_to_table(
            "participants",
            records=people,
            columns=["id", "meeting_id", "uid", "first_seen", "last_seen"],
            schema_name=schema,
        )
        await driver.copy_records_to_table(
            "stream_sessions",
            records=[(p[0], p[1], p[0], T0, 0.0) for p in people],
            columns=["id", "meeting_id", "participant_id", "opened_at", "audio_seconds"],
            schema_name=schema,
        )
        rows = turn_rows(count)
        empty = json.dumps([])
        while batch := list(itertools.islice(rows, BATCH)):
            await driver.copy_records_to_table(
                "turns",
                records=[(*row, empty) for row in batch],
                columns=[
                    "meeting_id",
                    "participant_id",
                    "stream_session_id",
                    "turn_order",
                    "start_ms",
                    "end_ms",
                    "text",
                    "words",
                ],
                schema_name=schema,
            )
        await driver.execute("ANALYZE")
    await engine.dispose()
    return time.perf_counter() - started


async def time_queries(url: str, repeat: int) -> list[tuple[str, str, float, int]]:
    results = []
    async with await TranscriptStore.open(url) as store:
        await store.search("warm up the cache")
        for label, query, filters in QUERIES:
            timings = []
            hits = []
            for _ in range(repeat):
                started = time.perf_counter()
                hits = await store.search(query, **filters)  # type: ignore[arg-type]
                timings.append((time.perf_counter() - started) * 1000)
            results.append((label, query, statistics.median(timings), len(hits)))
    return results


def report(
    name: str, fill_s: float, count: int, results: list[tuple[str, str, float, int]]
) -> bool:
    print(f"\n{name}: {count:,} turns, filled in {fill_s:.1f} s")
    print(f"  {'query':<22} {'text':<28} {'ms/query':>9} {'hits':>5}")
    ok = True
    for label, query, ms, hits in results:
        flag = "" if ms < TARGET_MS else "  over target"
        ok = ok and ms < TARGET_MS
        print(f"  {label:<22} {query[:28]:<28} {ms:>9.1f} {hits:>5}{flag}")
    worst = max(ms for _, _, ms, _ in results)
    print(f"  worst {worst:.1f} ms per query (target < {TARGET_MS:.0f} ms)")
    return ok


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="reuse or keep the SQLite file at this path")
    args = parser.parse_args()

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.db"
        url = f"sqlite+aiosqlite:///{path}"
        if path.exists():
            fill_s = 0.0
        else:
            await upgrade_database(url)
            fill_s = fill_sqlite(path, args.turns)
        size_mb = path.stat().st_size / 1e6
        results = await time_queries(url, args.repeat)
        ok = report(f"SQLite FTS5 ({size_mb:.0f} MB)", fill_s, args.turns, results) and ok

    base = os.environ.get("RECORDER_TEST_POSTGRES_URL")
    if base:
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        schema = f"recorder_bench_{secrets.token_hex(3)}"
        admin = create_engine(base)
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = (
            make_url(base)
            .update_query_dict({"search_path": schema})
            .render_as_string(hide_password=False)
        )
        try:
            await upgrade_database(url)
            fill_s = await fill_postgres(url, args.turns)
            results = await time_queries(url, args.repeat)
            ok = report("PostgreSQL tsvector + GIN", fill_s, args.turns, results) and ok
        finally:
            async with admin.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await admin.dispose()
    else:
        print("\nPostgreSQL: skipped (set RECORDER_TEST_POSTGRES_URL to include it)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
