"""Stream-session rows written in batches (a socket per turn of every speaker), both databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from recorder.errors import NotFoundError
from recorder.persist import (
    StoreWrites,
    participant_write,
    session_closed_write,
    session_write,
)
from storage.records import SessionClosed, SessionOpened
from storage.store import TranscriptStore
from tests.support.writes import turn_said

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@contextmanager
def statements(store: TranscriptStore) -> Iterator[list[str]]:
    """The statements the store sends to its database meanwhile (an executemany is one)."""
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        seen.append(statement)

    engine = store._engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def test_a_batch_of_opens_is_three_statements_with_ids_in_order(
    store: TranscriptStore,
) -> None:
    meeting = await store.start_meeting("standup", 1, T0)
    await store.open_stream_session(meeting, 101, T0)
    await store.open_stream_session(meeting, 202, T0)
    opened = [
        SessionOpened(meeting, 202, T0 + timedelta(seconds=5), "p-1"),
        SessionOpened(meeting, 101, T0 + timedelta(seconds=6)),
        SessionOpened(meeting, 202, T0 + timedelta(seconds=9)),
        SessionOpened(meeting, 101, T0 + timedelta(seconds=7)),
        SessionOpened(meeting, 202, T0 + timedelta(seconds=8)),
    ]
    with statements(store) as seen:
        ids = await store.open_stream_sessions(opened)
    # The participants' UPDATE and SELECT, the meeting's heartbeat, one INSERT for all
    # five (not two statements a socket); and the transaction's BEGIN on SQLite.
    assert len([s for s in seen if not s.startswith("BEGIN")]) == 4, seen

    stored = await store.get_meeting(meeting)
    by_id = {s.id: s for s in stored.stream_sessions}
    assert [(by_id[i].uid, by_id[i].opened_at, by_id[i].provider_session_id) for i in ids] == [
        (o.uid, o.opened_at, o.provider_session_id) for o in opened
    ]
    # The latest sighting wins, whatever the order within the batch.
    last_seen = {p.uid: p.last_seen for p in stored.participants}
    assert last_seen == {101: T0 + timedelta(seconds=7), 202: T0 + timedelta(seconds=9)}


async def test_a_batch_of_opens_adds_a_participant_never_seen(store: TranscriptStore) -> None:
    meeting = await store.start_meeting("standup", 1, T0)
    await store.open_stream_session(meeting, 101, T0)
    ids = await store.open_stream_sessions(
        [
            SessionOpened(meeting, 303, T0 + timedelta(seconds=4)),
            SessionOpened(meeting, 101, T0),
            SessionOpened(meeting, 303, T0 + timedelta(seconds=1)),
        ]
    )
    stored = await store.get_meeting(meeting)
    by_id = {s.id: s for s in stored.stream_sessions}
    assert [by_id[i].uid for i in ids] == [303, 101, 303]
    seen = {p.uid: (p.first_seen, p.last_seen) for p in stored.participants}
    assert seen == {101: (T0, T0), 303: (T0 + timedelta(seconds=1), T0 + timedelta(seconds=4))}


async def test_opens_for_a_missing_meeting_are_refused(store: TranscriptStore) -> None:
    with pytest.raises(NotFoundError, match="no meeting with id 4242"):
        await store.open_stream_sessions([SessionOpened(4242, 1, T0), SessionOpened(4242, 2, T0)])


async def test_a_batch_of_closes_is_one_update_and_names_a_missing_session(
    store: TranscriptStore,
) -> None:
    meeting = await store.start_meeting("standup", 1, T0)
    ids = await store.open_stream_sessions(
        [SessionOpened(meeting, uid, T0) for uid in (101, 202, 303)]
    )
    ended = T0 + timedelta(seconds=30)
    closes = [
        SessionClosed(ids[0], ended, 30.0, 1000, "normal"),
        SessionClosed(ids[1], ended, 12.5, 1011, None, "prov-late"),  # Begin came late
        SessionClosed(ids[2], ended, 3.0),
    ]
    with statements(store) as seen:
        await store.close_stream_sessions(closes)
    assert len([s for s in seen if s.lstrip().upper().startswith("UPDATE")]) == 2  # two shapes
    sessions = {s.id: s for s in (await store.get_meeting(meeting)).stream_sessions}
    assert [(sessions[i].audio_seconds, sessions[i].close_code) for i in ids] == [
        (30.0, 1000),
        (12.5, 1011),
        (3.0, None),
    ]
    assert sessions[ids[1]].provider_session_id == "prov-late"
    assert sessions[ids[0]].close_reason == "normal"

    later = T0 + timedelta(seconds=99)
    with pytest.raises(NotFoundError, match="no stream session with id 987654"):
        await store.close_stream_sessions(
            [SessionClosed(ids[0], later, 99.0), SessionClosed(987654, later, 1.0)]
        )
    again = {s.id: s for s in (await store.get_meeting(meeting)).stream_sessions}
    assert again[ids[0]].audio_seconds == 30.0  # the failed batch stored nothing


async def test_a_fresh_batch_stores_sockets_turns_and_presence_as_one_at_a_time_did(
    store: TranscriptStore,
) -> None:
    """The same writes applied fresh (batched) and replayed (one by one) store the same rows."""

    async def apply(fresh: bool) -> tuple[object, ...]:
        meeting = await store.start_meeting(f"standup-{fresh}", 1, T0)

        def said(uid: int, order: int, text: str) -> object:
            return turn_said(meeting, uid, order, text, session=f"s-{uid}-{order}")

        def opened(uid: int, order: int, second: int) -> object:
            at = T0 + timedelta(seconds=second)
            return session_write(f"s-{uid}-{order}", meeting, uid, at, f"p-{uid}-{order}")

        def closed(uid: int, order: int, second: int) -> object:
            return session_closed_write(
                f"s-{uid}-{order}",
                closed_at=T0 + timedelta(seconds=second),
                audio_seconds=float(second),
                close_code=1000,
                close_reason=None,
            )

        writes = [
            participant_write(meeting, 202, T0, "Bob", "joined"),
            opened(101, 0, 1),
            opened(202, 1, 2),
            said(101, 0, "Hello"),
            closed(101, 0, 3),
            said(202, 1, "Hi"),
            participant_write(meeting, 202, T0 + timedelta(seconds=4), None, "left"),
            opened(101, 2, 5),
            said(101, 2, "Bye"),
            closed(202, 1, 6),
            closed(101, 2, 7),
        ]
        applier = StoreWrites(store)
        if fresh:
            await applier.apply(writes, fresh=True)
        else:
            for write in writes:
                await applier.apply([write])
        stored = await store.get_meeting(meeting)
        sessions = {s.id: s for s in stored.stream_sessions}
        return (
            [
                (t.uid, t.text, sessions[t.stream_session_id].provider_session_id)
                for t in stored.turns
            ],
            sorted(
                (s.uid, s.provider_session_id, s.opened_at, s.closed_at, s.audio_seconds)
                for s in stored.stream_sessions
            ),
            sorted((p.uid, p.display_name, p.last_seen) for p in stored.participants),
        )

    batched = await apply(fresh=True)
    assert batched == await apply(fresh=False)
    turns, sessions, _ = batched
    assert turns == [(101, "Hello", "p-101-0"), (202, "Hi", "p-202-1"), (101, "Bye", "p-101-2")]
    assert all(closed_at is not None for *_, closed_at, _ in sessions)
