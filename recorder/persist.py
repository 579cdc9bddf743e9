"""Keep a recording's writes going while the database is away.

Every write a recording makes (stream sessions, participants, gaps, the
meeting's end; turns go through :class:`~recorder.writer.TranscriptWriter`,
which retries on its own) goes through :meth:`DatabaseGuard.run`: a database
that cannot be reached, or that fails a statement, is retried with backoff
until it is back, and the console says once that it is away and once that it
is back. Errors retrying cannot fix (no such row) are raised at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from recorder.errors import MigrationRequired, NotFoundError, ReadOnlyViolation, StorageError

__all__ = ["DatabaseGuard", "is_transient"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_transient(error: BaseException) -> bool:
    """Whether retrying may fix a storage failure (the database away, a lost connection)."""
    return isinstance(error, StorageError) and not isinstance(
        error, NotFoundError | ReadOnlyViolation | MigrationRequired
    )


class DatabaseGuard:
    """Retries writes while the database is away, and says so once per change.

    Args:
        say: where to tell the user (the live console).
        initial_delay_s: first pause before a retry.
        max_delay_s: longest pause between retries.
    """

    def __init__(
        self,
        say: Callable[[str], None],
        *,
        initial_delay_s: float = 0.25,
        max_delay_s: float = 5.0,
    ) -> None:
        self._say = say
        self._initial_delay_s = initial_delay_s
        self._max_delay_s = max_delay_s
        self._is_away = False
        self.failures = 0

    @property
    def is_away(self) -> bool:
        """Whether the last write failed."""
        return self._is_away

    def trouble(self, error: BaseException) -> None:
        """A write failed; said once until the database is back."""
        self.failures += 1
        if not self._is_away:
            self._is_away = True
            self._say(
                f"! the database is unreachable ({error}); the recording goes on, holding "
                "what it records and retrying"
            )
        else:
            log.info("! database still away: %s", error)

    def recovered(self) -> None:
        """A write succeeded; said once if the database had been away."""
        if self._is_away:
            self._is_away = False
            self._say("+ the database is back; storing what was held")

    async def run(self, op: Callable[[], Awaitable[T]], *, give_up_s: float | None = None) -> T:
        """Run one write until it succeeds (or ``give_up_s`` passes: then it raises).

        Raises:
            StorageError: a failure retrying cannot fix, or the database stayed away
                longer than ``give_up_s``.
        """
        loop = asyncio.get_running_loop()
        deadline = None if give_up_s is None else loop.time() + give_up_s
        delay = self._initial_delay_s
        while True:
            try:
                result = await op()
            except StorageError as exc:
                if not is_transient(exc):
                    raise
                self.trouble(exc)
                if deadline is not None and loop.time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_delay_s)
                continue
            self.recovered()
            return result
