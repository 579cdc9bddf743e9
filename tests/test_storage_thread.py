"""A SQLite file's write batches run on the store's writing thread, one hop each."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest

from recorder.errors import NotFoundError
from storage.db import sqlite_path
from storage.records import TurnRecord
from storage.sqlite_thread import run_to_end
from storage.store import TranscriptStore

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


async def test_a_batch_runs_on_the_writing_thread_and_stores_everything(
    sqlite_url: str,
) -> None:
    store = await TranscriptStore.open(sqlite_url, auto_migrate=True)
    try:
        assert store.batches_in_thread
        meeting = await store.start_meeting("c", 1, T0)
        threads: list[str] = []

        async def batch() -> int:
            threads.append(threading.current_thread().name)
            await store.record_participant(meeting, 7, T0 + timedelta(seconds=1))
            session = await store.open_stream_session(meeting, 7, T0 + timedelta(seconds=1))
            await store.upsert_turns([TurnRecord(meeting, 7, session, 0, 0, 500, "hello there")])
            await store.close_stream_session(
                session, closed_at=T0 + timedelta(seconds=2), audio_seconds=1.0
            )
            return session

        session = await store.run_as_one(batch)
        assert threads and threads[0].startswith("sqlite-writes")
        assert threading.current_thread().name != threads[0]
        # Committed where every other connection sees it (here: the loop's aiosqlite).
        found = await store.get_meeting(meeting)
        assert [t.text for t in found.turns] == ["hello there"]
        assert [s.id for s in found.stream_sessions] == [session]
    finally:
        await store.close()


async def test_a_failing_batch_stores_nothing(sqlite_url: str) -> None:
    store = await TranscriptStore.open(sqlite_url, auto_migrate=True)
    try:
        meeting = await store.start_meeting("c", 1, T0)

        async def batch() -> None:
            await store.record_participant(meeting, 7, T0)
            await store.record_participant(meeting + 99, 8, T0)  # no such meeting

        with pytest.raises(NotFoundError):
            await store.run_as_one(batch)
        assert (await store.get_meeting(meeting)).participants == ()
    finally:
        await store.close()


async def test_a_batch_that_awaits_anything_else_fails_and_stores_nothing(
    sqlite_url: str,
) -> None:
    store = await TranscriptStore.open(sqlite_url, auto_migrate=True)
    try:
        meeting = await store.start_meeting("c", 1, T0)

        async def batch() -> None:
            await store.record_participant(meeting, 7, T0)
            await asyncio.sleep(0)  # would need the loop, which is not this thread's

        with pytest.raises(RuntimeError, match="awaited something besides"):
            await store.run_as_one(batch)
        assert (await store.get_meeting(meeting)).participants == ()
    finally:
        await store.close()


async def test_a_batch_waits_for_another_programs_write_lock(sqlite_url: str) -> None:
    store = await TranscriptStore.open(sqlite_url, auto_migrate=True)
    path = sqlite_path(store._url)
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    try:
        meeting = await store.start_meeting("c", 1, T0)
        other.execute("BEGIN IMMEDIATE")  # another program holds the write lock

        async def batch() -> None:
            await store.record_participant(meeting, 7, T0)

        stored = asyncio.ensure_future(store.run_as_one(batch))
        # The loop stays free (a read runs) while the writing thread waits for the lock.
        assert (await store.get_meeting(meeting)).participants == ()
        assert not stored.done()
        other.execute("COMMIT")
        await stored
        assert [p.uid for p in (await store.get_meeting(meeting)).participants] == [7]
    finally:
        other.close()
        await store.close()


def test_run_to_end_returns_what_a_coroutine_that_never_suspends_returns() -> None:
    async def answer() -> int:
        return 42

    assert run_to_end(answer()) == 42


async def test_an_in_memory_database_keeps_its_batches_on_the_loop() -> None:
    store = await TranscriptStore.open("sqlite+aiosqlite:///:memory:", auto_migrate=True)
    try:
        assert not store.batches_in_thread
    finally:
        await store.close()
