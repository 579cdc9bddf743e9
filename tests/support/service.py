"""Helpers for the service tests: seed meetings through the store, serve an app on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.records import TurnRecord
from storage.store import TranscriptStore
from tests.support.timing import TIMEOUT

__all__ = ["START", "add_turns", "seed_meeting", "serving"]

START = datetime(2026, 11, 20, 9, 0, 0, tzinfo=UTC)


async def add_turns(
    store: TranscriptStore,
    meeting_id: int,
    sessions: dict[int, int],
    turns: Sequence[tuple[int, int, int, str]],
    *,
    first_order: int = 0,
) -> None:
    """Store turns (uid, start_ms, end_ms, text), opening a stream session per new uid."""
    records = []
    for order, (uid, start_ms, end_ms, text) in enumerate(turns, start=first_order):
        if uid not in sessions:
            sessions[uid] = await store.open_stream_session(
                meeting_id, uid, START + timedelta(milliseconds=start_ms)
            )
        records.append(
            TurnRecord(
                meeting_id=meeting_id,
                uid=uid,
                stream_session_id=sessions[uid],
                turn_order=order,
                start_ms=start_ms,
                end_ms=end_ms,
                text=text,
            )
        )
    await store.upsert_turns(records)


async def seed_meeting(
    store: TranscriptStore,
    channel: str = "standup",
    turns: Sequence[tuple[int, int, int, str]] = (),
    *,
    names: dict[int, str] | None = None,
    started_at: datetime = START,
    finish: bool = True,
) -> int:
    """A meeting with these turns; finished (completed) unless ``finish`` is false."""
    meeting_id = await store.start_meeting(channel, 9999, started_at)
    for uid, name in (names or {}).items():
        await store.record_participant(meeting_id, uid, started_at, display_name=name)
    await add_turns(store, meeting_id, {}, turns)
    if finish:
        last = max((end for _, _, end, _ in turns), default=0)
        await store.finish_meeting(meeting_id, started_at + timedelta(milliseconds=last + 1000))
    return meeting_id


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in this loop; yields its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="uvicorn")
    try:
        async with asyncio.timeout(TIMEOUT * 4):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)  # uvicorn offers no started event to await
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT * 4)
