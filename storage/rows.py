"""Rows to records and back: text cleaning, JSON words, and the read queries the store shares.

Everything here works on a connection the caller owns; the store decides
the transactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, null, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from recorder.errors import NotFoundError
from storage.models import (
    GapRow,
    MeetingRow,
    NoteRow,
    ParticipantRow,
    StreamSessionRow,
    TurnRow,
)
from storage.notes import load_current_notes
from storage.records import (
    Gap,
    Meeting,
    MeetingSummary,
    Note,
    Participant,
    StreamSession,
    Turn,
    Word,
)
from storage.status import effective_status

__all__ = [
    "clean_optional",
    "storable_text",
    "load_gaps",
    "load_meeting",
    "meeting_revisions",
    "pick_revision",
    "summary_from_row",
    "summary_select",
    "turn_from_row",
    "turn_select",
    "words_from_json",
    "words_to_json",
]


def storable_text(value: str) -> str:
    """Make text storable on every backend, identically.

    PostgreSQL text cannot hold NUL, so NUL characters are removed on both
    databases (they carry no meaning in a transcript); lone UTF-16 surrogates,
    which UTF-8 cannot encode, become U+FFFD (a split surrogate pair is joined).
    """
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16: a surrogate pair becomes its character, a lone one U+FFFD.
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value


def clean_optional(value: str | None) -> str | None:
    """:func:`storable_text` for an optional value."""
    return None if value is None else storable_text(value)


def words_to_json(words: Sequence[Word]) -> list[dict[str, Any]]:
    """Words as stored in ``turns.words``: a JSON list of objects."""
    return [
        {
            "text": storable_text(word.text),
            "start_ms": word.start_ms,
            "end_ms": word.end_ms,
            "confidence": word.confidence,
        }
        for word in words
    ]


def words_from_json(value: Any) -> tuple[Word, ...]:
    """Words read back from ``turns.words``."""
    if not value:
        return ()
    return tuple(
        Word(
            text=item["text"],
            start_ms=int(item["start_ms"]),
            end_ms=int(item["end_ms"]),
            confidence=item.get("confidence"),
        )
        for item in value
    )


def summary_select() -> Select[Any]:
    """Meetings with their participant and turn counts (for :func:`summary_from_row`)."""
    participant_count = (
        select(func.count(ParticipantRow.id))
        .where(ParticipantRow.meeting_id == MeetingRow.id)
        .scalar_subquery()
    )
    newer = aliased(TurnRow)
    latest_revision = (
        select(func.coalesce(func.max(newer.revision), 1))
        .where(newer.meeting_id == MeetingRow.id)
        .scalar_subquery()
    )
    turn_count = (
        select(func.count(TurnRow.id))
        .where(TurnRow.meeting_id == MeetingRow.id, TurnRow.revision == latest_revision)
        .scalar_subquery()
    )
    open_gaps = (
        select(func.count(GapRow.id))
        .where(GapRow.meeting_id == MeetingRow.id, GapRow.state != "repaired")
        .scalar_subquery()
    )
    return select(
        MeetingRow.id,
        MeetingRow.channel,
        MeetingRow.started_at,
        MeetingRow.ended_at,
        MeetingRow.status,
        MeetingRow.bot_uid,
        participant_count.label("participant_count"),
        turn_count.label("turn_count"),
        open_gaps.label("open_gaps"),
        MeetingRow.host,
        MeetingRow.pid,
        MeetingRow.heartbeat_at,
    )


def summary_from_row(row: Row[Any]) -> MeetingSummary:
    """A row of :func:`summary_select` as a record."""
    return MeetingSummary(
        id=row.id,
        channel=row.channel,
        started_at=row.started_at,
        ended_at=row.ended_at,
        status=effective_status(
            row.status, host=row.host, pid=row.pid, heartbeat_at=row.heartbeat_at
        ),
        bot_uid=row.bot_uid,
        participant_count=int(row.participant_count or 0),
        turn_count=int(row.turn_count or 0),
        open_gaps=int(row.open_gaps or 0),
    )


def turn_select(*, with_words: bool = True) -> Select[Any]:
    """Turns with their participant's uid and name (for :func:`turn_from_row`).

    Args:
        with_words: also read the word timings; they are most of a row (JSON to
            parse), and only some readers need them.
    """
    return select(
        TurnRow.id,
        TurnRow.meeting_id,
        ParticipantRow.uid,
        ParticipantRow.display_name,
        TurnRow.stream_session_id,
        TurnRow.turn_order,
        TurnRow.start_ms,
        TurnRow.end_ms,
        TurnRow.text,
        (TurnRow.words if with_words else null()).label("words"),
        TurnRow.end_of_turn_confidence,
        TurnRow.language,
        TurnRow.source,
        TurnRow.revision,
    ).join(ParticipantRow, ParticipantRow.id == TurnRow.participant_id)


def turn_from_row(row: Row[Any]) -> Turn:
    """A row of :func:`turn_select` as a record.

    Unpacked by position (the select's column order): reading a Row's fields by
    name costs several times more, and exports read every turn of a meeting.
    """
    (
        turn_id,
        meeting_id,
        uid,
        display_name,
        stream_session_id,
        turn_order,
        start_ms,
        end_ms,
        text,
        words,
        end_of_turn_confidence,
        language,
        source,
        revision,
    ) = row
    return Turn(
        id=turn_id,
        meeting_id=meeting_id,
        uid=uid,
        display_name=display_name,
        stream_session_id=stream_session_id,
        turn_order=turn_order,
        start_ms=start_ms,
        end_ms=end_ms,
        text=text,
        words=words_from_json(words) if words is not None else (),
        end_of_turn_confidence=end_of_turn_confidence,
        language=language,
        source=source,
        revision=revision,
    )


async def meeting_revisions(connection: AsyncConnection, meeting_id: int) -> tuple[int, ...]:
    """The transcript revisions a meeting has, oldest first (``(1,)`` with no turns)."""
    found = tuple(
        int(value)
        for value in await connection.scalars(
            select(TurnRow.revision)
            .where(TurnRow.meeting_id == meeting_id)
            .distinct()
            .order_by(TurnRow.revision)
        )
    )
    return found or (1,)


async def pick_revision(
    connection: AsyncConnection, meeting_id: int, revision: int | None
) -> tuple[int, tuple[int, ...]]:
    """The revision to read (the latest unless one is asked for) and all of them.

    Raises:
        NotFoundError: the meeting has no such revision.
    """
    revisions = await meeting_revisions(connection, meeting_id)
    if revision is None:
        return revisions[-1], revisions
    if revision not in revisions:
        listed = ", ".join(str(r) for r in revisions)
        raise NotFoundError(
            f"meeting {meeting_id} has no transcript revision {revision}; it has {listed}"
        )
    return revision, revisions


async def load_gaps(connection: AsyncConnection, meeting_id: int) -> tuple[Gap, ...]:
    """A meeting's gaps in time order."""
    return tuple(
        Gap(
            id=row.id,
            meeting_id=row.meeting_id,
            uid=row.uid,
            from_ms=row.from_ms,
            to_ms=row.to_ms,
            cause=row.cause,
            state=row.state,
            detail=row.detail,
        )
        for row in await connection.execute(
            select(GapRow)
            .where(GapRow.meeting_id == meeting_id)
            .order_by(GapRow.from_ms, GapRow.uid, GapRow.id)
        )
    )


async def load_meeting(
    connection: AsyncConnection,
    meeting_id: int,
    *,
    with_turns: bool = True,
    revision: int | None = None,
) -> Meeting:
    """Read a whole meeting on one connection (``with_turns=False``: all but its turns).

    Args:
        connection: where to read.
        meeting_id: the meeting.
        with_turns: False leaves ``turns`` empty.
        revision: the transcript revision to read (None: the latest).

    Raises:
        NotFoundError: no such meeting, or no such revision.
    """
    header = (
        await connection.execute(summary_select().where(MeetingRow.id == meeting_id))
    ).one_or_none()
    if header is None:
        raise NotFoundError(
            f"no meeting with id {meeting_id}; run 'recorder meetings' to list them"
        )
    chosen, revisions = await pick_revision(connection, meeting_id, revision)
    talk = (
        select(
            TurnRow.participant_id,
            func.sum(TurnRow.end_ms - TurnRow.start_ms).label("talk_ms"),
            func.count(TurnRow.id).label("turn_count"),
        )
        .where(TurnRow.meeting_id == meeting_id, TurnRow.revision == chosen)
        .group_by(TurnRow.participant_id)
        .subquery()
    )
    participants = tuple(
        Participant(
            meeting_id=meeting_id,
            uid=row.uid,
            display_name=row.display_name,
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            talk_ms=int(row.talk_ms or 0),
            turn_count=int(row.turn_count or 0),
        )
        for row in await connection.execute(
            select(
                ParticipantRow.uid,
                ParticipantRow.display_name,
                ParticipantRow.first_seen,
                ParticipantRow.last_seen,
                talk.c.talk_ms,
                talk.c.turn_count,
            )
            .outerjoin(talk, talk.c.participant_id == ParticipantRow.id)
            .where(ParticipantRow.meeting_id == meeting_id)
            .order_by(ParticipantRow.first_seen, ParticipantRow.uid)
        )
    )
    turns = (
        tuple(
            turn_from_row(row)
            for row in await connection.execute(
                turn_select()
                .where(TurnRow.meeting_id == meeting_id, TurnRow.revision == chosen)
                .order_by(TurnRow.start_ms, TurnRow.id)
            )
        )
        if with_turns
        else ()
    )
    notes = tuple(
        Note(
            id=row.id,
            meeting_id=row.meeting_id,
            kind=row.kind,
            text=row.text,
            created_at=row.created_at,
            spoken=bool(row.spoken),
            meta=dict(row.meta or {}),
        )
        for row in await connection.execute(
            select(NoteRow)
            .where(NoteRow.meeting_id == meeting_id)
            .order_by(NoteRow.created_at, NoteRow.id)
        )
    )
    sessions = tuple(
        StreamSession(
            id=row.id,
            meeting_id=row.meeting_id,
            uid=row.uid,
            provider_session_id=row.provider_session_id,
            opened_at=row.opened_at,
            closed_at=row.closed_at,
            audio_seconds=float(row.audio_seconds or 0.0),
            close_code=row.close_code,
            close_reason=row.close_reason,
        )
        for row in await connection.execute(
            select(
                StreamSessionRow.id,
                StreamSessionRow.meeting_id,
                ParticipantRow.uid,
                StreamSessionRow.provider_session_id,
                StreamSessionRow.opened_at,
                StreamSessionRow.closed_at,
                StreamSessionRow.audio_seconds,
                StreamSessionRow.close_code,
                StreamSessionRow.close_reason,
            )
            .join(ParticipantRow, ParticipantRow.id == StreamSessionRow.participant_id)
            .where(StreamSessionRow.meeting_id == meeting_id)
            .order_by(StreamSessionRow.opened_at, StreamSessionRow.id)
        )
    )
    return Meeting(
        summary=summary_from_row(header),
        participants=participants,
        turns=turns,
        notes=notes,
        stream_sessions=sessions,
        gaps=await load_gaps(connection, meeting_id),
        revision=chosen,
        revisions=revisions,
        meeting_notes=await load_current_notes(connection, meeting_id),
    )
