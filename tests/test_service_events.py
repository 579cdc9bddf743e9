"""Live events over SSE: every event once, in order, resumable, carried by LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from recorder.service.app import create_app
from storage.db import create_engine, upgrade_database
from storage.store import TranscriptStore
from storage.tokens import create_token
from tests.support.service import START, add_turns, seed_meeting, serving
from tests.support.timing import TIMEOUT

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Live:
    client: httpx.AsyncClient
    url: str
    store: TranscriptStore
    app: Any


@pytest.fixture
async def live(postgres_url: str) -> AsyncIterator[Live]:
    await upgrade_database(postgres_url)
    engine = create_engine(postgres_url)
    try:
        _, token = await create_token(engine, "tests")
    finally:
        await engine.dispose()
    store = await TranscriptStore.open(postgres_url)
    # A poll far longer than any wait below: events must arrive through NOTIFY.
    app = create_app(postgres_url, poll_s=3600, mcp=False)
    try:
        async with serving(app) as base_url:
            async with httpx.AsyncClient(
                base_url=base_url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=httpx.Timeout(TIMEOUT * 4),
            ) as client:
                yield Live(client, postgres_url, store, app)
    finally:
        await store.close()


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parse a text/event-stream into {id, event, data} dicts (comments skipped)."""
    block: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in block:
                yield {"id": int(block["id"]), "event": block["event"], **json.loads(block["data"])}
            block = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            block[name] = value.removeprefix(" ")


class Reader:
    """Collects a stream's events in a task; ``wait_for(n)`` waits until n arrived."""

    def __init__(self, client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
        self.events: list[dict[str, Any]] = []
        self.status: int | None = None
        self._changed = asyncio.Condition()
        self._opened = asyncio.Event()
        self.task = asyncio.create_task(self._run(client, path, headers))

    async def _run(self, client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
        async with client.stream("GET", path, headers=headers) as response:
            self.status = response.status_code
            self._opened.set()
            async for event in sse_events(response):
                async with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
        self._opened.set()

    async def opened(self) -> None:
        await asyncio.wait_for(self._opened.wait(), TIMEOUT)

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.events) >= count), TIMEOUT * 2
            )
        return list(self.events)

    async def finished(self) -> list[dict[str, Any]]:
        await asyncio.wait_for(self.task, TIMEOUT * 2)
        return list(self.events)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def stored_events(url: str, meeting_id: int) -> list[tuple[int, str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT id, kind FROM meeting_events WHERE meeting_id = :m ORDER BY id"),
                {"m": meeting_id},
            )
            return [(row.id, row.kind) for row in rows]
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_live_meeting_streams_every_event_once_then_ends(live: Live) -> None:
    store = live.store
    meeting_id = await seed_meeting(store, finish=False)
    reader = Reader(live.client, f"/v1/meetings/{meeting_id}/events", {})
    await reader.opened()
    assert reader.status == 200
    (started,) = await reader.wait_for(1)
    assert started["event"] == "meeting.started" and started["channel"] == "standup"
    await store.record_participant(meeting_id, 101, START, "Alice", presence="joined")
    sessions: dict[int, int] = {}
    script = [(101, 0, 900, "first words"), (102, 1000, 1900, "a reply <b>bold</b>")]
    await add_turns(store, meeting_id, sessions, script[:1])
    events = await reader.wait_for(3)
    assert [e["event"] for e in events[1:]] == ["participant.joined", "turn.final"]
    assert events[2]["text"] == "first words" and events[2]["speaker"] == "Alice"
    await add_turns(store, meeting_id, sessions, script[1:], first_order=1)
    # The formatted final replacing turn 0: an update, not a second final.
    await add_turns(store, meeting_id, sessions, [(101, 0, 900, "First words.")])
    await store.record_participant(meeting_id, 101, START + timedelta(seconds=3), presence="left")
    await store.finish_meeting(meeting_id, START + timedelta(seconds=4))
    events = await reader.finished()
    kinds = [e["event"] for e in events]
    assert kinds == [
        "meeting.started",
        "participant.joined",
        "turn.final",
        "turn.final",
        "turn.updated",
        "participant.left",
        "meeting.ended",
    ]
    finals = [
        (e["uid"], e["start_ms"], e["end_ms"], e["text"])
        for e in events
        if e["event"] == "turn.final"
    ]
    assert finals == script
    assert events[4]["text"] == "First words." and events[4]["turn_id"] == events[2]["turn_id"]
    assert events[-1]["status"] == "completed"
    assert [e["id"] for e in events] == [i for i, _ in await stored_events(live.url, meeting_id)]


@pytest.mark.postgres
async def test_resuming_with_last_event_id_loses_and_repeats_nothing(live: Live) -> None:
    store = live.store
    meeting_id = await seed_meeting(store, finish=False)
    sessions: dict[int, int] = {}
    path = f"/v1/meetings/{meeting_id}/events"
    first = Reader(live.client, path, {})
    await add_turns(
        store, meeting_id, sessions, [(101, i * 100, i * 100 + 50, f"t{i}") for i in range(5)]
    )
    seen = await first.wait_for(6)
    await first.stop()
    # Written while nobody listens.
    await add_turns(
        store,
        meeting_id,
        sessions,
        [(101, i * 100, i * 100 + 50, f"t{i}") for i in range(5, 9)],
        first_order=5,
    )
    resumed = Reader(live.client, path, {"Last-Event-ID": str(seen[2]["id"])})
    await resumed.wait_for(6 - 3 + 4)
    await add_turns(store, meeting_id, sessions, [(102, 2000, 2100, "late")], first_order=9)
    await store.finish_meeting(meeting_id, START + timedelta(seconds=5))
    rest = await resumed.finished()
    ids = [e["id"] for e in seen[:3]] + [e["id"] for e in rest]
    assert ids == [i for i, _ in await stored_events(live.url, meeting_id)]
    texts = [e["text"] for e in seen[:3] + rest if e["event"] == "turn.final"]
    assert texts == [f"t{i}" for i in range(9)] + ["late"]
    # Nothing follows the end: 204 tells an EventSource to stop reconnecting.
    over = await live.client.get(path, headers={"Last-Event-ID": str(rest[-1]["id"])})
    assert over.status_code == 204
    replay = await live.client.get(path)
    assert [
        json.loads(line[6:])["id"] for line in replay.text.splitlines() if line.startswith("data: ")
    ] == ids


@pytest.mark.postgres
async def test_concurrent_writers_reach_every_reader_in_id_order(live: Live) -> None:
    store = live.store
    meeting_id = await seed_meeting(store, finish=False)
    path = f"/v1/meetings/{meeting_id}/events"
    readers = [Reader(live.client, path, {}) for _ in range(5)]
    for reader in readers:
        await reader.wait_for(1)
    stores = [await TranscriptStore.open(live.url) for _ in range(4)]
    try:

        async def writer(n: int, writer_store: TranscriptStore) -> None:
            uid = 200 + n
            sessions: dict[int, int] = {}
            for k in range(10):
                await add_turns(
                    writer_store,
                    meeting_id,
                    sessions,
                    [(uid, k * 10, k * 10 + 5, f"{uid}-{k}")],
                    first_order=k,
                )
                await writer_store.record_participant(meeting_id, uid, START, presence="joined")

        await asyncio.gather(*(writer(n, s) for n, s in enumerate(stores)))
    finally:
        for opened in stores:
            await opened.close()
    await store.finish_meeting(meeting_id, START + timedelta(seconds=5))
    expected = [i for i, _ in await stored_events(live.url, meeting_id)]
    assert len(expected) == 1 + 4 * 20 + 1
    for reader in readers:
        assert [e["id"] for e in await reader.finished()] == expected


@pytest.mark.postgres
async def test_events_from_another_process_arrive_through_notify(live: Live) -> None:
    meeting_id = await seed_meeting(live.store, finish=False)
    reader = Reader(live.client, f"/v1/meetings/{meeting_id}/events", {})
    await reader.wait_for(1)
    code = (
        "import asyncio, sys\n"
        "from datetime import timedelta\n"
        "from storage.store import TranscriptStore\n"
        "from tests.support.service import START, add_turns\n"
        "async def main():\n"
        "    store = await TranscriptStore.open(sys.argv[1])\n"
        "    await add_turns(store, int(sys.argv[2]), {}, [(7, 0, 500, 'from afar')])\n"
        "    await store.finish_meeting(int(sys.argv[2]), START + timedelta(seconds=1))\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        live.url,
        str(meeting_id),
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT * 4)
    assert process.returncode == 0, stderr.decode()
    events = await reader.finished()
    assert [e["event"] for e in events] == ["meeting.started", "turn.final", "meeting.ended"]
    assert events[1]["text"] == "from afar"


async def test_sqlite_writes_no_events(sqlite_url: str) -> None:
    await upgrade_database(sqlite_url)
    store = await TranscriptStore.open(sqlite_url)
    try:
        meeting_id = await seed_meeting(store, turns=[(1, 0, 10, "x")])
        assert await stored_events(sqlite_url, meeting_id) == []
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_lost_listener_reconnects_and_nothing_is_missed(live: Live) -> None:
    store = live.store
    meeting_id = await seed_meeting(store, finish=False)
    reader = Reader(live.client, f"/v1/meetings/{meeting_id}/events", {})
    await reader.wait_for(1)
    hub = live.app.state.service.hub
    lost_pid = hub.listener_pid
    engine = create_engine(live.url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lost_pid})
    finally:
        await engine.dispose()
    # Committed while the hub may still be reconnecting: read when it is back.
    await add_turns(store, meeting_id, {}, [(3, 0, 500, "while reconnecting")])
    events = await reader.wait_for(2)
    assert events[1]["text"] == "while reconnecting"
    assert hub.listener_pid != lost_pid
    await store.finish_meeting(meeting_id, START + timedelta(seconds=1))
    assert [e["event"] for e in await reader.finished()] == [
        "meeting.started",
        "turn.final",
        "meeting.ended",
    ]
