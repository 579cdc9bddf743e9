"""What the fleet's users do to recordings: open the queue, stop, cancel, describe.

``recorder record/jobs/stop/cancel`` and the service's ``/v1/recordings`` call
these same functions, so both refuse the same things with the same messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from procrastinate import App

from recorder.errors import MigrationRequired, NotFoundError, UsageError
from recorder.fleet.connect import FleetDatabase
from recorder.fleet.recordings import RecordingRow, Recordings

__all__ = [
    "STATUSES",
    "cancel_recording",
    "open_fleet",
    "recording_json",
    "require_tables",
    "stop_recording",
]

STATUSES = ("queued", "scheduled", "recording", "done", "failed", "cancelled")


async def require_tables(app: App, database: FleetDatabase) -> None:
    """Fail with what to do when ``recorder db upgrade`` has not made the fleet's tables.

    Raises:
        MigrationRequired: the tables are missing.
    """
    row = await app.connector.execute_query_one_async(
        "SELECT to_regclass('recordings') IS NOT NULL "
        "AND to_regclass('procrastinate_jobs') IS NOT NULL AS ready"
    )
    if not row["ready"]:
        raise MigrationRequired(
            f"the database at {database.shown} has no fleet tables yet; run "
            f"'recorder db upgrade --db {database.shown}' once"
        )


@contextlib.asynccontextmanager
async def open_fleet(database: FleetDatabase) -> AsyncIterator[App]:
    """The fleet's procrastinate app, open and checked, for as long as the block runs.

    Raises:
        DatabaseUnreachable: the database cannot be reached.
        MigrationRequired: the fleet's tables are missing.
    """
    from recorder.fleet.queue import make_app, open_app

    app = make_app(database)
    await open_app(app, database)
    try:
        await require_tables(app, database)
        yield app
    finally:
        await app.close_async()


async def stop_recording(app: App, recording_id: int) -> RecordingRow:
    """Ask the worker holding a recording to stop; the row as it is now.

    A recording already over is returned as it is (stopping is idempotent).

    Raises:
        NotFoundError: no such recording.
        UsageError: it has not started (cancel it instead).
    """
    row = await Recordings(app.connector).request_stop(recording_id)  # type: ignore[arg-type]
    if row is None:
        raise NotFoundError(f"no recording {recording_id}; see 'recorder jobs'")
    if row.status in ("queued", "scheduled"):
        raise UsageError(
            f"recording {recording_id} has not started; cancel it with "
            f"'recorder cancel {recording_id}'"
        )
    return row


async def cancel_recording(app: App, recording_id: int) -> tuple[bool, RecordingRow]:
    """Cancel a recording that has not started; (whether it was cancelled, the row).

    Raises:
        NotFoundError: no such recording.
        UsageError: it is recording (stop it instead).
    """
    recordings = Recordings(app.connector)  # type: ignore[arg-type]
    cancelled = await recordings.mark_cancelled(recording_id)
    row = await recordings.get(recording_id)
    if row is None:
        raise NotFoundError(f"no recording {recording_id}; see 'recorder jobs'")
    if cancelled and row.job_id is not None:
        await app.job_manager.cancel_job_by_id_async(row.job_id)
    if not cancelled and row.status == "recording":
        raise UsageError(
            f"recording {recording_id} is recording on {row.worker_host}; stop it with "
            f"'recorder stop {recording_id}'"
        )
    return cancelled, row


def recording_json(row: RecordingRow) -> dict[str, Any]:
    """A recording as ``recorder jobs --json`` and the API show it."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": row.id,
        "channel": row.channel,
        "status": row.status,
        "worker_host": row.worker_host,
        "worker_pid": row.worker_pid,
        "created_at": iso(row.created_at),
        "scheduled_at": iso(row.scheduled_at),
        "started_at": iso(row.started_at),
        "ended_at": iso(row.ended_at),
        "meeting_id": row.meeting_id,
        "wait_s": round(row.wait_s, 3),
        "claims": row.claims,
        "turns": row.turns,
        "reason": row.reason,
        "transport": row.options.get("transport"),
        "stop_requested": row.stop_requested,
    }
