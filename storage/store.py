"""The transcript store: every read and write the bot, the CLI and exports make.

Each method owns one short transaction and returns frozen records from
:mod:`storage.records`, never ORM objects. Text is cleaned the same way on
both databases before it is stored (see :func:`storable_text`).

The class is put together from three parts: :mod:`storage.store_base` (engines
and the transaction runner, which companion modules such as ``storage.gaps``
use), :mod:`storage.store_writes` and :mod:`storage.store_reads`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.engine import URL

from recorder.errors import MigrationRequired
from storage import db
from storage.errors import mask_url
from storage.rows import storable_text
from storage.store_reads import DEFAULT_MAX_ROWS, StoreReads
from storage.store_writes import DEFAULT_STALE_AFTER, StoreWrites

__all__ = ["DEFAULT_MAX_ROWS", "DEFAULT_STALE_AFTER", "TranscriptStore", "storable_text"]


class TranscriptStore(StoreWrites, StoreReads):
    """Async access to the transcript database.

    Open with :meth:`open` (or ``async with await TranscriptStore.open(url)``)
    and :meth:`close` when done.
    """

    @classmethod
    async def open(cls, url: str | URL, *, auto_migrate: bool | None = None) -> TranscriptStore:
        """Connect to the database and make sure its schema is current.

        Args:
            url: an async SQLAlchemy URL (``sqlite+aiosqlite://`` or
                ``postgresql+asyncpg://``).
            auto_migrate: migrate to head if behind. Defaults to True only for the
                default SQLite file (and in-memory SQLite); every other database
                needs an explicit ``recorder db upgrade``.

        Raises:
            ConfigError: the URL is malformed or unsupported.
            DatabaseUnreachable: the database cannot be opened or reached.
            MigrationRequired: the schema is behind and auto_migrate is off.
        """
        parsed = db.normalize_url(url)
        if auto_migrate is None:
            auto_migrate = (
                db.is_memory_database(parsed)
                or parsed.render_as_string(hide_password=False) == db.default_database_url()
            )
        path = db.sqlite_path(parsed)
        if path is not None:
            if auto_migrate:
                db.prepare_sqlite_file(parsed)
            elif not path.exists():
                where = mask_url(parsed)
                raise MigrationRequired(
                    f"there is no database at {where} yet; create it with "
                    f"'recorder db upgrade --db {where}'"
                )
        engine = db.create_engine(parsed)
        try:
            await db.ensure_schema(engine, auto_migrate=auto_migrate, url=parsed)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, parsed)

    async def close(self) -> None:
        """Close every pooled connection (and the writing thread's)."""
        await self._close_batches()
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
