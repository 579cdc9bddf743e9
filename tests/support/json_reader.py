"""Read a JSON export back into the store's records: the inverse of ``write_json``.

Only the tests read exports back (to prove the export loses nothing), so this lives here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from recorder.errors import RenderError
from recorder.export.json_format import SCHEMA_VERSION
from storage.records import (
    Meeting,
    MeetingSummary,
    Note,
    Participant,
    StreamSession,
    Turn,
    Word,
)


def _parse_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise RenderError(f"{where} must be an ISO 8601 time, got {value!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise RenderError(f"{where} must be an ISO 8601 time, got {value!r}") from None


def meeting_from_json(data: Mapping[str, Any]) -> Meeting:
    """Read an export back into the store's records (the inverse of ``write_json``).

    Raises:
        RenderError: the document is not a schema_version 1 export.
    """
    if data.get("schema_version") != SCHEMA_VERSION:
        raise RenderError(
            f"expected a recorder JSON export with schema_version {SCHEMA_VERSION}, "
            f"got {data.get('schema_version')!r}"
        )
    try:
        m = data["meeting"]
        meeting_id = m["id"]
        summary = MeetingSummary(
            id=meeting_id,
            channel=m["channel"],
            started_at=_parse_time(m["started_at"], "meeting.started_at"),
            ended_at=None
            if m["ended_at"] is None
            else _parse_time(m["ended_at"], "meeting.ended_at"),
            status=m["status"],
            bot_uid=m["bot_uid"],
            participant_count=m["participant_count"],
            turn_count=m["turn_count"],
        )
        participants = tuple(
            Participant(
                meeting_id=meeting_id,
                uid=p["uid"],
                display_name=p["display_name"],
                first_seen=_parse_time(p["first_seen"], "participant.first_seen"),
                last_seen=_parse_time(p["last_seen"], "participant.last_seen"),
                talk_ms=p["talk_ms"],
                turn_count=p["turn_count"],
            )
            for p in data["participants"]
        )
        sessions = tuple(
            StreamSession(
                id=s["id"],
                meeting_id=meeting_id,
                uid=s["uid"],
                provider_session_id=s["provider_session_id"],
                opened_at=_parse_time(s["opened_at"], "stream_session.opened_at"),
                closed_at=None
                if s["closed_at"] is None
                else _parse_time(s["closed_at"], "stream_session.closed_at"),
                audio_seconds=s["audio_seconds"],
                close_code=s["close_code"],
                close_reason=s["close_reason"],
            )
            for s in data["stream_sessions"]
        )
        notes = tuple(
            Note(
                id=n["id"],
                meeting_id=meeting_id,
                kind=n["kind"],
                text=n["text"],
                created_at=_parse_time(n["created_at"], "note.created_at"),
                spoken=n["spoken"],
                meta=n["meta"],
            )
            for n in data["notes"]
        )
        turns = tuple(
            Turn(
                id=t["id"],
                meeting_id=meeting_id,
                uid=t["uid"],
                display_name=t["display_name"],
                stream_session_id=t["stream_session_id"],
                turn_order=t["turn_order"],
                start_ms=t["start_ms"],
                end_ms=t["end_ms"],
                text=t["text"],
                words=tuple(
                    Word(w["text"], w["start_ms"], w["end_ms"], w["confidence"]) for w in t["words"]
                ),
                end_of_turn_confidence=t["end_of_turn_confidence"],
                language=t["language"],
            )
            for t in data["turns"]
        )
    except (KeyError, TypeError) as exc:
        raise RenderError(f"the JSON export is missing or garbles the field {exc}") from exc
    return Meeting(
        summary=summary,
        participants=participants,
        turns=turns,
        notes=notes,
        stream_sessions=sessions,
    )
