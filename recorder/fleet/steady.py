"""The queue's bookkeeping rides out a database blip instead of stopping the worker.

procrastinate stops a worker when its heartbeat or its listener meets a
database error (it watches those side tasks since
https://github.com/procrastinate-org/procrastinate/pull/1463), and a failed
job fetch ends its run loop: after a blip of a second the worker takes no new
recording, waits for those it holds, and exits. The recordings themselves ride
out blips (their writes retry, their lease guards takeovers), so the worker
does too: :class:`SteadyJobManager` treats a lost connection as "nothing this
time" for the fetch and the heartbeat, retries the listener, and retries a
job's end until it is stored (an unstored end would hold the channel's lock).

Only connection failures are ridden out (psycopg's ``OperationalError``, which
the pool's timeout also is), and one consequence of a long one: a worker that
starts while this one cannot beat deletes its row as stalled, and procrastinate
would stop this worker at its next fetch (the job's ``worker_id`` names no
worker). The manager registers the worker again and goes on under the new id.
Anything else still stops the worker, which then exits 1 for its supervisor to
restart it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import psycopg
from procrastinate import BaseConnector
from procrastinate.jobs import Job
from procrastinate.manager import JobManager

__all__ = ["SteadyJobManager", "is_connection_failure", "is_unregistered"]

T = TypeVar("T")

#: Waits between attempts to store a job's end or to listen again, seconds.
FIRST_WAIT_S = 0.5
MAX_WAIT_S = 5.0


def is_unregistered(error: BaseException) -> bool:
    """Whether ``error`` is a job fetch refused because the worker's row is gone."""
    cause = error if isinstance(error, psycopg.errors.ForeignKeyViolation) else error.__cause__
    if not isinstance(cause, psycopg.errors.ForeignKeyViolation):
        return False
    return "worker_id" in (cause.diag.constraint_name or "")


def is_connection_failure(error: BaseException) -> bool:
    """Whether ``error`` (or what procrastinate wrapped in it) is a lost connection."""
    return isinstance(error, psycopg.OperationalError) or isinstance(
        error.__cause__, psycopg.OperationalError
    )


class SteadyJobManager(JobManager):
    """A job manager whose worker keeps going while the database is briefly away.

    Args:
        connector: the app's connector.
        say: where the worker's lines go (one when the database goes, one when it is back).
    """

    def __init__(self, connector: BaseConnector, say: Callable[[str], None]) -> None:
        super().__init__(connector)
        self._say = say
        self.is_unreachable = False
        # The worker keeps the id it registered with; after a registration again, the
        # calls that name it are made with the new one.
        self._ids: dict[int, int] = {}

    def _lost(self, error: BaseException) -> None:
        if not self.is_unreachable:
            self.is_unreachable = True
            detail = str(error.__cause__ or error).strip().splitlines()
            self._say(
                f"! the queue's database is unreachable ({detail[0] if detail else 'no detail'});"
                " the worker keeps its recordings and retries"
            )

    def _reached(self) -> None:
        if self.is_unreachable:
            self.is_unreachable = False
            self._say("+ the queue's database is back")

    async def _or_none(self, call: Awaitable[T]) -> T | None:
        try:
            result = await call
        except Exception as exc:
            if not is_connection_failure(exc):
                raise
            self._lost(exc)
            return None
        self._reached()
        return result

    async def _until_done(self, call: Callable[[], Awaitable[None]]) -> None:
        """``call()`` again, waiting longer each time, until no connection failure stops it."""
        wait = FIRST_WAIT_S
        while True:
            try:
                await call()
            except Exception as exc:
                if not is_connection_failure(exc):
                    raise
                self._lost(exc)
            else:
                self._reached()
                return
            await asyncio.sleep(wait)
            wait = min(MAX_WAIT_S, wait * 2)

    async def fetch_job(self, queues: Iterable[str] | None, worker_id: int) -> Job | None:
        """The next job, or None (also while the database is away: the loop polls again)."""
        current = self._ids.get(worker_id, worker_id)
        try:
            return await self._or_none(super().fetch_job(queues, current))
        except Exception as exc:
            if not is_unregistered(exc):
                raise
        registered = await self._or_none(self.register_worker())
        if registered is None:
            return None  # the database went away again: the next fetch tries again
        self._ids[worker_id] = registered
        self._say(
            f"! this worker's row in the queue was deleted as stalled (worker {current}: no"
            f" heartbeat reached the database for too long); registered again as worker"
            f" {registered}"
        )
        return await self._or_none(super().fetch_job(queues, registered))

    async def update_heartbeat(self, worker_id: int) -> None:
        """Say the worker is alive; skipped while the database is away."""
        await self._or_none(super().update_heartbeat(self._ids.get(worker_id, worker_id)))

    async def unregister_worker(self, worker_id: int) -> None:
        """Delete the worker's row (under the id it goes by now)."""
        await super().unregister_worker(self._ids.get(worker_id, worker_id))

    async def finish_job(self, *args: Any, **kwargs: Any) -> None:
        """Store a job's end, waiting for the database if it is away."""
        await self._until_done(lambda: super(SteadyJobManager, self).finish_job(*args, **kwargs))

    async def retry_job(self, *args: Any, **kwargs: Any) -> None:
        """Put a job back in the queue, waiting for the database if it is away."""
        await self._until_done(lambda: super(SteadyJobManager, self).retry_job(*args, **kwargs))

    async def listen_for_jobs(self, **kwargs: Any) -> None:
        """Listen for new jobs; listen again when the connection is lost.

        It returns only if the connector cannot listen (the worker then polls).
        """
        await self._until_done(lambda: super(SteadyJobManager, self).listen_for_jobs(**kwargs))
