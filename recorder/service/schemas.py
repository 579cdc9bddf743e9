"""The API's request and response bodies: pydantic models that are the documented schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from storage.records import MeetingSummary, Note, Participant, SearchHit

__all__ = [
    "ErrorBody",
    "ErrorResponse",
    "MeetingDetail",
    "MeetingOut",
    "MeetingPage",
    "NoteOut",
    "ParticipantOut",
    "ParticipantPatch",
    "SafeText",
    "SearchHitOut",
    "SearchResults",
    "SqlRequest",
    "SqlResult",
    "no_nul",
]


def no_nul(value: str) -> str:
    """Refuse NUL, which no database text can hold (a 4xx, not a database error)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


SafeText = Annotated[str, AfterValidator(no_nul)]


class ErrorBody(BaseModel):
    """What went wrong."""

    status: int
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error response has this body."""

    error: ErrorBody


class MeetingOut(BaseModel):
    """One meeting, as listed."""

    id: int
    channel: str
    started_at: datetime
    ended_at: datetime | None
    status: str
    duration_s: float | None
    participant_count: int
    turn_count: int

    @classmethod
    def of(cls, summary: MeetingSummary) -> MeetingOut:
        """From the store's record."""
        return cls(
            id=summary.id,
            channel=summary.channel,
            started_at=summary.started_at,
            ended_at=summary.ended_at,
            status=summary.status,
            duration_s=summary.duration_s,
            participant_count=summary.participant_count,
            turn_count=summary.turn_count,
        )


class MeetingPage(BaseModel):
    """A page of meetings, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    meetings: list[MeetingOut]
    next_cursor: str | None


class ParticipantOut(BaseModel):
    """Someone who was in the meeting."""

    uid: int
    display_name: str | None
    first_seen: datetime
    last_seen: datetime
    talk_ms: int
    turn_count: int

    @classmethod
    def of(cls, participant: Participant) -> ParticipantOut:
        """From the store's record."""
        return cls(
            uid=participant.uid,
            display_name=participant.display_name,
            first_seen=participant.first_seen,
            last_seen=participant.last_seen,
            talk_ms=participant.talk_ms,
            turn_count=participant.turn_count,
        )


class NoteOut(BaseModel):
    """Something the bot wrote about the meeting."""

    id: int
    kind: str
    text: str
    created_at: datetime
    spoken: bool
    meta: dict[str, Any]

    @classmethod
    def of(cls, note: Note) -> NoteOut:
        """From the store's record."""
        return cls(
            id=note.id,
            kind=note.kind,
            text=note.text,
            created_at=note.created_at,
            spoken=note.spoken,
            meta=note.meta,
        )


class MeetingDetail(BaseModel):
    """A meeting with its participants and notes (its turns: ``/transcript``)."""

    meeting: MeetingOut
    participants: list[ParticipantOut]
    notes: list[NoteOut]


class ParticipantPatch(BaseModel):
    """A new display name for a participant (null forgets it)."""

    model_config = ConfigDict(extra="forbid")

    display_name: Annotated[SafeText, Field(max_length=200)] | None


class SearchHitOut(BaseModel):
    """A matching turn; ``snippet`` marks matches as «match»."""

    meeting_id: int
    channel: str
    meeting_started_at: datetime
    turn_id: int
    uid: int
    speaker: str
    start_ms: int
    end_ms: int
    text: str
    snippet: str
    rank: float

    @classmethod
    def of(cls, hit: SearchHit) -> SearchHitOut:
        """From the store's record."""
        return cls(
            meeting_id=hit.meeting_id,
            channel=hit.channel,
            meeting_started_at=hit.meeting_started_at,
            turn_id=hit.turn_id,
            uid=hit.uid,
            speaker=hit.speaker,
            start_ms=hit.start_ms,
            end_ms=hit.end_ms,
            text=hit.text,
            snippet=hit.snippet,
            rank=hit.rank,
        )


class SearchResults(BaseModel):
    """Search hits, best first."""

    hits: list[SearchHitOut]


class SqlRequest(BaseModel):
    """One read-only SQL statement."""

    model_config = ConfigDict(extra="forbid")

    sql: Annotated[SafeText, Field(min_length=1, max_length=100_000)]
    max_rows: Annotated[int, Field(ge=1, le=10_000)] = 1000
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 30.0


class SqlResult(BaseModel):
    """The statement's rows (at most ``max_rows``; ``truncated`` if it had more)."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
