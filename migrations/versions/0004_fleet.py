"""Fleet: procrastinate's job queue and the ``recordings`` table (PostgreSQL only).

The fleet's queue lives in the transcripts' database: this migration applies
procrastinate's own schema (its ``schema.sql``, shipped with the package:
https://procrastinate.readthedocs.io/en/stable/howto/production/migrations.html),
then adds ``recordings``, one row per recording asked of the fleet, with its
options, status and the lease that keeps two workers off one recording.
SQLite cannot host a fleet (no LISTEN/NOTIFY, one writer), so nothing is
created there.

Revision ID: 0004_fleet
Revises: 0001_initial
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from recorder.errors import ConfigError

revision: str = "0004_fleet"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECORDING_STATUSES = ("queued", "scheduled", "recording", "done", "failed", "cancelled")

# Everything procrastinate's schema creates, in the schema it was applied to.
_DROP_PROCRASTINATE = """
DO $$
DECLARE item record;
BEGIN
    FOR item IN
        SELECT p.oid::regprocedure AS name FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate%'
    LOOP
        EXECUTE 'DROP FUNCTION IF EXISTS ' || item.name || ' CASCADE';
    END LOOP;
END $$;
DROP TABLE IF EXISTS procrastinate_periodic_defers, procrastinate_events,
    procrastinate_jobs, procrastinate_workers CASCADE;
DROP TYPE IF EXISTS procrastinate_job_to_defer_v1, procrastinate_job_event_type,
    procrastinate_job_status CASCADE;
"""


def _execute_script(script: str) -> None:
    """Run a multi-statement SQL script on the migration's connection.

    asyncpg prepares every statement SQLAlchemy sends, and a prepared statement
    holds one command; its own ``execute`` without arguments runs a whole script.
    """
    from sqlalchemy.util import await_only

    driver = op.get_bind().connection.dbapi_connection
    assert driver is not None
    await_only(driver.driver_connection.execute(script))  # type: ignore[attr-defined]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    try:
        from procrastinate.schema import SchemaManager
    except ImportError as exc:  # pragma: no cover - the postgres extra brings it
        raise ConfigError(
            "the fleet's queue needs procrastinate: pip install 'meeting-recorder[postgres]'"
        ) from exc
    _execute_script(SchemaManager.get_schema())
    op.create_table(
        "recordings",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("channel", sa.String(length=255), nullable=False),
        sa.Column("options", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("meeting_id", sa.Integer(), nullable=True),
        sa.Column("worker_host", sa.String(length=255), nullable=True),
        sa.Column("worker_pid", sa.Integer(), nullable=True),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("lease_expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claims", sa.Integer(), server_default="0", nullable=False),
        sa.Column("stop_requested", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("turns", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in RECORDING_STATUSES) + ")",
            name="ck_recordings_status",
        ),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name="fk_recordings_meeting_id_meetings",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_recordings"),
    )
    op.create_index("ix_recordings_status", "recordings", ["status"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_recordings_status", table_name="recordings")
    op.drop_table("recordings")
    _execute_script(_DROP_PROCRASTINATE)
