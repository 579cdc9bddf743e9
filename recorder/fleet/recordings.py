"""The ``recordings`` table: what the fleet was asked to record, and who holds each one.

A row is created when a recording is enqueued and moves through ``queued`` (or
``scheduled``), ``recording``, then ``done``, ``failed`` or ``cancelled``. The
worker recording it holds a *lease*: a random token and an expiry in the
database's own clock, renewed every few seconds. Another worker may claim the
row only once the lease has expired, and a holder that cannot renew stops
writing before its lease could have expired (:mod:`recorder.fleet.job`), so one
recording is never written by two workers at once, whatever procrastinate
believes about stalled jobs. Queries go through procrastinate's connector (its
psycopg pool), with the database's ``now()`` as the only clock.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from procrastinate.connector import BaseAsyncConnector

__all__ = ["Claim", "RecordingRow", "Recordings"]

FINAL_STATUSES = ("done", "failed", "cancelled")
STOP_CHANNEL = "recorder_fleet_stop"

_COLUMNS = """id, channel, options, status, job_id, created_at, scheduled_at, started_at,
    ended_at, meeting_id, worker_host, worker_pid, lease_expires, claims, stop_requested,
    turns, reason, now() AS now"""


@dataclass(frozen=True, slots=True)
class RecordingRow:
    """One row of ``recordings``, as ``recorder jobs`` shows it."""

    id: int
    channel: str
    options: dict[str, Any]
    status: str
    job_id: int | None
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    meeting_id: int | None
    worker_host: str | None
    worker_pid: int | None
    lease_expires: datetime | None
    claims: int
    stop_requested: bool
    turns: int | None
    reason: str | None
    now: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> RecordingRow:
        """Build from a dict row of a query selecting ``_COLUMNS``."""
        return cls(**row)

    @property
    def wait_s(self) -> float:
        """How long it waited in the queue (so far, if it has not started)."""
        since = self.scheduled_at or self.created_at
        until = self.started_at or self.now
        return max(0.0, (until - since).total_seconds())


@dataclass(frozen=True, slots=True)
class Claim:
    """A lease just taken on a recording.

    Attributes:
        row: the recording, as it is now.
        elapsed_s: how long ago (database clock) it first started recording.
        previous_host: who held it before, if anyone (a takeover).
        previous_pid: that holder's process id.
        last_renewed_s: how long ago (database clock) the previous holder last
            renewed its lease or handed it back: the outage a takeover leaves.
        handed_back: the previous holder gave the lease up (a drain or a retry)
            rather than losing it (killed, frozen).
    """

    row: RecordingRow
    elapsed_s: float
    previous_host: str | None
    previous_pid: int | None
    last_renewed_s: float | None
    handed_back: bool = False


class Recordings:
    """Queries on ``recordings`` through a procrastinate connector."""

    def __init__(self, connector: BaseAsyncConnector) -> None:
        self._db = connector

    async def create(
        self, channel: str, options: dict[str, Any], scheduled_at: datetime | None
    ) -> RecordingRow:
        """Add a recording; ``scheduled`` when it starts later, else ``queued``."""
        row = await self._db.execute_query_one_async(
            "INSERT INTO recordings (channel, options, status, created_at, scheduled_at) "
            "VALUES (%(channel)s, %(options)s::jsonb, "
            "CASE WHEN %(at)s::timestamptz > now() THEN 'scheduled' ELSE 'queued' END, "
            "now(), %(at)s::timestamptz) RETURNING " + _COLUMNS,
            channel=channel,
            options=json.dumps(options),
            at=scheduled_at,
        )
        return RecordingRow.of(row)

    async def set_job(self, recording_id: int, job_id: int) -> None:
        """Note the procrastinate job that carries the recording."""
        await self._db.execute_query_async(
            "UPDATE recordings SET job_id = %(job)s WHERE id = %(id)s",
            id=recording_id,
            job=job_id,
        )

    async def delete(self, recording_id: int) -> None:
        """Forget a recording that never made it into the queue."""
        await self._db.execute_query_async(
            "DELETE FROM recordings WHERE id = %(id)s", id=recording_id
        )

    async def get(self, recording_id: int) -> RecordingRow | None:
        """One recording, or None."""
        rows = await self._db.execute_query_all_async(
            "SELECT " + _COLUMNS + " FROM recordings WHERE id = %(id)s", id=recording_id
        )
        return RecordingRow.of(rows[0]) if rows else None

    async def list(self, statuses: tuple[str, ...] = (), limit: int = 200) -> list[RecordingRow]:
        """Recordings, newest first, optionally only these statuses."""
        rows = await self._db.execute_query_all_async(
            "SELECT " + _COLUMNS + " FROM recordings "
            "WHERE cardinality(%(statuses)s::text[]) = 0 OR status = ANY(%(statuses)s::text[]) "
            "ORDER BY id DESC LIMIT %(limit)s",
            statuses=list(statuses),
            limit=limit,
        )
        return [RecordingRow.of(row) for row in rows]

    async def page(
        self,
        *,
        statuses: tuple[str, ...] = (),
        channel: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> tuple[builtins.list[RecordingRow], bool]:
        """A page of recordings, newest first, below ``before_id``; and whether more follow."""
        rows = await self._db.execute_query_all_async(
            "SELECT " + _COLUMNS + " FROM recordings "
            "WHERE (cardinality(%(statuses)s::text[]) = 0 OR status = ANY(%(statuses)s::text[])) "
            "AND (%(channel)s::text IS NULL OR channel = %(channel)s::text) "
            "AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint) "
            "ORDER BY id DESC LIMIT %(limit)s",
            statuses=list(statuses),
            channel=channel,
            before=before_id,
            limit=limit + 1,
        )
        found = [RecordingRow.of(row) for row in rows]
        return found[:limit], len(found) > limit

    async def request_stop(self, recording_id: int) -> RecordingRow | None:
        """Flag a recording to stop and wake the worker holding it (LISTEN/NOTIFY)."""
        await self._db.execute_query_all_async(
            "WITH flagged AS (UPDATE recordings SET stop_requested = true "
            "WHERE id = %(id)s AND status = 'recording' RETURNING id) "
            "SELECT pg_notify('" + STOP_CHANNEL + "', current_schema() || ':' || %(id)s::text) "
            "FROM flagged",
            id=recording_id,
        )
        return await self.get(recording_id)

    async def mark_cancelled(self, recording_id: int) -> bool:
        """Cancel a recording that has not started; False if it already has."""
        row = await self._db.execute_query_one_async(
            "WITH done AS (UPDATE recordings SET status = 'cancelled', ended_at = now(), "
            "reason = 'cancelled before it started' "
            "WHERE id = %(id)s AND status IN ('queued', 'scheduled') RETURNING id) "
            "SELECT count(*) AS n FROM done",
            id=recording_id,
        )
        return bool(row["n"])

    async def claim(
        self, recording_id: int, *, token: str, host: str, pid: int, lease_s: float
    ) -> Claim | None:
        """Take the recording's lease if nobody holds a live one; None if held or over."""
        rows = await self._db.execute_query_all_async(
            "WITH old AS (SELECT id, worker_host, worker_pid, lease_token, lease_expires "
            "  FROM recordings "
            "  WHERE id = %(id)s FOR UPDATE), "
            "claimed AS (UPDATE recordings r SET lease_token = %(token)s, "
            "  lease_expires = now() + make_interval(secs => %(lease)s), "
            "  worker_host = %(host)s, worker_pid = %(pid)s, status = 'recording', "
            "  started_at = coalesce(r.started_at, now()), claims = r.claims + 1, reason = NULL "
            "  FROM old WHERE r.id = old.id AND r.status IN ('queued', 'scheduled', 'recording') "
            "  AND (r.lease_expires IS NULL OR r.lease_expires < now()) "
            "  RETURNING r.*) "
            "SELECT " + _COLUMNS + ", "
            "extract(epoch FROM now() - started_at)::float8 AS elapsed_s, "
            "(SELECT worker_host FROM old) AS previous_host, "
            "(SELECT worker_pid FROM old) AS previous_pid, "
            # A live lease was last renewed its length before it expires; a lease
            # handed back records when it was handed back.
            "(SELECT extract(epoch FROM now() - old.lease_expires)::float8 "
            "  + CASE WHEN old.lease_token IS NULL THEN 0 ELSE %(lease)s END "
            " FROM old) AS last_renewed_s, "
            "(SELECT old.lease_token IS NULL FROM old) AS handed_back "
            "FROM claimed",
            id=recording_id,
            token=token,
            host=host,
            pid=pid,
            lease=lease_s,
        )
        if not rows:
            return None
        row = dict(rows[0])
        elapsed = float(row.pop("elapsed_s") or 0.0)
        previous_host = row.pop("previous_host")
        previous_pid = row.pop("previous_pid")
        last_renewed = row.pop("last_renewed_s")
        handed_back = bool(row.pop("handed_back"))
        return Claim(
            RecordingRow.of(row),
            elapsed,
            previous_host,
            previous_pid,
            None if last_renewed is None else float(last_renewed),
            handed_back,
        )

    async def renew(self, recording_id: int, token: str, lease_s: float) -> bool | None:
        """Extend our lease; returns whether a stop was asked, None if the lease is lost."""
        row = await self._db.execute_query_one_async(
            "WITH renewed AS (UPDATE recordings "
            "  SET lease_expires = now() + make_interval(secs => %(lease)s) "
            # By token only: a lease past its expiry is still ours until another
            # worker claims it (which replaces the token).
            "  WHERE id = %(id)s AND lease_token = %(token)s "
            "  RETURNING stop_requested) "
            "SELECT (SELECT stop_requested FROM renewed) AS stop, "
            "(SELECT count(*) FROM renewed) AS n",
            id=recording_id,
            token=token,
            lease=lease_s,
        )
        if not row["n"]:
            return None
        return bool(row["stop"])

    async def set_meeting(self, recording_id: int, token: str, meeting_id: int) -> None:
        """Note the meeting a recording writes to (a takeover continues it)."""
        await self._db.execute_query_async(
            "UPDATE recordings SET meeting_id = %(meeting)s "
            "WHERE id = %(id)s AND lease_token = %(token)s",
            id=recording_id,
            token=token,
            meeting=meeting_id,
        )

    async def release(
        self,
        recording_id: int,
        token: str,
        *,
        status: str,
        reason: str | None,
        turns: int | None = None,
    ) -> bool:
        """Give the lease up, setting the status (``queued`` hands the recording back)."""
        row = await self._db.execute_query_one_async(
            "WITH released AS (UPDATE recordings "
            "  SET status = %(status)s::text, reason = %(reason)s, "
            "  turns = coalesce(turns, 0) + coalesce(%(turns)s::int, 0), "
            "  lease_token = NULL, "
            "  lease_expires = CASE WHEN %(status)s::text = 'queued' THEN now() END, "
            "  ended_at = CASE WHEN %(status)s::text IN ('done', 'failed', 'cancelled') "
            "    THEN now() ELSE NULL END "
            "  WHERE id = %(id)s AND lease_token = %(token)s RETURNING id) "
            "SELECT count(*) AS n FROM released",
            id=recording_id,
            token=token,
            status=status,
            reason=reason,
            turns=turns,
        )
        return bool(row["n"])

    async def fail_unclaimed(self, recording_id: int, reason: str) -> None:
        """Mark failed a recording that failed before any worker held it."""
        await self._db.execute_query_async(
            "UPDATE recordings SET status = 'failed', reason = %(reason)s, ended_at = now() "
            "WHERE id = %(id)s AND status IN ('queued', 'scheduled') AND lease_token IS NULL",
            id=recording_id,
            reason=reason,
        )
