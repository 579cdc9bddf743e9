"""Records for the export tests, built directly (no database): the golden meeting and helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from recorder.export.exporter import iter_export
from storage.records import (
    Meeting,
    MeetingSummary,
    Note,
    Participant,
    StreamSession,
    Turn,
    TurnRecord,
    Word,
)

__all__ = [
    "START",
    "aiter_turns",
    "golden_meeting",
    "make_meeting",
    "make_turn",
    "migrate",
    "populate",
    "render",
    "store_meeting",
    "words_for",
]

START = datetime(2026, 11, 20, 9, 0, 0, tzinfo=UTC)


def words_for(text: str, start_ms: int, end_ms: int) -> tuple[Word, ...]:
    """Evenly spaced word timings across a span, as the STT would give (roughly)."""
    tokens = text.split()
    if not tokens:
        return ()
    step = (end_ms - start_ms) / len(tokens)
    return tuple(
        Word(
            token,
            start_ms + round(i * step),
            start_ms + round((i + 0.8) * step),
            round(0.9 + (i % 10) / 100, 2),
        )
        for i, token in enumerate(tokens)
    )


def make_turn(
    turn_id: int,
    uid: int,
    start_ms: int,
    end_ms: int,
    text: str,
    *,
    name: str | None = None,
    words: bool = True,
    meeting_id: int = 7,
) -> Turn:
    return Turn(
        id=turn_id,
        meeting_id=meeting_id,
        uid=uid,
        display_name=name,
        stream_session_id=uid * 10,
        turn_order=turn_id,
        start_ms=start_ms,
        end_ms=end_ms,
        text=text,
        words=words_for(text, start_ms, end_ms) if words else (),
        end_of_turn_confidence=1.0,
        language="en",
    )


def make_meeting(
    participants: Sequence[tuple[int, str | None]],
    turns: Sequence[Turn],
    *,
    meeting_id: int = 7,
    channel: str = "standup",
    notes: Iterable[Note] = (),
    duration_ms: int | None = 3_600_000,
) -> Meeting:
    talk: dict[int, int] = {}
    count: dict[int, int] = {}
    for turn in turns:
        talk[turn.uid] = talk.get(turn.uid, 0) + turn.end_ms - turn.start_ms
        count[turn.uid] = count.get(turn.uid, 0) + 1
    summary = MeetingSummary(
        id=meeting_id,
        channel=channel,
        started_at=START,
        ended_at=None if duration_ms is None else START + timedelta(milliseconds=duration_ms),
        status="completed" if duration_ms is not None else "recording",
        bot_uid=9999,
        participant_count=len(participants),
        turn_count=len(turns),
    )
    return Meeting(
        summary=summary,
        participants=tuple(
            Participant(
                meeting_id=meeting_id,
                uid=uid,
                display_name=name,
                first_seen=START + timedelta(seconds=index),
                last_seen=START + timedelta(milliseconds=duration_ms or 0),
                talk_ms=talk.get(uid, 0),
                turn_count=count.get(uid, 0),
            )
            for index, (uid, name) in enumerate(participants)
        ),
        turns=tuple(turns),
        notes=tuple(notes),
        stream_sessions=tuple(
            StreamSession(
                id=uid * 10,
                meeting_id=meeting_id,
                uid=uid,
                provider_session_id=f"sess-{uid}",
                opened_at=START,
                closed_at=START + timedelta(milliseconds=duration_ms or 0),
                audio_seconds=12.5,
                close_code=1000,
                close_reason=None,
            )
            for uid, _ in participants
        ),
    )


def golden_meeting() -> Meeting:
    """Three speakers (one unnamed), Unicode, a recap note, an empty turn, two hours."""
    alice, li, anon = 101, 202, 303
    names = {alice: "Alice Martín", li: "李雷", anon: None}
    raw = [
        (alice, 1_200, 4_800, "Good morning, everyone. Let's get started."),
        (alice, 5_100, 9_900, "First item: the café launch — we're on track for Friday?"),
        (
            li,
            10_400,
            21_900,
            "是的，我们周五上线。 The staging build passed every check "
            "last night, and the rollback plan is written down in the runbook.",
        ),
        (anon, 18_000, 19_200, "Sorry, quick question."),
        (li, 22_300, 22_300, ""),
        (anon, 23_000, 27_500, "Does the rollout include the naïve-Bayes filter? 🚀"),
        (alice, 28_000, 31_000, "Yes, 50% of traffic first, then 100%.", False),
        (li, 3_600_000, 3_604_000, "Halfway there; still on schedule."),
        (alice, 7_185_000, 7_191_500, "That's all. Thanks, everyone — see you next week!"),
    ]
    turns = []
    for index, item in enumerate(raw, start=1):
        uid, start, end, text = item[:4]
        has_words = item[4] if len(item) > 4 else True
        turns.append(make_turn(index, uid, start, end, text, name=names[uid], words=has_words))
    recap = Note(
        id=1,
        meeting_id=7,
        kind="recap",
        text="Launch is on track for Friday.\nRollout: 50% then 100%.\n\nNext sync: next week.",
        created_at=START + timedelta(milliseconds=7_195_000),
        spoken=True,
        meta={"agent": "emulator", "latency_ms": 840},
    )
    return make_meeting(
        list(names.items()),
        turns,
        channel="design-review ✨",
        notes=[recap],
        duration_ms=7_205_000,
    )


async def aiter_turns(turns: Iterable[Turn]) -> AsyncIterator[Turn]:
    for turn in turns:
        yield turn


async def render(meeting: Meeting, fmt: str) -> str:
    return "".join([piece async for piece in iter_export(meeting, aiter_turns(meeting.turns), fmt)])


async def store_meeting(store: Any, meeting: Meeting) -> int:
    """Write a meeting built from records into a real store; returns its new id.

    Participants, stream sessions, turns and notes go through the same store
    calls the bot makes. Ids differ from the records' (the database assigns them).
    """
    summary = meeting.summary
    meeting_id = await store.start_meeting(summary.channel, summary.bot_uid, summary.started_at)
    sessions: dict[int, int] = {}
    for participant in meeting.participants:
        await store.record_participant(
            meeting_id, participant.uid, participant.first_seen, participant.display_name
        )
        await store.record_participant(meeting_id, participant.uid, participant.last_seen)
    for session in meeting.stream_sessions:
        sessions[session.id] = await store.open_stream_session(
            meeting_id, session.uid, session.opened_at, session.provider_session_id
        )
    records = [
        TurnRecord(
            meeting_id=meeting_id,
            uid=turn.uid,
            stream_session_id=sessions[turn.stream_session_id],
            turn_order=turn.turn_order,
            start_ms=turn.start_ms,
            end_ms=turn.end_ms,
            text=turn.text,
            words=turn.words,
            end_of_turn_confidence=turn.end_of_turn_confidence,
            language=turn.language,
        )
        for turn in meeting.turns
    ]
    for start in range(0, len(records), 5000):
        await store.upsert_turns(records[start : start + 5000])
    for note in meeting.notes:
        await store.add_note(
            meeting_id,
            note.kind,
            note.text,
            created_at=note.created_at,
            spoken=note.spoken,
            meta=note.meta,
        )
    for session in meeting.stream_sessions:
        if session.closed_at is not None:
            await store.close_stream_session(
                sessions[session.id],
                closed_at=session.closed_at,
                audio_seconds=session.audio_seconds,
                close_code=session.close_code,
                close_reason=session.close_reason,
            )
    if summary.ended_at is not None:
        await store.finish_meeting(meeting_id, summary.ended_at, status=summary.status)
    return int(meeting_id)


def populate(url: str, *, meetings: int = 1) -> list[int]:
    """Migrate ``url`` and store the golden meeting (and more); sync, for CLI tests."""
    import asyncio

    from storage.db import upgrade_database
    from storage.store import TranscriptStore

    async def main() -> list[int]:
        await upgrade_database(url)
        ids = []
        async with await TranscriptStore.open(url) as store:
            for index in range(meetings):
                meeting = golden_meeting()
                if index:
                    meeting = make_meeting(
                        [(501, "Dana")],
                        [make_turn(1, 501, 1000, 5000, f"Budget review number {index}.")],
                        channel=f"finance-{index}",
                    )
                ids.append(await store_meeting(store, meeting))
        return ids

    return asyncio.run(main())


def migrate(url: str) -> None:
    """An empty, migrated database."""
    import asyncio

    from storage.db import upgrade_database

    asyncio.run(upgrade_database(url))
