"""Plain frozen records that the transcript store takes and returns.

Nothing outside ``storage`` ever sees an ORM object: these dataclasses are
the whole vocabulary between the store and the bot, the CLI and the exports.
Times are timezone-aware UTC datetimes; positions on the meeting timeline are
integer milliseconds since the meeting started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.notes import MeetingNotes

__all__ = [
    "MEETING_STATUSES",
    "GAP_STATES",
    "TURN_SOURCES",
    "AudioSegment",
    "Gap",
    "Meeting",
    "MeetingSummary",
    "Note",
    "Participant",
    "QueryResult",
    "SearchHit",
    "SessionClosed",
    "SessionOpened",
    "StreamSession",
    "Turn",
    "TurnRecord",
    "Word",
]

MEETING_STATUSES = ("recording", "completed", "partial", "failed", "interrupted")
#: Where a turn's words came from: the live stream, a gap repaired from the stored
#: audio, or a re-transcription of the whole meeting.
TURN_SOURCES = ("live", "repaired", "retranscribed")
GAP_STATES = ("open", "repaired", "lost")


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word with its place on the meeting timeline."""

    text: str
    start_ms: int
    end_ms: int
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """A final turn to store; upserted by (stream_session_id, turn_order).

    A second record with the same key replaces the first (a formatted final
    replacing an unformatted one).
    """

    meeting_id: int
    uid: int
    stream_session_id: int
    turn_order: int
    start_ms: int
    end_ms: int
    text: str
    words: tuple[Word, ...] = ()
    end_of_turn_confidence: float | None = None
    language: str | None = None
    source: str = "live"
    revision: int = 1


@dataclass(frozen=True, slots=True)
class Turn:
    """A stored turn, as read back."""

    id: int
    meeting_id: int
    uid: int
    display_name: str | None
    stream_session_id: int
    turn_order: int
    start_ms: int
    end_ms: int
    text: str
    words: tuple[Word, ...] = ()
    end_of_turn_confidence: float | None = None
    language: str | None = None
    source: str = "live"
    revision: int = 1

    @property
    def speaker(self) -> str:
        """The name to show: the display name if known, else the uid."""
        return self.display_name or str(self.uid)


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch of one participant's audio that live transcription missed.

    ``state`` is ``open`` (not transcribed yet; the stored audio can repair it),
    ``repaired`` (transcribed from the stored audio) or ``lost`` (nothing to
    repair it from). ``cause`` says why live transcription missed it.
    """

    id: int
    meeting_id: int
    uid: int
    from_ms: int
    to_ms: int
    cause: str
    state: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class AudioSegment:
    """One stored audio file: a continuous run of one participant's received audio.

    ``start_ms`` is where its first sample sits on the meeting timeline.
    ``is_complete`` is false while it is being written (or if the recorder died
    before it was finished: the file is then the uncompressed one being written).
    """

    id: int
    meeting_id: int
    uid: int
    start_ms: int
    duration_ms: int
    sample_rate_hz: int
    format: str
    bytes: int
    sha256: str | None
    path: str
    is_complete: bool

    @property
    def end_ms(self) -> int:
        """Where its last sample ends on the meeting timeline."""
        return self.start_ms + self.duration_ms


@dataclass(frozen=True, slots=True)
class Participant:
    """Someone who was in the meeting's channel."""

    meeting_id: int
    uid: int
    display_name: str | None
    first_seen: datetime
    last_seen: datetime
    talk_ms: int = 0
    turn_count: int = 0

    @property
    def speaker(self) -> str:
        """The name to show: the display name if known, else the uid."""
        return self.display_name or str(self.uid)


@dataclass(frozen=True, slots=True)
class StreamSession:
    """One STT socket; its open time is what the provider bills."""

    id: int
    meeting_id: int
    uid: int
    provider_session_id: str | None
    opened_at: datetime
    closed_at: datetime | None
    audio_seconds: float
    close_code: int | None
    close_reason: str | None

    @property
    def billed_seconds(self) -> float:
        """Seconds the socket was open (0 while still open), on the meeting's clock.

        The recorder stores ``closed_at`` as ``opened_at`` plus the open time on the
        meeting's clock: wall seconds at real time, wall seconds times N for a
        replay at ``--speed N`` (recorder.sessions.SocketRecords).
        """
        if self.closed_at is None:
            return 0.0
        return max(0.0, (self.closed_at - self.opened_at).total_seconds())


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """An STT socket that opened for a participant (a write; the store gives its id)."""

    meeting_id: int
    uid: int
    opened_at: datetime
    provider_session_id: str | None = None


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """An STT socket that closed: the billed interval and why (a write)."""

    session_id: int
    closed_at: datetime
    audio_seconds: float
    close_code: int | None = None
    close_reason: str | None = None
    provider_session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """Something the bot wrote about the meeting, such as a spoken recap."""

    id: int
    meeting_id: int
    kind: str
    text: str
    created_at: datetime
    spoken: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MeetingSummary:
    """One line of ``recorder meetings``."""

    id: int
    channel: str
    started_at: datetime
    ended_at: datetime | None
    status: str
    bot_uid: int
    participant_count: int
    turn_count: int
    open_gaps: int = 0

    @property
    def duration_s(self) -> float | None:
        """Length of the meeting in seconds, or None while it is still recording."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class Meeting:
    """A whole meeting: header, participants, turns in time order, notes, sessions.

    ``meeting_notes`` is the current revision of the written notes, if any.
    """

    summary: MeetingSummary
    participants: tuple[Participant, ...]
    turns: tuple[Turn, ...]
    notes: tuple[Note, ...]
    stream_sessions: tuple[StreamSession, ...] = ()
    gaps: tuple[Gap, ...] = ()
    revision: int = 1
    revisions: tuple[int, ...] = (1,)
    meeting_notes: MeetingNotes | None = None


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One ranked full-text match."""

    turn_id: int
    meeting_id: int
    channel: str
    meeting_started_at: datetime
    uid: int
    display_name: str | None
    start_ms: int
    end_ms: int
    text: str
    snippet: str
    rank: float

    @property
    def speaker(self) -> str:
        """The name to show: the display name if known, else the uid."""
        return self.display_name or str(self.uid)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows from a read-only ``recorder sql`` statement.

    ``truncated`` is true when the statement had more rows than were asked for.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool = False
