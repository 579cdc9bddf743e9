"""The one task that stores a recording's writes, in order, batched, journaled while away.

SQLite favours few, batched writes (each transaction costs a disk sync:
https://www.sqlite.org/faq.html#q19): writes queue here and what is queued is
committed together, one transaction per batch; turns wait at most ``max_delay_s``
for others to share their commit, any other write at most ``gather_s`` (a
socket opening or closing: a fast loop would otherwise commit them one by one). A failed
commit keeps its writes and tries again with backoff; nothing is dropped.
While the database is away, what is queued moves to the meeting's journal
(:mod:`recorder.journal`) each time a retry fails or ``memory_limit`` writes
are held, so memory stays bounded and a killed recorder leaves its writes on
disk; once the database is back, the journal is stored first, in order, and
removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from recorder.errors import NotFoundError, RecorderError
from recorder.journal import Journal, JournalFull, leftover_journals, read_entries
from recorder.persist import (
    DatabaseGuard,
    StoreWrites,
    Write,
    heartbeat_write,
    is_transient,
    journal_header,
    turn_write,
)
from storage.records import TurnRecord
from storage.store import TranscriptStore

__all__ = ["Applier", "TranscriptWriter", "replay_leftover_journals"]

log = logging.getLogger(__name__)

# Each writer names its refs apart, so a meeting resumed by another process (or
# a journal left by a dead one) never mixes two processes' socket keys.
_WRITERS = itertools.count(1)


class Applier(Protocol):
    """Stores writes (:class:`~recorder.persist.StoreWrites`; tests pass a fake)."""

    async def apply(self, writes: Sequence[Write], *, fresh: bool = False) -> None:
        """Store a batch of writes, in order, in one transaction.

        ``fresh``: no write of the batch was ever tried before, so none is stored yet.
        """

    def resolve(self, write: Write) -> Write:
        """``write`` with the ids already known filled in (for the journal)."""


def _batches(writes: Sequence[Write], max_batch: int) -> list[Sequence[Write]]:
    """Consecutive writes, at most ``max_batch`` a batch (one transaction each)."""
    return [writes[start : start + max_batch] for start in range(0, len(writes), max_batch)]


class TranscriptWriter:
    """Stores every write of one recording, in the order they were made.

    Args:
        applier: stores writes (a :class:`~recorder.persist.StoreWrites`).
        guard: the one notion of "the database is away" (says away/back once).
        journal_path: where to journal writes while the database is away
            (None: hold them in memory).
        max_batch: writes per transaction at most.
        max_delay_s: longest a turn waits for others to share its commit.
        gather_s: longest any other write waits for others to share its commit
            (at most ``max_delay_s``).
        retry_delay_s: first pause after a failed commit (doubling up to
            ``max_retry_delay_s``).
        memory_limit: while the database is away, at most this many writes
            are held in memory before they are journaled.
        journal_max_bytes: the bound on the journal file.
    """

    def __init__(
        self,
        applier: Applier,
        *,
        guard: DatabaseGuard | None = None,
        journal_path: Path | None = None,
        max_batch: int = 200,
        max_delay_s: float = 0.5,
        gather_s: float = 0.05,
        retry_delay_s: float = 0.25,
        max_retry_delay_s: float = 5.0,
        memory_limit: int = 1000,
        journal_max_bytes: int | None = None,
    ) -> None:
        self._applier = applier
        self._guard = guard or DatabaseGuard(lambda line: log.warning("%s", line))
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._gather_s = min(gather_s, max_delay_s)
        self._retry_delay_s = retry_delay_s
        self._max_retry_delay_s = max_retry_delay_s
        self._memory_limit = memory_limit
        self._journal_max_bytes = journal_max_bytes
        self._journal: Journal | None = None
        self._replayed_to = 0  # bytes of the journal already stored
        # The first writes held that are older than the journal (a batch in flight when
        # what came after it was journaled); stored before the journal is replayed.
        self._ahead = 0
        # The first writes held that were given to the applier at least once: a batch
        # of none of them is fresh (it cannot be stored yet: no lookups needed).
        self._tried = 0
        self._prefix = f"{os.getpid()}.{next(_WRITERS)}/"
        self._pending: list[Write] = []
        self._wake = asyncio.Event()
        # Set when memory_limit writes are held (journal them now, database away).
        self._full = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        # Someone is waiting in flush(): commit now instead of letting a batch gather.
        self._flush_waiters = 0
        self.journal_path = journal_path
        # The journal's first line: which meeting of which database it belongs to.
        self.journal_header: Write = {"op": "journal"}
        self.journal_failure: JournalFull | None = None
        self.committed = 0
        self.commits = 0
        self.failures = 0
        self.dropped = 0
        self.journaled = 0
        self.most_held = 0

    # -- what the recording calls (on the loop, never blocking) ---------------------

    def put(self, record: TurnRecord, *, session: str | None = None) -> None:
        """Queue a final turn (``session``: its socket's ref, if its id is not known)."""
        self.submit(turn_write(record, session=session))

    def ref(self, key: str) -> str:
        """This writer's name for a row the recording refers to by ``key``."""
        return key if key.startswith(self._prefix) else self._prefix + key

    def submit(self, write: Write) -> None:
        """Queue any write; its ``ref`` (if any) is this writer's name for ``key``."""
        if write.get("ref") is not None:
            write = {**write, "ref": self.ref(write["ref"])}
        self._pending.append(write)
        self.most_held = max(self.most_held, len(self._pending))
        self._idle.clear()
        self._wake.set()
        if len(self._pending) >= self._memory_limit:
            self._full.set()

    async def write(self, write: Write) -> None:
        """Queue ``write`` and return once it (and everything before it) is stored."""
        self.submit(write)
        await self.flush()

    async def flush(self) -> None:
        """Store everything queued so far, now, and return once it is stored."""
        self._flush_waiters += 1
        self._wake.set()
        try:
            await self._idle.wait()
        finally:
            self._flush_waiters -= 1

    def close(self) -> None:
        """Ask :meth:`run` to store what is left and return."""
        self._closing = True
        self._wake.set()

    def journal_to(self, path: Path, meeting_id: int, channel: str, started_at: datetime) -> None:
        """Journal to ``path`` while the database is away; the journal names the meeting."""
        self.journal_path = path
        self.journal_header = journal_header(meeting_id, channel, started_at)

    @property
    def pending(self) -> int:
        """Writes held in memory and not yet stored."""
        return len(self._pending)

    @property
    def is_journaling(self) -> bool:
        """Whether some writes wait in the journal."""
        return self._journal is not None and self._journal.exists

    # -- the task ------------------------------------------------------------------

    async def run(self) -> None:
        """Store queued writes until :meth:`close` is called and everything is stored.

        Cancelled with writes left (the database stayed away), those in memory are
        journaled and the journal is kept for a later replay.
        """
        try:
            await self._run()
        finally:
            if self._pending or self.is_journaling:
                await self._keep_for_later()

    async def _run(self) -> None:
        delay = self._retry_delay_s
        while True:
            if self._ahead:
                # A batch that was in flight when what came after it was journaled: it
                # goes before the journal.
                if not await self._store(self._pending[: self._ahead], is_head=True):
                    await self._wait_to_retry(delay)
                    delay = min(delay * 2, self._max_retry_delay_s)
                    continue
                self._forget_head(self._ahead)
                self._ahead = 0
            if self.is_journaling:
                if not await self._replay_journal():
                    await self._wait_to_retry(delay)
                    delay = min(delay * 2, self._max_retry_delay_s)
                    continue
                delay = self._retry_delay_s
            if not self._pending:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._gather()
            batch = self._pending[: self._max_batch]
            if not await self._store(batch, is_head=True):
                await self._wait_to_retry(delay)
                delay = min(delay * 2, self._max_retry_delay_s)
                continue
            delay = self._retry_delay_s
            self._forget_head(len(batch))
            self._ahead = 0

    async def _store(self, batch: Sequence[Write], *, is_head: bool = False) -> bool:
        """Store one batch; False if the database is away (the batch is kept).

        While the database takes its time to answer (a lock held elsewhere, a
        connection that hangs), writes arriving meanwhile are journaled whenever
        ``memory_limit`` of them are held: all but the batch in flight
        (``is_head``: the first writes held), which then goes before the journal.
        """
        # A retry, or a journal replayed, may find its rows stored by an earlier try.
        fresh = is_head and self._tried == 0
        if is_head:
            self._tried = max(self._tried, len(batch))
        # Shielded: cancelling the writer mid-commit must not lose the commit.
        apply = asyncio.ensure_future(self._applier.apply(batch, fresh=fresh))
        while not apply.done():
            full = asyncio.ensure_future(self._full.wait())
            try:
                await asyncio.wait({apply, full}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                full.cancel()
            if not apply.done():
                self._full.clear()
                await self._spill(keep=len(batch) if is_head else 0)
        try:
            apply.result()
        except RecorderError as exc:
            # The database away (or a lost connection): keep the batch and retry. Any
            # other error (no such row, a fleet worker that lost its lease) is for good.
            if is_transient(exc):
                self.failures += 1
                self._guard.trouble(exc)
                return False
            await self._store_one_by_one(batch, exc)
            return True
        if self._guard.is_away:
            self._guard.recovered()
            self._beat()
        self.committed += len(batch)
        self.commits += 1
        return True

    def _beat(self) -> None:
        """The database is back: mark the meeting alive at once.

        Readers take a meeting whose heartbeat is stale for one whose recorder
        died; after a long outage they should not have to wait for the next beat.
        """
        meeting_id = self.journal_header.get("meeting_id")
        if isinstance(meeting_id, int):
            self.submit(heartbeat_write(meeting_id, datetime.now(UTC)))

    async def _store_one_by_one(self, batch: Sequence[Write], error: RecorderError) -> None:
        """A batch failed for good: store what can be, and drop (and say) what cannot."""
        if len(batch) == 1:
            self.dropped += 1
            log.error("! a %s write cannot be stored, dropped: %s", batch[0]["op"], error)
            return
        for write in batch:
            while True:
                try:
                    await asyncio.shield(self._applier.apply([write]))
                except RecorderError as exc:
                    if is_transient(exc):
                        self._guard.trouble(exc)
                        await asyncio.sleep(self._retry_delay_s)
                        continue
                    self.dropped += 1
                    log.error("! a %s write cannot be stored, dropped: %s", write["op"], exc)
                else:
                    self.committed += 1
                break

    async def _replay_journal(self) -> bool:
        """Store the journal from where it was left, in order; True once it is all stored."""
        journal = self._journal
        assert journal is not None
        while True:
            entries, offset = await asyncio.to_thread(
                journal.read, self._replayed_to, self._max_batch
            )
            if not entries:
                break
            # The header line stores nothing, so it must not count as the database back.
            writes = [e for e in entries if e.get("op") != "journal"]
            for batch in _batches(writes, self._max_batch):
                # A batch stored and then repeated after a failure later in this
                # read is harmless: every write may be applied twice.
                if not await self._store(batch):
                    return False
            self._replayed_to = offset
        log.info("= stored the %d writes journaled in %s", journal.appended, journal.path)
        await asyncio.to_thread(journal.remove)
        self._replayed_to = 0
        return True

    async def _wait_to_retry(self, delay: float) -> None:
        """While the database is away: journal what is held, then wait ``delay``.

        Writes arriving meanwhile are journaled whenever ``memory_limit`` of them
        are held, so memory stays bounded however long the database is away.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while True:
            await self._spill()
            left = deadline - loop.time()
            if left <= 0:
                return
            self._full.clear()
            try:
                await asyncio.wait_for(self._full.wait(), left)
            except TimeoutError:
                return

    async def _spill(self, keep: int | None = None) -> None:
        """Journal the writes held, but the first ``keep`` (default: those ahead of the journal)."""
        keep = self._ahead if keep is None else keep
        if (
            len(self._pending) <= keep
            or self.journal_path is None
            or self.journal_failure is not None
        ):
            return
        if self._journal is None:
            self._journal = Journal(self.journal_path, **self._journal_limits())
        held = [self._applier.resolve(w) for w in self._pending[keep:]]
        header = [] if self._journal.exists else [self.journal_header]
        # The append runs to its end even if the writer is cancelled meanwhile (a stop
        # while the database is away), so what is on disk and in memory never overlap.
        append = asyncio.ensure_future(asyncio.to_thread(self._journal.append, header + held))
        try:
            try:
                await asyncio.shield(append)
            except asyncio.CancelledError:
                with contextlib.suppress(JournalFull):
                    await append
                if append.exception() is None:
                    del self._pending[keep : keep + len(held)]
                    self._tried = min(self._tried, keep)
                    self._ahead = keep
                raise
        except JournalFull as exc:
            self.journal_failure = exc
            self._guard.say(
                f"! warning: {exc}; the writes waiting for the database are held in memory "
                "and are lost if the recorder stops before the database is back"
            )
            return
        if not self.journaled:
            log.info("= journaling writes in %s while the database is away", self._journal.path)
        self.journaled += len(held)
        # The held writes are on disk now, after everything journaled before them.
        del self._pending[keep : keep + len(held)]
        self._tried = min(self._tried, keep)
        self._ahead = keep

    def _forget_head(self, count: int) -> None:
        """The first ``count`` writes held are stored (or journaled): no longer held."""
        del self._pending[:count]
        self._tried = max(0, self._tried - count)

    def _journal_limits(self) -> dict[str, int]:
        return {} if self._journal_max_bytes is None else {"max_bytes": self._journal_max_bytes}

    async def _keep_for_later(self) -> None:
        """The writer stopped with writes left: journal them and keep the journal."""
        journal = self._journal
        if self._ahead and journal is not None and journal.exists:
            ahead = [self._applier.resolve(w) for w in self._pending[: self._ahead]]
            try:
                await asyncio.to_thread(journal.insert_first, ahead)
            except JournalFull as exc:
                self._guard.say(f"! warning: {exc}")
            else:
                self._forget_head(self._ahead)
                self._ahead = 0
        if self.journal_path is not None and self.journal_failure is None and not self._ahead:
            await self._spill()
        journal = self._journal
        meeting = self.journal_header.get("meeting_id", "MEETING")
        if journal is not None and journal.exists:
            journal.close()
            self._guard.say(
                f"! the database stayed away: what it did not get is kept in {journal.path}; "
                f"'recorder repair {meeting}' stores it once the database is back"
            )
        if self._pending:
            self._guard.say(
                f"! {self.pending} writes could not be stored: the database stayed away"
            )

    def _may_gather(self) -> bool:
        return (
            not self._closing and not self._flush_waiters and len(self._pending) < self._max_batch
        )

    async def _gather(self) -> None:
        """Let a batch gather: turns up to ``max_delay_s``, any other write up to ``gather_s``.

        Ends at once when the writer closes, someone flushes, or a batch is full.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        only_turns, checked = True, 0
        while self._may_gather():
            # Only turns wait long: a socket's row or a participant goes soon after.
            if only_turns:
                only_turns = all(write["op"] == "turn" for write in self._pending[checked:])
                checked = len(self._pending)
            left = started + (self._max_delay_s if only_turns else self._gather_s) - loop.time()
            if left <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return


async def replay_leftover_journals(
    store: TranscriptStore,
    directory: Path,
    *,
    meeting_id: int | None = None,
    say: Callable[[str], None] | None = None,
) -> int:
    """Store the journals recorders left behind (killed while the database was away).

    Returns:
        How many writes were replayed.

    Raises:
        StorageError: the database failed while replaying (the journal is kept).
    """
    total = 0
    for path in leftover_journals(directory, meeting_id):
        try:
            count = await _replay_one(store, path)
        except OSError as exc:
            log.warning("! journal %s not replayed: %s", path, exc)
            continue
        if count is None:
            continue
        total += count
        if say is not None:
            say(f"+ stored {count} writes a stopped recorder had journaled ({path.name})")
    return total


async def _replay_one(store: TranscriptStore, path: Path) -> int | None:
    """Store one left-over journal and remove it; None if it is not this database's."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            # Held while replaying: two recorders starting at once replay it once.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if not await _belongs_here(store, path):
            return None
        applier = StoreWrites(store)
        count = offset = 0
        while True:
            entries, offset = await asyncio.to_thread(read_entries, path, offset, limit=500)
            if not entries:
                break
            # A dead recorder's heartbeat would make its meeting look alive again.
            writes = [e for e in entries if e.get("op") not in ("journal", "heartbeat")]
            for batch in _batches(writes, 200):
                await _apply_or_drop(applier, batch)
            count += len(writes)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        return count
    finally:
        os.close(fd)


async def _apply_or_drop(applier: Applier, batch: Sequence[Write]) -> None:
    """Store ``batch``; a write that can never be stored is dropped with an error line.

    Raises:
        StorageError: the database is away (transient): nothing is dropped.
    """
    try:
        await applier.apply(batch)
        return
    except RecorderError as exc:
        if is_transient(exc):
            raise
        if len(batch) == 1:
            log.error("! a journaled %s write cannot be stored: %s", batch[0]["op"], exc)
            return
    for write in batch:
        await _apply_or_drop(applier, [write])


async def _belongs_here(store: TranscriptStore, path: Path) -> bool:
    """Whether the journal at ``path`` is of a meeting of this database (its first line)."""
    entries, _ = await asyncio.to_thread(read_entries, path, 0, limit=1)
    header = entries[0] if entries else {}
    if not isinstance(header, dict) or header.get("op") != "journal":
        log.warning("! %s is not a recorder journal (no header line); left alone", path)
        return False
    try:
        summary = (await store.get_meeting(int(header["meeting_id"]), with_turns=False)).summary
    except NotFoundError:
        return False  # another database's meeting (the audio directory is shared)
    started = datetime.fromisoformat(str(header["started_at"]))
    return (
        summary.channel == header["channel"]
        and abs((summary.started_at - started).total_seconds()) < 0.001
    )
