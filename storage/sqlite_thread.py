"""A SQLite file's batches of writes in one thread hop each, off the event loop.

Through aiosqlite every statement is a round trip to its thread and back (three
for a statement that returns rows: execute, fetch, close), and each return wakes
the event loop. The recording's writer stores a batch of writes at a time
(:meth:`storage.store_base.StoreBase.run_as_one`), so here the whole batch runs
on a thread of its own, on a plain ``sqlite3`` connection of SQLAlchemy's sync
engine: one hop there and one back, whatever the batch holds.

The store's write code is async (it also runs on PostgreSQL's asyncpg). It runs
here unchanged: its only awaits are the connection's, which :class:`_Connection`
answers at once from the sync connection, so the coroutine finishes in one
``send`` (:func:`run_to_end`) without an event loop. A batch that awaited
anything else would be a bug, and fails (rolled back) rather than block.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import URL, Connection, Engine

from storage import db
from storage.errors import LOCK_BACKOFF_S, LOCK_RETRIES, is_locked_error
from storage.writes import Heartbeats

__all__ = ["SqliteBatches", "run_to_end"]

log = logging.getLogger("storage.store")

T = TypeVar("T")


def run_to_end(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (it awaits only answered calls).

    Raises:
        RuntimeError: it suspended (awaited a future): it is closed, not resumed.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a threaded SQLite batch awaited something besides its connection")


class _Connection:
    """The part of ``AsyncConnection`` the store's writes use, answered by a sync one."""

    __slots__ = ("_sync",)

    def __init__(self, sync: Connection) -> None:
        self._sync = sync

    @property
    def dialect(self) -> Any:
        return self._sync.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self._sync.execute(statement, parameters)

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return self._sync.scalar(statement, parameters)


class SqliteBatches:
    """Runs write transactions on one thread with one SQLite connection.

    The engine (and its connection) is made on first use, on that thread, so a
    store that never batches costs nothing. :meth:`close` disposes of it there.
    """

    def __init__(self, url: URL, heartbeats: Heartbeats) -> None:
        self._url = url
        self._heartbeats = heartbeats
        self._engine: Engine | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writes")

    async def run(self, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        """``work(connection)`` in one write transaction on the thread; retried when locked.

        Raises:
            Exception: what the database raised (untranslated: the caller translates).
        """
        context = contextvars.copy_context()  # the store's joined transaction is set there
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, context.run, self._transact, work)

    def _transact(self, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        if self._engine is None:
            self._engine = db.create_sync_sqlite_engine(self._url)
        writer = self._engine.execution_options(**db.WRITE)
        attempt = 0
        while True:
            try:
                with self._heartbeats.transaction() as beats:
                    with writer.begin() as connection:
                        result = run_to_end(work(_Connection(connection)))
                    self._heartbeats.committed(beats)  # a rolled-back beat never counts
                    return result
            except Exception as exc:
                if is_locked_error(exc) and attempt < LOCK_RETRIES:
                    attempt += 1
                    log.debug("= lock conflict, retry %d of %d", attempt, LOCK_RETRIES)
                    time.sleep(LOCK_BACKOFF_S * 2**attempt)  # this thread's, not the loop's
                    continue
                raise

    async def close(self) -> None:
        """Close the connection (after a batch under way) and end the thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._dispose)
        self._thread.shutdown(wait=False)

    def _dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
