"""Durable audio and honest status: audio segments, transcription gaps, turn sources.

Meetings may end ``partial`` or ``failed``; ``audio_segments`` indexes every
participant's stored audio; ``gaps`` records stretches of speech live
transcription missed; turns say whether they were heard ``live`` or
``repaired`` from the stored audio, and which transcript ``revision`` they
belong to.

Revision ID: 0002_durable
Revises: 0007_service
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_durable"
down_revision: str | Sequence[str] | None = "0007_service"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATUSES = "status IN ('recording', 'completed', 'interrupted')"
_NEW_STATUSES = "status IN ('recording', 'completed', 'partial', 'failed', 'interrupted')"


def _set_status_check(old: str, new: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # SQLite cannot alter a CHECK constraint, and copying the table (batch mode)
        # would drop it, which with foreign keys on cascades into every child table.
        # Changing only the stored CREATE TABLE text is SQLite's documented way for a
        # change that leaves the stored rows valid
        # (https://www.sqlite.org/lang_altertable.html, section 7, "writable_schema").
        sql = bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'meetings'"
        ).scalar_one()
        if old not in sql:
            raise RuntimeError(f"unexpected meetings table definition: {sql}")
        version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
        bind.exec_driver_sql("PRAGMA writable_schema = ON")
        bind.exec_driver_sql(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'meetings'",
            (sql.replace(old, new),),
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    else:
        op.drop_constraint("ck_meetings_status", "meetings", type_="check")
        op.create_check_constraint("ck_meetings_status", "meetings", new)


def upgrade() -> None:
    _set_status_check(_OLD_STATUSES, _NEW_STATUSES)
    op.create_table(
        "audio_segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("sample_rate_hz", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("is_complete", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name="fk_audio_segments_meeting_id_meetings",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audio_segments"),
    )
    op.create_index(
        "ix_audio_segments_meeting_id_uid_start_ms",
        "audio_segments",
        ["meeting_id", "uid", "start_ms"],
    )
    op.create_table(
        "gaps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("from_ms", sa.BigInteger(), nullable=False),
        sa.Column("to_ms", sa.BigInteger(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('open', 'repaired', 'lost')", name="ck_gaps_state"),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name="fk_gaps_meeting_id_meetings",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_gaps"),
    )
    op.create_index("ix_gaps_meeting_id", "gaps", ["meeting_id"])
    op.add_column(
        "turns",
        sa.Column("source", sa.String(length=16), server_default="live", nullable=False),
    )
    op.add_column("turns", sa.Column("revision", sa.Integer(), server_default="1", nullable=False))
    op.create_index("ix_turns_meeting_id_revision", "turns", ["meeting_id", "revision"])


def downgrade() -> None:
    op.drop_index("ix_turns_meeting_id_revision", table_name="turns")
    # Not batch mode: copying turns would drop its full-text triggers (SQLite 3.35+
    # drops a column in place).
    op.drop_column("turns", "revision")
    op.drop_column("turns", "source")
    op.drop_index("ix_gaps_meeting_id", table_name="gaps")
    op.drop_table("gaps")
    op.drop_index("ix_audio_segments_meeting_id_uid_start_ms", table_name="audio_segments")
    op.drop_table("audio_segments")
    op.execute("UPDATE meetings SET status = 'interrupted' WHERE status IN ('partial', 'failed')")
    _set_status_check(_NEW_STATUSES, _OLD_STATUSES)
