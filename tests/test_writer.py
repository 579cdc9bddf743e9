from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recorder.errors import NotFoundError, StorageError
from recorder.journal import read_entries
from recorder.persist import DatabaseGuard, Write, gap_write
from recorder.writer import TranscriptWriter
from storage.records import TurnRecord
from tests.support.timing import TIMEOUT


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


class FakeDatabase:
    """Stores writes in a list; ``away`` makes every write fail as an unreachable server."""

    def __init__(self) -> None:
        self.batches: list[list[Write]] = []
        self.is_away = False
        self.fail_for_good: set[int] = set()  # turn orders that can never be stored
        self.tried = asyncio.Event()
        self.fresh: list[bool] = []  # per attempt: whether the writer said it was fresh
        self.attempts: list[tuple[bool, list[str]]] = []  # (fresh, the writes' ops)

    async def apply(self, writes: Sequence[Write], *, fresh: bool = False) -> None:
        await asyncio.sleep(0)
        self.fresh.append(fresh)
        self.attempts.append((fresh, [w["op"] for w in writes]))
        self.tried.set()
        if self.is_away:
            raise StorageError("cannot connect to the database")
        if any(
            w["op"] == "turn" and w["record"]["turn_order"] in self.fail_for_good for w in writes
        ):
            raise NotFoundError("no stream session with id 1")
        self.batches.append(list(writes))

    def resolve(self, write: Write) -> Write:
        return write

    @property
    def orders(self) -> list[int]:
        return [w["record"]["turn_order"] for b in self.batches for w in b if w["op"] == "turn"]


def start(writer: TranscriptWriter) -> asyncio.Task[None]:
    return asyncio.create_task(writer.run(), name="writer")


async def test_batches_and_flushes_everything() -> None:
    db = FakeDatabase()
    writer = TranscriptWriter(db, max_batch=50, max_delay_s=0.05)
    task = start(writer)
    for order in range(120):
        writer.put(record(order))
    await writer.flush()
    assert db.orders == list(range(120))
    assert len(db.batches) <= 4  # batched, not one commit per turn
    writer.close()
    await task
    assert writer.committed == 120


async def test_failed_commit_is_retried_not_lost() -> None:
    db = FakeDatabase()
    db.is_away = True
    said: list[str] = []
    writer = TranscriptWriter(
        db, guard=DatabaseGuard(said.append), max_delay_s=0.01, retry_delay_s=0.01
    )
    task = start(writer)
    writer.put(record(1))
    writer.put(record(2))
    await asyncio.wait_for(db.tried.wait(), TIMEOUT)
    db.is_away = False
    writer.close()
    await asyncio.wait_for(task, TIMEOUT)
    assert db.orders == [1, 2]
    assert writer.failures >= 1
    assert [line[:24] for line in said] == ["! the database is unreac", "+ the database is back; "]


async def test_only_a_first_attempt_is_fresh_a_retry_may_find_its_rows() -> None:
    db = FakeDatabase()
    db.is_away = True
    writer = TranscriptWriter(db, max_delay_s=0.01, retry_delay_s=0.01)
    task = start(writer)
    writer.put(record(1))
    await asyncio.wait_for(db.tried.wait(), TIMEOUT)
    db.is_away = False
    await writer.flush()
    writer.put(record(2))
    await writer.flush()
    writer.close()
    await asyncio.wait_for(task, TIMEOUT)
    assert db.orders == [1, 2]
    # The failed first try was fresh, its retries not; the next new write is fresh again.
    assert db.fresh[0] is True and db.fresh[-1] is True
    assert db.fresh[1:-1] and not any(db.fresh[1:-1])


async def test_journaled_writes_are_never_fresh(tmp_path: Path) -> None:
    db = FakeDatabase()
    db.is_away = True
    writer = TranscriptWriter(
        db, journal_path=tmp_path / "j.jsonl", max_delay_s=0.01, retry_delay_s=0.01
    )
    writer.put(record(1))
    writer.put(record(2))
    task = start(writer)
    await asyncio.wait_for(db.tried.wait(), TIMEOUT)
    db.is_away = False
    writer.close()
    await asyncio.wait_for(task, TIMEOUT)
    assert db.orders == [1, 2] and writer.journaled == 2
    # Tried once, then journaled: every later try (the replay) may find its rows.
    with_turns = [fresh for fresh, ops in db.attempts if "turn" in ops]
    assert with_turns[0] is True and len(with_turns) >= 2 and not any(with_turns[1:])


async def test_a_write_that_can_never_be_stored_is_dropped_and_the_rest_kept() -> None:
    db = FakeDatabase()
    db.fail_for_good = {2}
    writer = TranscriptWriter(db, max_delay_s=0.01)
    task = start(writer)
    for order in (1, 2, 3):
        writer.put(record(order))
    writer.close()
    await asyncio.wait_for(task, TIMEOUT)
    assert db.orders == [1, 3] and writer.dropped == 1


async def test_close_writes_the_tail_at_once() -> None:
    db = FakeDatabase()
    writer = TranscriptWriter(db, max_delay_s=60)
    task = start(writer)
    writer.put(record(5))
    await asyncio.sleep(0)
    writer.close()
    await asyncio.wait_for(task, TIMEOUT)  # does not wait out the 60 s batching delay
    assert db.orders == [5]


async def test_flush_commits_at_once_instead_of_waiting_for_a_batch() -> None:
    db = FakeDatabase()
    writer = TranscriptWriter(db, max_delay_s=60)
    task = start(writer)
    writer.put(record(1))
    await asyncio.wait_for(writer.flush(), TIMEOUT)  # not the 60 s batching delay
    assert db.orders == [1]
    writer.put(record(2))  # batching resumes after the flush
    # A negative check, so a bounded wait: nothing is committed in this window (nothing
    # can signal a commit that is never made).
    await asyncio.sleep(0.05)
    assert db.orders == [1]
    writer.close()
    await task
    assert db.orders == [1, 2]


async def test_while_away_writes_go_to_the_journal_and_memory_stays_bounded(
    tmp_path: Path,
) -> None:
    db = FakeDatabase()
    db.is_away = True
    path = tmp_path / "journals" / "meeting-1.jsonl"
    writer = TranscriptWriter(
        db,
        journal_path=path,
        max_batch=20,
        max_delay_s=0.01,
        retry_delay_s=0.01,
        max_retry_delay_s=0.05,
        memory_limit=50,
    )
    task = start(writer)
    turns = 2000
    for order in range(turns):
        writer.put(record(order))
        if order == 300:
            writer.submit(gap_write(1, 7, 10, 20, "service unreachable"))
        await asyncio.sleep(0.001)  # turns arrive over time (far faster than in a meeting)
    # Everything reaches the disk (a failed retry spills what is held, before the next
    # retry): a recorder killed then loses nothing.
    for _ in range(2):
        db.tried.clear()
        await asyncio.wait_for(db.tried.wait(), TIMEOUT)
    assert writer.pending == 0 and writer.is_journaling
    entries, _ = read_entries(path)
    assert entries[0]["op"] == "journal"
    assert sum(e["op"] == "turn" for e in entries) == turns
    # The bound, plus what arrives while one spill is being written and fsync'd (a slow
    # disk or a loaded machine lengthens that): far below everything that arrived.
    assert writer.most_held <= 400
    db.is_away = False
    writer.close()
    await asyncio.wait_for(task, TIMEOUT)
    assert db.orders == list(range(turns))  # in order, each once
    ops = [w["op"] for b in db.batches for w in b]
    assert ops.index("gap") == 301
    assert not path.exists() and not writer.is_journaling


async def test_a_writer_stopped_while_away_keeps_its_journal(tmp_path: Path) -> None:
    db = FakeDatabase()
    db.is_away = True
    path = tmp_path / "meeting-1.jsonl"
    writer = TranscriptWriter(db, journal_path=path, max_delay_s=0.01, retry_delay_s=0.01)
    task = start(writer)
    for order in range(10):
        writer.put(record(order))
    await asyncio.wait_for(db.tried.wait(), TIMEOUT)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    entries, _ = read_entries(path)
    assert [e["record"]["turn_order"] for e in entries if e["op"] == "turn"] == list(range(10))


async def test_a_full_journal_is_said_and_the_writes_held_in_memory(tmp_path: Path) -> None:
    db = FakeDatabase()
    db.is_away = True
    said: list[str] = []
    writer = TranscriptWriter(
        db,
        guard=DatabaseGuard(said.append),
        journal_path=tmp_path / "j.jsonl",
        journal_max_bytes=1000,
        max_delay_s=0.01,
        retry_delay_s=0.01,
        memory_limit=5,
    )
    task = start(writer)
    for order in range(40):
        writer.put(record(order))
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert writer.journal_failure is not None
    assert sum("journal" in line and "full" in line for line in said) == 1, said
    db.is_away = False
    writer.close()
    await asyncio.wait_for(task, TIMEOUT)
    assert db.orders == list(range(40))


class SlowDatabase(FakeDatabase):
    """A database that does not answer (a lock held elsewhere, a hung connection) until told."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()
        self.fails_once = False

    async def apply(self, writes: Sequence[Write], *, fresh: bool = False) -> None:
        self.tried.set()
        await self.answer.wait()
        if self.fails_once:
            self.fails_once = False
            raise StorageError("database is locked")
        await super().apply(writes)


@pytest.mark.parametrize("then", ["answers", "fails", "stops"])
async def test_writes_made_while_a_commit_hangs_are_journaled_and_kept_in_order(
    tmp_path: Path, then: str
) -> None:
    db = SlowDatabase()
    db.fails_once = then == "fails"
    path = tmp_path / "meeting-1.jsonl"
    writer = TranscriptWriter(
        db, journal_path=path, max_batch=10, max_delay_s=0.01, retry_delay_s=0.01, memory_limit=20
    )
    task = start(writer)
    for order in range(10):
        writer.put(record(order))
    await asyncio.wait_for(db.tried.wait(), TIMEOUT)  # the first ten are in flight
    for order in range(10, 100):
        writer.put(record(order))
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    # Held in memory: the batch in flight, and less than the bound of what came after.
    assert writer.pending <= 10 + 20 and writer.is_journaling
    if then == "stops":
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        entries, _ = read_entries(path)
        orders = [e["record"]["turn_order"] for e in entries if e["op"] == "turn"]
        assert orders == list(range(100))  # the batch in flight first
        return
    db.answer.set()
    writer.close()
    await asyncio.wait_for(task, TIMEOUT)
    assert db.orders == list(range(100))
    assert not path.exists()


async def test_only_turns_wait_to_be_batched() -> None:
    db = FakeDatabase()
    writer = TranscriptWriter(db, max_delay_s=60)
    task = start(writer)
    writer.put(record(1))
    writer.submit(gap_write(1, 7, 10, 20, "service unreachable"))
    # Not the 60 s batching delay: any write but a turn ends the wait
    await asyncio.wait_for(db.tried.wait(), TIMEOUT)
    writer.close()
    await task
    # ... and joins the batch: one transaction.
    assert [[w["op"] for w in b] for b in db.batches] == [["turn", "gap"]]


async def test_other_writes_gather_briefly_to_share_a_commit() -> None:
    db = FakeDatabase()
    writer = TranscriptWriter(db, max_delay_s=60, gather_s=30)
    task = start(writer)
    writer.submit(gap_write(1, 7, 0, 100, "a"))
    for _ in range(5):
        await asyncio.sleep(0)  # let the writer take the first write
    writer.submit(gap_write(1, 7, 100, 200, "b"))
    await writer.flush()  # ends the wait at once
    assert [[w["cause"] for w in batch] for batch in db.batches] == [["a", "b"]]
    writer.close()
    await asyncio.wait_for(task, TIMEOUT)


async def test_other_writes_wait_far_less_than_turns() -> None:
    db = FakeDatabase()
    writer = TranscriptWriter(db, max_delay_s=60, gather_s=0.01)
    task = start(writer)
    writer.put(record(1))
    writer.submit(gap_write(1, 7, 0, 100, "a"))
    await asyncio.wait_for(db.tried.wait(), TIMEOUT)  # not the turns' 60 s
    assert db.orders == [1]
    writer.close()
    await asyncio.wait_for(task, TIMEOUT)


async def test_the_meeting_is_marked_alive_as_soon_as_the_database_is_back(
    tmp_path: Path,
) -> None:
    db = FakeDatabase()
    db.is_away = True
    writer = TranscriptWriter(db, max_delay_s=0.01, retry_delay_s=0.01)
    writer.journal_to(tmp_path / "j.jsonl", 5, "standup", datetime.now(UTC))
    task = start(writer)
    writer.put(record(1))
    await asyncio.wait_for(db.tried.wait(), TIMEOUT)
    db.is_away = False
    writer.close()
    await asyncio.wait_for(task, TIMEOUT)
    ops = [w["op"] for b in db.batches for w in b]
    assert ops == ["turn", "heartbeat"]
