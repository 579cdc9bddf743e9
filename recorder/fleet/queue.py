"""The procrastinate app on the transcripts' database, and the ``record`` task.

One task, ``recorder.record``, carries a recording's id. It is deferred with a
``queueing_lock`` (one waiting job per channel) and a ``lock`` (one running job
per channel), as described at
https://procrastinate.readthedocs.io/en/stable/howto/advanced/queueing_locks.html and
https://procrastinate.readthedocs.io/en/stable/howto/advanced/locks.html. What a job does
lives in :mod:`recorder.fleet.job`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from procrastinate import App, JobContext, PsycopgConnector, RetryDecision
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy

from recorder.errors import DatabaseUnreachable, RecorderError, UsageError
from recorder.fleet.connect import FleetDatabase
from recorder.fleet.recordings import RecordingRow, Recordings

__all__ = [
    "QUEUE",
    "RECORD_TASK",
    "WEBHOOK_QUEUE",
    "HandBack",
    "RecordRetry",
    "Transient",
    "channel_lock",
    "enqueue",
    "make_app",
    "open_app",
    "prune_jobs",
]

QUEUE = "recordings"
# Webhook deliveries (recorder.fleet.webhooks): a queue of their own, so they never
# take a recording's place on a worker.
WEBHOOK_QUEUE = "webhooks"
# Finished jobs are deleted after this many hours: the ``recordings`` table and the
# webhook delivery log keep the history, the jobs are only the queue's bookkeeping.
KEEP_RECORD_JOBS_H = 24 * 7
KEEP_WEBHOOK_JOBS_H = 1
RECORD_TASK = "recorder.record"
# Transient failures (the STT service or the channel unreachable) retry this many
# times, waiting 2, 4, 8, ... seconds (at most 5 minutes) between attempts.
MAX_ATTEMPTS = 6
_BACKOFF_S = 2.0
_MAX_BACKOFF_S = 300.0

JobHandler = Callable[[JobContext, int], Awaitable[None]]


class HandBack(Exception):  # noqa: N818 - a signal to the retry strategy, not an error
    """Raised by a job handed back to the queue (its worker is draining): retry at once."""


class Transient(Exception):  # noqa: N818 - carries the RecorderError that may pass
    """A failure that may pass: retry with backoff."""

    def __init__(self, error: RecorderError) -> None:
        super().__init__(str(error))
        self.error = error


class RecordRetry(BaseRetryStrategy):
    """Hand-backs retry at once; transient failures with exponential backoff; others never."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        """What procrastinate does with a job that raised ``exception``."""
        if isinstance(exception, HandBack):
            return RetryDecision(retry_in={"seconds": 0})
        if isinstance(exception, Transient) and job.attempts + 1 < MAX_ATTEMPTS:
            wait = min(_MAX_BACKOFF_S, _BACKOFF_S * 2**job.attempts)
            return RetryDecision(retry_in={"seconds": int(wait)})
        return None


def make_app(database: FleetDatabase, handler: JobHandler | None = None) -> App:
    """The fleet's procrastinate app; ``handler`` runs each recording (workers only)."""
    app = App(
        connector=PsycopgConnector(
            conninfo=database.conninfo,
            min_size=1,
            max_size=4,
        )
    )

    async def record(context: JobContext, recording_id: int) -> None:
        if handler is None:  # pragma: no cover - only workers run jobs
            raise RuntimeError("this app only enqueues")
        await handler(context, recording_id)

    app.task(
        name=RECORD_TASK,
        queue=QUEUE,
        pass_context=True,
        retry=RecordRetry(),
    )(record)
    return app


async def open_app(app: App, database: FleetDatabase) -> None:
    """Open the app's pool, failing at once with one line if the database is unreachable.

    The pool alone would retry quietly for 30 s; one plain connection first says
    what is wrong within the connect timeout.

    Raises:
        DatabaseUnreachable: the database cannot be reached or refuses us.
    """
    import psycopg

    try:
        connection = await psycopg.AsyncConnection.connect(database.conninfo)
    except psycopg.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnreachable(
            f"cannot reach the fleet's database at {database.shown} ({detail}); check --db "
            "(or RECORDER_DATABASE_URL) and that PostgreSQL is running"
        ) from None
    await connection.close()
    try:
        await app.open_async()
    except Exception as exc:
        raise DatabaseUnreachable(
            f"cannot reach the fleet's database at {database.shown}: {exc}"
        ) from exc


def channel_lock(channel: str) -> str:
    """The lock and queueing lock of a channel's jobs."""
    return f"recorder.channel:{channel}"


async def enqueue(
    app: App,
    channel: str,
    options: dict[str, Any],
    *,
    at: dt.datetime | None = None,
) -> RecordingRow:
    """Add a recording and its job; one waiting recording per channel.

    Raises:
        UsageError: the channel already has a recording waiting in the queue.
    """
    recordings = Recordings(app.connector)  # type: ignore[arg-type]
    row = await recordings.create(channel, options, at)
    lock = channel_lock(channel)
    try:
        job_id = await app.configure_task(
            name=RECORD_TASK,
            queue=QUEUE,
            lock=lock,
            queueing_lock=lock,
            schedule_at=at,
        ).defer_async(recording_id=row.id)
    except AlreadyEnqueued:
        await recordings.delete(row.id)
        raise UsageError(
            f"channel {channel!r} already has a recording waiting in the queue; "
            "see 'recorder jobs', or cancel it with 'recorder cancel ID'"
        ) from None
    await recordings.set_job(row.id, job_id)
    return row


async def prune_jobs(app: App) -> None:
    """Delete finished jobs: webhook jobs after an hour, recording jobs after a week."""
    finished = {"include_failed": True, "include_cancelled": True, "include_aborted": True}
    await app.job_manager.delete_old_jobs(KEEP_WEBHOOK_JOBS_H, queue=WEBHOOK_QUEUE, **finished)
    await app.job_manager.delete_old_jobs(KEEP_RECORD_JOBS_H, queue=QUEUE, **finished)
