"""SQLAlchemy 2.0 models of the transcript database: the tables behind :mod:`storage.records`.

The models describe the portable tables; the full-text search objects (SQLite
FTS5 table and triggers, PostgreSQL tsvector column and GIN index) exist only
in the migrations and are hidden from autogenerate by :func:`include_object`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "FTS_OBJECT_NAMES",
    "ApiTokenRow",
    "AudioSegmentRow",
    "AuditRow",
    "Base",
    "GapRow",
    "MeetingNotesRow",
    "MeetingEventRow",
    "MeetingRow",
    "NoteRow",
    "NotesPendingRow",
    "ParticipantRow",
    "StreamSessionRow",
    "TurnRow",
    "UTCDateTime",
    "WebhookDeliveryRow",
    "WebhookEndpointRow",
    "include_object",
]

# Deterministic constraint names, so migrations can drop what they created.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Objects made by the migrations for full-text search that the models do not
# describe: the FTS5 table and its shadow tables (SQLite), the generated
# tsvector column and its GIN index (PostgreSQL).
FTS_OBJECT_NAMES = frozenset({"turns_fts", "text_search", "ix_turns_text_search"})
# The fleet's own table (migrations/versions/0004_fleet.py); procrastinate's start with
# procrastinate_.
FLEET_TABLE_NAMES = frozenset({"recordings"})


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no timezone type and hands back naive values; they are stored
    in UTC and read back with ``tzinfo=UTC``. Naive input is refused, since
    its meaning is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC (and to naive UTC for SQLite) before storing."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; pass a timezone-aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base holding the shared metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class MeetingRow(Base):
    """One recording of a channel."""

    __tablename__ = "meetings"
    __table_args__ = (
        CheckConstraint(
            "status IN ('recording', 'completed', 'partial', 'failed', 'interrupted')",
            name="status",
        ),
        Index(None, "channel", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="recording")
    bot_uid: Mapped[int] = mapped_column(BigInteger)
    # Who is recording, so a restart can tell its own dead meetings from a
    # live one on another machine (see TranscriptStore.mark_interrupted_meetings).
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ParticipantRow(Base):
    """Someone seen in the meeting's channel, identified by uid."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("meeting_id", "uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    display_name: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class StreamSessionRow(Base):
    """One STT socket of one participant; its open time is the billed time."""

    __tablename__ = "stream_sessions"
    __table_args__ = (Index(None, "meeting_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    provider_session_id: Mapped[str | None] = mapped_column(String(128))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    audio_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    close_code: Mapped[int | None] = mapped_column(Integer)
    close_reason: Mapped[str | None] = mapped_column(Text)


class TurnRow(Base):
    """A final turn; unique per (stream_session_id, turn_order)."""

    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("stream_session_id", "turn_order"),
        Index(None, "meeting_id", "start_ms"),
        Index(None, "participant_id"),
        Index(None, "meeting_id", "revision"),
    )

    # Integer (not BigInteger) so that SQLite makes it the rowid, which the
    # FTS5 external-content table points at (content_rowid).
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    stream_session_id: Mapped[int] = mapped_column(
        ForeignKey("stream_sessions.id", ondelete="CASCADE")
    )
    turn_order: Mapped[int] = mapped_column(Integer)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    words: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    end_of_turn_confidence: Mapped[float | None] = mapped_column(Float)
    language: Mapped[str | None] = mapped_column(String(32))
    # 'live' (streaming), 'repaired' (a gap transcribed from the stored audio) or
    # 'retranscribed'; and which transcript revision the turn belongs to (1: the
    # recording's own, live and repaired; 2 and up: 'recorder retranscribe').
    source: Mapped[str] = mapped_column(String(16), default="live", server_default="live")
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class AudioSegmentRow(Base):
    """One file of a participant's stored audio: a continuous run of what was received."""

    __tablename__ = "audio_segments"
    __table_args__ = (Index(None, "meeting_id", "uid", "start_ms"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int] = mapped_column(BigInteger)
    sample_rate_hz: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    is_complete: Mapped[bool] = mapped_column(Boolean, default=False)


class GapRow(Base):
    """A stretch of a participant's audio that live transcription missed."""

    __tablename__ = "gaps"
    __table_args__ = (
        CheckConstraint("state IN ('open', 'repaired', 'lost')", name="state"),
        Index(None, "meeting_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    from_ms: Mapped[int] = mapped_column(BigInteger)
    to_ms: Mapped[int] = mapped_column(BigInteger)
    cause: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="open")
    detail: Mapped[str | None] = mapped_column(Text)


class NoteRow(Base):
    """Something the bot wrote about a meeting (a recap, ...)."""

    __tablename__ = "notes"
    __table_args__ = (Index(None, "meeting_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    spoken: Mapped[bool] = mapped_column(Boolean, default=False)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class MeetingNotesRow(Base):
    """One revision of a meeting's written notes (summary, decisions, actions, questions).

    The highest revision is the current one; ``recorder notes --force`` adds a new one
    and keeps the earlier ones.
    """

    __tablename__ = "meeting_notes"
    __table_args__ = (UniqueConstraint("meeting_id", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    model: Mapped[str] = mapped_column(String(128))
    language: Mapped[str | None] = mapped_column(String(64))
    prompt: Mapped[str | None] = mapped_column(Text)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    price_usd: Mapped[float | None] = mapped_column(Float)


class NotesPendingRow(Base):
    """A meeting whose notes were asked for but not yet made (``recorder notes --pending``)."""

    __tablename__ = "notes_pending"

    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True
    )
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ApiTokenRow(Base):
    """A bearer token of the HTTP API; only its SHA-256 is stored (storage/tokens.py)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MeetingEventRow(Base):
    """Something that happened in a meeting, in commit order (storage/events.py)."""

    __tablename__ = "meeting_events"
    __table_args__ = (
        Index(None, "meeting_id", "id"),
        Index(None, "turn_id"),
        Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    turn_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditRow(Base):
    """An irreversible action taken through the API (a meeting deleted, ...)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class WebhookEndpointRow(Base):
    """A URL that receives signed events; its secret is derived, never stored."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Random, not secret: mixed into the derivation so a new endpoint never reuses a secret.
    salt: Mapped[str] = mapped_column(String(64))
    allow_private: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookDeliveryRow(Base):
    """One event for one endpoint: attempts, when to try next, what happened."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic autogenerate filter: skip the full-text search objects.

    They are created by hand in the migrations (FTS5 virtual table, triggers,
    generated tsvector column, GIN index) and have no model counterpart.
    """
    if name is None:
        return True
    if type_ == "table" and (name in FTS_OBJECT_NAMES or name.startswith("turns_fts_")):
        return False
    if type_ == "table" and (name in FLEET_TABLE_NAMES or name.startswith("procrastinate_")):
        return False  # the fleet's tables: PostgreSQL only, queried without models
    return not (type_ in ("column", "index") and name in FTS_OBJECT_NAMES)
