"""Writes a recording makes, built for the tests of how they are stored."""

from __future__ import annotations

from recorder.persist import Write, turn_write
from storage.records import TurnRecord


def turn_said(meeting: int, uid: int, order: int, text: str, *, session: str) -> Write:
    """A final turn of ``uid`` (half a second, at ``order`` s), naming its socket's ref."""
    record = TurnRecord(
        meeting_id=meeting,
        uid=uid,
        stream_session_id=0,
        turn_order=order,
        start_ms=order * 1000,
        end_ms=order * 1000 + 500,
        text=text,
    )
    return turn_write(record, session=session)
