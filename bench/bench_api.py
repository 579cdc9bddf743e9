"""The HTTP service under load: transcript downloads and 200 live SSE clients.

``recorder serve`` runs in its own process on a scratch PostgreSQL schema
(``RECORDER_BENCH_POSTGRES_URL``, else ``RECORDER_TEST_POSTGRES_URL``); this
process is the clients. Prints:

* ``GET /v1/meetings/{id}/transcript?format=json`` on a 10,000-turn meeting:
  requests per second (4 at a time), p50 and p99 latency, response size;
* 200 SSE clients on one live meeting while a recorder commits turns one at a
  time: events delivered per second (all clients together) and the delay from
  each commit returning to each client receiving its event (p50, p99, max).

Run: ``PYTHONPATH=. python bench/bench_api.py``. Both sides share the machine's
cores, so the figures are a floor for a dedicated server.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from storage.db import create_engine, upgrade_database  # noqa: E402
from storage.records import TurnRecord, Word  # noqa: E402
from storage.store import TranscriptStore  # noqa: E402
from storage.tokens import create_token  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TURNS = int(os.environ.get("BENCH_TURNS", "10000"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "40"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "200"))
LIVE_TURNS = int(os.environ.get("BENCH_LIVE_TURNS", "100"))
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
_DRAINS: set[asyncio.Task[bytes]] = set()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def seed(url: str) -> tuple[int, int, int]:
    """A finished meeting of TURNS turns, and a live one; returns their ids and a session."""
    store = await TranscriptStore.open(url)
    try:
        big = await store.start_meeting("bench", 1, START)
        sessions = [await store.open_stream_session(big, uid, START) for uid in (1, 2, 3, 4)]
        batch = []
        for n in range(TURNS):
            start_ms = n * 3000
            words = tuple(
                Word(f"word{k}", start_ms + k * 200, start_ms + k * 200 + 150, 0.9)
                for k in range(12)
            )
            batch.append(
                TurnRecord(
                    meeting_id=big,
                    uid=1 + n % 4,
                    stream_session_id=sessions[n % 4],
                    turn_order=n,
                    start_ms=start_ms,
                    end_ms=start_ms + 2500,
                    text=" ".join(w.text for w in words),
                    words=words,
                )
            )
            if len(batch) == 500:
                await store.upsert_turns(batch)
                batch = []
        await store.upsert_turns(batch)
        await store.finish_meeting(big, START + timedelta(milliseconds=TURNS * 3000))
        live = await store.start_meeting("bench-live", 1, START)
        session = await store.open_stream_session(live, 7, START)
        return big, live, session
    finally:
        await store.close()


async def serve(url: str) -> tuple[asyncio.subprocess.Process, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RECORDER_DATABASE_URL": url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "recorder",
        "serve",
        "--port",
        "0",
        "--no-mcp",
        env=env,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert process.stderr is not None
    while True:
        line = await asyncio.wait_for(process.stderr.readline(), 60)
        if not line:
            raise SystemExit("recorder serve did not start")
        if match := re.search(rb"Uvicorn running on (http://\S+)", line):
            _DRAINS.add(asyncio.create_task(process.stderr.read()))  # keep draining its log
            return process, match.group(1).decode()


async def bench_transcript(client: httpx.AsyncClient, meeting_id: int) -> None:
    path = f"/v1/meetings/{meeting_id}/transcript?format=json"
    first = await client.get(path)
    first.raise_for_status()
    size = len(first.content)
    assert len(json.loads(first.content)["turns"]) == TURNS
    latencies: list[float] = []
    queue = list(range(REQUESTS))

    async def worker() -> None:
        while queue:
            queue.pop()
            began = time.perf_counter()
            response = await client.get(path)
            response.raise_for_status()
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(4)))
    elapsed = time.perf_counter() - began
    print(
        f"transcript json, {TURNS} turns ({size / 1e6:.1f} MB): {REQUESTS / elapsed:.1f} req/s "
        f"(4 concurrent), p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms"
    )


async def bench_sse(base: str, token: str, url: str, meeting_id: int, session: int) -> None:
    received: list[dict[int, float]] = [{} for _ in range(CLIENTS)]
    ready = asyncio.Semaphore(0)
    limits = httpx.Limits(max_connections=CLIENTS + 10, max_keepalive_connections=CLIENTS + 10)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=httpx.Timeout(120)
    ) as client:

        async def listen(index: int) -> None:
            async with client.stream("GET", f"/v1/meetings/{meeting_id}/events") as response:
                ready.release()
                turn_id = None
                async for line in response.aiter_lines():
                    if line.startswith("event: meeting.ended"):
                        return
                    if line.startswith("data: ") and '"turn.final"' in line:
                        turn_id = json.loads(line[6:])["start_ms"] // 1000
                        received[index][turn_id] = time.perf_counter()

        tasks = [asyncio.create_task(listen(i)) for i in range(CLIENTS)]
        for _ in range(CLIENTS):
            await asyncio.wait_for(ready.acquire(), 60)
        store = await TranscriptStore.open(url)
        committed: dict[int, float] = {}
        began = time.perf_counter()
        try:
            for n in range(LIVE_TURNS):
                await store.upsert_turns(
                    [
                        TurnRecord(
                            meeting_id=meeting_id,
                            uid=7,
                            stream_session_id=session,
                            turn_order=n,
                            start_ms=n * 1000,
                            end_ms=n * 1000 + 800,
                            text=f"live turn {n}",
                        )
                    ]
                )
                committed[n] = time.perf_counter()
                await asyncio.sleep(0.02)
            await store.finish_meeting(meeting_id, START + timedelta(seconds=LIVE_TURNS))
        finally:
            await store.close()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        elapsed = time.perf_counter() - began
    delays = [got[n] - committed[n] for got in received for n in got if n in committed]
    missing = CLIENTS * LIVE_TURNS - len(delays)
    print(
        f"SSE, {CLIENTS} clients, {LIVE_TURNS} turns committed one by one: "
        f"{len(delays) / elapsed:.0f} events/s delivered, commit-to-client "
        f"p50 {statistics.median(delays) * 1000:.0f} ms, "
        f"p99 {percentile(delays, 0.99) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms, "
        f"missing {missing}"
    )


async def main() -> None:
    base_url = os.environ.get("RECORDER_BENCH_POSTGRES_URL") or os.environ.get(
        "RECORDER_TEST_POSTGRES_URL"
    )
    if not base_url:
        raise SystemExit("set RECORDER_BENCH_POSTGRES_URL=postgresql+asyncpg://user@host/db")
    schema = f"bench_api_{secrets.token_hex(3)}"
    admin = create_engine(base_url)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = (
        make_url(base_url)
        .update_query_dict({"search_path": schema})
        .render_as_string(hide_password=False)
    )
    process = None
    try:
        await upgrade_database(url)
        engine = create_engine(url)
        try:
            _, token = await create_token(engine, "bench")
        finally:
            await engine.dispose()
        big, live, session = await seed(url)
        process, base = await serve(url)
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as client:
            await bench_transcript(client, big)
        await bench_sse(base, token, url, live, session)
    finally:
        if process is not None:
            process.terminate()
            await process.wait()
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())
