"""What every part of the transcript store shares: the engines and the one transaction runner.

:class:`StoreBase` holds the connection pool and runs each unit of work in one
short transaction, retrying SQLite's "database is locked" and translating
database errors at this seam. Its public part (:meth:`StoreBase.run_in_transaction`,
:meth:`StoreBase.insert`, :meth:`StoreBase.require_meeting`) is what the store's
companion modules (``storage.gaps``, ``storage.audio``, ``storage.notes``) build on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from recorder.errors import RecorderError
from storage import db
from storage.errors import (
    LOCK_BACKOFF_S,
    LOCK_RETRIES,
    is_locked_error,
    mask_url,
    raise_translated,
)
from storage.sqlite_thread import SqliteBatches
from storage.writes import Heartbeats, insert_for, require_meeting

__all__ = ["StoreBase"]

log = logging.getLogger("storage.store")

T = TypeVar("T")

# The transaction of a StoreBase.run_as_one under way in this task, which the store's
# own transactions join.
_JOINED: ContextVar[tuple[StoreBase, AsyncConnection] | None] = ContextVar(
    "storage_joined_transaction", default=None
)


class StoreBase:
    """The engines, the dialect and the transaction runner of a transcript store.

    Every transaction, the store's own and its companion modules', starts in
    :meth:`_transaction`: a subclass that must guard writes overrides that one
    method (``recorder.fleet.job.FencedStore`` refuses them once its lease is lost).
    """

    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**db.WRITE)
        self._url = url
        self._dialect = url.get_backend_name()
        # The meetings' heartbeats this store's writes committed (beaten every few s at most).
        self._heartbeats = Heartbeats()
        # A SQLite file's batches run on a thread of their own (storage.sqlite_thread);
        # not for a store that guards its transactions (its _transaction must see each).
        self._batches = (
            SqliteBatches(url, self._heartbeats)
            if db.sqlite_path(url) is not None and type(self)._transaction is StoreBase._transaction
            else None
        )

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return mask_url(self._url)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._dialect

    async def _transaction(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool
    ) -> T:
        joined = _JOINED.get()
        if joined is not None and joined[0] is self:
            return await work(joined[1])  # inside run_as_one: its transaction
        engine = self._writer if write else self._engine
        attempt = 0
        while True:
            try:
                with self._heartbeats.transaction() as beats:
                    async with engine.begin() as connection:
                        result = await work(connection)
                    self._heartbeats.committed(beats)  # a rolled-back beat never counts
                    return result
            except RecorderError:
                raise
            except Exception as exc:
                if is_locked_error(exc) and attempt < LOCK_RETRIES:
                    attempt += 1
                    log.debug("= lock conflict, retry %d of %d", attempt, LOCK_RETRIES)
                    await asyncio.sleep(LOCK_BACKOFF_S * 2**attempt)
                    continue
                raise_translated(exc, self._url)

    async def run_in_transaction(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool
    ) -> T:
        """Run ``work`` in one short transaction, as the store's own methods do.

        For the store's companion modules (``storage.gaps``, ``storage.audio``,
        ``storage.notes``).

        Args:
            work: the statements, given the transaction's connection.
            write: whether ``work`` writes (SQLite: takes the write lock up front).

        Raises:
            StorageError: the database failed (translated; see ``storage.errors``).
        """
        return await self._transaction(work, write=write)

    @property
    def batches_in_thread(self) -> bool:
        """Whether :meth:`run_as_one` runs on a thread of its own (a SQLite file)."""
        return self._batches is not None

    async def run_as_one(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` with every call it makes to this store in one write transaction.

        Each call then costs no connection checkout and no commit of its own (the
        recording's writer stores a batch of writes so). One failure rolls all of
        ``work`` back; a "database is locked" runs it again from the start.

        On a SQLite file ``work`` runs on the store's writing thread, in one hop
        (:mod:`storage.sqlite_thread`): it must await nothing but this store.

        Raises:
            StorageError: the database failed (translated; see ``storage.errors``).
        """

        async def joined(connection: AsyncConnection) -> T:
            token = _JOINED.set((self, connection))
            try:
                return await work()
            finally:
                _JOINED.reset(token)

        if self._batches is None:
            return await self._transaction(joined, write=True)
        try:
            return await self._batches.run(joined)
        except RecorderError:
            raise
        except Exception as exc:
            raise_translated(exc, self._url)

    async def _close_batches(self) -> None:
        if self._batches is not None:
            await self._batches.close()

    def insert(self, model: Any) -> Any:
        """An INSERT into ``model``'s table in the store's dialect, for an upsert.

        Both dialects' constructs offer ``returning`` and ``on_conflict_do_update``,
        but SQLAlchemy never caches their compiled form: a plain insert is
        ``sqlalchemy.insert``, compiled once.
        """
        return insert_for(self._dialect, model)

    async def require_meeting(self, connection: AsyncConnection, meeting_id: int) -> None:
        """Check, inside a transaction, that the meeting exists.

        Raises:
            NotFoundError: no such meeting.
        """
        await require_meeting(connection, meeting_id)
