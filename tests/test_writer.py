from __future__ import annotations

import asyncio
from collections.abc import Sequence

from recorder.errors import StorageError
from recorder.writer import TranscriptWriter
from storage.records import TurnRecord


def record(order: int) -> TurnRecord:
    return TurnRecord(
        meeting_id=1,
        uid=7,
        stream_session_id=1,
        turn_order=order,
        start_ms=order,
        end_ms=order + 1,
        text=f"turn {order}",
    )


async def test_batches_and_flushes_everything() -> None:
    batches: list[list[int]] = []

    async def upsert(records: Sequence[TurnRecord]) -> None:
        await asyncio.sleep(0)
        batches.append([r.turn_order for r in records])

    writer = TranscriptWriter(upsert, max_batch=50, max_delay_s=0.05)
    task = asyncio.create_task(writer.run(), name="writer")
    for order in range(120):
        writer.put(record(order))
    await writer.flush()
    assert [o for batch in batches for o in batch] == list(range(120))
    assert len(batches) <= 4  # batched, not one commit per turn
    writer.close()
    await task
    assert writer.committed == 120


async def test_failed_commit_is_retried_not_lost() -> None:
    calls = 0
    stored: list[int] = []

    async def flaky(records: Sequence[TurnRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise StorageError("database is locked")
        stored.extend(r.turn_order for r in records)

    writer = TranscriptWriter(flaky, max_delay_s=0.01, retry_delay_s=0.01)
    task = asyncio.create_task(writer.run(), name="writer")
    writer.put(record(1))
    writer.put(record(2))
    writer.close()
    await asyncio.wait_for(task, 5)
    assert stored == [1, 2]
    assert writer.failures == 2


async def test_close_writes_the_tail_at_once() -> None:
    stored: list[int] = []

    async def upsert(records: Sequence[TurnRecord]) -> None:
        stored.extend(r.turn_order for r in records)

    writer = TranscriptWriter(upsert, max_delay_s=60)
    task = asyncio.create_task(writer.run(), name="writer")
    writer.put(record(5))
    await asyncio.sleep(0)
    writer.close()
    await asyncio.wait_for(task, 2)  # does not wait out the 60 s batching delay
    assert stored == [5]


async def test_flush_commits_at_once_instead_of_waiting_for_a_batch() -> None:
    stored: list[int] = []

    async def upsert(records: Sequence[TurnRecord]) -> None:
        stored.extend(r.turn_order for r in records)

    writer = TranscriptWriter(upsert, max_delay_s=60)
    task = asyncio.create_task(writer.run(), name="writer")
    writer.put(record(1))
    await asyncio.wait_for(writer.flush(), 2)  # not the 60 s batching delay
    assert stored == [1]
    writer.put(record(2))  # batching resumes after the flush
    # A negative check, so a bounded wait: nothing is committed in this window (nothing
    # can signal a commit that is never made).
    await asyncio.sleep(0.05)
    assert stored == [1]
    writer.close()
    await task
    assert stored == [1, 2]
