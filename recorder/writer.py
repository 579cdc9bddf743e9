"""The one task that writes final turns to the store, in batched commits.

SQLite favours few, batched writes (each transaction costs a disk sync:
https://www.sqlite.org/faq.html#q19): turns queue here and are committed
together, at most ``max_delay_s`` after they arrive. A failed commit keeps its
turns and tries again; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from recorder.errors import RecorderError
from storage.records import TurnRecord

__all__ = ["TranscriptWriter"]

log = logging.getLogger(__name__)


class TranscriptWriter:
    """Batches :class:`TurnRecord` upserts into few transactions.

    Args:
        upsert: the store's ``upsert_turns``.
        max_batch: turns per transaction at most.
        max_delay_s: longest a turn waits before its commit starts.
        retry_delay_s: pause after a failed commit before trying again.
        on_trouble: told of each failed commit (the database away).
        on_recovered: told of each commit that worked.
    """

    def __init__(
        self,
        upsert: Callable[[Sequence[TurnRecord]], Awaitable[None]],
        *,
        max_batch: int = 200,
        max_delay_s: float = 0.5,
        retry_delay_s: float = 1.0,
        on_trouble: Callable[[RecorderError], None] | None = None,
        on_recovered: Callable[[], None] | None = None,
    ) -> None:
        self._upsert = upsert
        self._on_trouble = on_trouble
        self._on_recovered = on_recovered
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._retry_delay_s = retry_delay_s
        self._pending: list[TurnRecord] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        # Someone is waiting in flush(): commit now instead of letting a batch gather.
        self._flush_waiters = 0
        self.committed = 0
        self.commits = 0
        self.failures = 0

    def put(self, record: TurnRecord) -> None:
        """Queue a final turn; never blocks."""
        self._pending.append(record)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        """Commit queued turns until :meth:`close` is called and everything is written."""
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._should_gather():
                # Let a batch gather; a close cuts the wait short.
                try:
                    await asyncio.wait_for(self._closed_or_full(), self._max_delay_s)
                except TimeoutError:
                    pass
            batch = self._pending[: self._max_batch]
            try:
                # The commit is shielded: cancelling the writer mid-commit must not lose it.
                await asyncio.shield(self._upsert(batch))
            except RecorderError as exc:
                self.failures += 1
                log.warning("! storing %d turns failed, will retry: %s", len(batch), exc)
                if self._on_trouble is not None:
                    self._on_trouble(exc)
                await asyncio.sleep(self._retry_delay_s)
                continue
            if self._on_recovered is not None:
                self._on_recovered()
            del self._pending[: len(batch)]
            self.committed += len(batch)
            self.commits += 1
            if not self._pending:
                self._idle.set()

    def _should_gather(self) -> bool:
        return (
            not self._closing and not self._flush_waiters and len(self._pending) < self._max_batch
        )

    async def _closed_or_full(self) -> None:
        while self._should_gather():
            self._wake.clear()
            await self._wake.wait()

    async def flush(self) -> None:
        """Commit every turn queued so far, now, and return once they are stored."""
        self._flush_waiters += 1
        self._wake.set()
        try:
            await self._idle.wait()
        finally:
            self._flush_waiters -= 1

    def close(self) -> None:
        """Ask :meth:`run` to write what is left and return."""
        self._closing = True
        self._wake.set()

    @property
    def pending(self) -> int:
        """Turns queued and not yet committed."""
        return len(self._pending)
