"""The meeting heartbeat that participant and turn writes give: every few seconds at most."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from recorder.errors import NotFoundError
from storage.models import MeetingRow
from storage.records import TurnRecord
from storage.store import TranscriptStore
from storage.writes import BEAT_EVERY

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


async def heartbeat_of(store: TranscriptStore, meeting: int) -> datetime:
    query = select(MeetingRow.heartbeat_at).where(MeetingRow.id == meeting)
    found = await store.run_in_transaction(lambda c: c.scalar(query), write=False)
    assert found is not None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


async def test_participant_writes_beat_the_meeting_every_few_seconds_at_most(
    store: TranscriptStore,
) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    first = T0 + timedelta(seconds=1)
    await store.record_participant(meeting, 7, first)
    assert await heartbeat_of(store, meeting) == first
    # A socket opened soon after: its participant is known, the beat is recent.
    await store.open_stream_session(meeting, 7, first + BEAT_EVERY / 2)
    await store.record_participant(meeting, 8, first + BEAT_EVERY / 2)
    assert await heartbeat_of(store, meeting) == first
    later = first + BEAT_EVERY
    await store.open_stream_session(meeting, 7, later)
    assert await heartbeat_of(store, meeting) == later
    # Another meeting has its own beats.
    other = await store.start_meeting("d", 1, T0)
    await store.record_participant(other, 7, first)
    assert await heartbeat_of(store, other) == first


async def test_a_rolled_back_beat_does_not_count(store: TranscriptStore) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    first = T0 + timedelta(seconds=1)

    async def seen_then_failed() -> None:
        await store.record_participant(meeting, 7, first)
        raise NotFoundError("something after it failed")

    with pytest.raises(NotFoundError):
        await store.run_as_one(seen_then_failed)
    assert await heartbeat_of(store, meeting) == T0
    soon = first + timedelta(seconds=1)
    await store.record_participant(meeting, 7, soon)
    assert await heartbeat_of(store, meeting) == soon


async def test_turns_beat_the_meeting_every_few_seconds_at_most(store: TranscriptStore) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    session = await store.open_stream_session(meeting, 7, T0)

    def said(order: int) -> TurnRecord:
        return TurnRecord(meeting, 7, session, order, order * 1000, order * 1000 + 500, "hi")

    await store.upsert_turns([said(0)])
    beaten = await heartbeat_of(store, meeting)
    assert beaten > T0 + timedelta(days=1)  # now, not the meeting's start
    await store.upsert_turns([said(1)])
    assert await heartbeat_of(store, meeting) == beaten


async def test_a_participant_of_no_meeting_is_a_clear_error(store: TranscriptStore) -> None:
    with pytest.raises(NotFoundError, match="no meeting with id 987654"):
        await store.open_stream_session(987654, 7, T0)
    with pytest.raises(NotFoundError, match="no meeting with id 987654"):
        await store.record_participant(987654, 7, T0)
