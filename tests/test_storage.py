"""TranscriptStore on real SQLite files and a real PostgreSQL: writes, reads, round-trips."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.errors import NotFoundError, StorageError
from storage.records import TurnRecord, Word
from storage.store import TranscriptStore, storable_text

T0 = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


def turn(meeting: int, uid: int, session: int, order: int, start: int, text: str, **kw):
    return TurnRecord(
        meeting_id=meeting,
        uid=uid,
        stream_session_id=session,
        turn_order=order,
        start_ms=start,
        end_ms=start + kw.pop("length", 1000),
        text=text,
        **kw,
    )


async def make_meeting(store: TranscriptStore, channel: str = "standup"):
    meeting = await store.start_meeting(channel, 9999, T0)
    alice = await store.open_stream_session(meeting, 101, T0, provider_session_id="s-a")
    bob = await store.open_stream_session(meeting, 202, T0 + timedelta(seconds=1))
    return meeting, alice, bob


async def test_meeting_lifecycle_round_trips(store: TranscriptStore) -> None:
    meeting, alice, bob = await make_meeting(store)
    await store.set_display_name(meeting, 101, "Alice")
    words = (Word("hello", 0, 400, 0.9), Word("there", 450, 900, None))
    await store.upsert_turns(
        [
            turn(meeting, 101, alice, 0, 0, "hello there", words=words, language="en"),
            turn(meeting, 202, bob, 0, 500, "hi", end_of_turn_confidence=0.75),
            turn(meeting, 101, alice, 1, 3000, "how are you", length=2000),
        ]
    )
    await store.close_stream_session(
        alice,
        closed_at=T0 + timedelta(seconds=60),
        audio_seconds=59.5,
        close_code=1000,
        close_reason="normal",
    )
    note = await store.add_note(
        meeting, "recap", "they said hello", created_at=T0 + timedelta(minutes=1), meta={"a": 1}
    )
    await store.set_note_spoken(note)
    await store.finish_meeting(meeting, T0 + timedelta(minutes=2))

    got = await store.get_meeting(meeting)
    assert got.summary.status == "completed"
    assert got.summary.duration_s == 120
    assert got.summary.participant_count == 2 and got.summary.turn_count == 3
    assert [(t.speaker, t.text) for t in got.turns] == [
        ("Alice", "hello there"),
        ("202", "hi"),
        ("Alice", "how are you"),
    ]
    assert got.turns[0].words == words
    assert got.turns[0].language == "en"
    assert got.turns[1].end_of_turn_confidence == 0.75
    talk = {p.uid: (p.talk_ms, p.turn_count) for p in got.participants}
    assert talk == {101: (3000, 2), 202: (1000, 1)}
    assert got.notes[0].spoken and got.notes[0].meta == {"a": 1}
    sessions = {s.uid: s for s in got.stream_sessions}
    assert sessions[101].billed_seconds == 60 and sessions[101].audio_seconds == 59.5
    assert sessions[101].provider_session_id == "s-a" and sessions[101].close_code == 1000
    assert sessions[202].closed_at is None
    assert got.summary.started_at == T0 and got.summary.started_at.tzinfo is not None


async def test_timestamps_come_back_as_utc(store: TranscriptStore) -> None:
    local = datetime(2026, 11, 23, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    meeting = await store.start_meeting("c", 1, local)
    (summary,) = await store.list_meetings()
    assert summary.id == meeting
    assert summary.started_at == local and summary.started_at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="naive"):
        await store.start_meeting("c", 1, datetime(2026, 1, 1))


async def test_upsert_same_key_keeps_one_row_with_later_text(store: TranscriptStore) -> None:
    meeting, alice, _ = await make_meeting(store)
    await store.upsert_turns([turn(meeting, 101, alice, 0, 0, "um budget tomorow")])
    await store.upsert_turns([turn(meeting, 101, alice, 0, 0, "Budget tomorrow.")])
    # Within one batch, too, the later record wins.
    await store.upsert_turns(
        [turn(meeting, 101, alice, 1, 5000, "first"), turn(meeting, 101, alice, 1, 5000, "second")]
    )
    got = await store.get_meeting(meeting)
    assert [t.text for t in got.turns] == ["Budget tomorrow.", "second"]
    assert [h.text for h in await store.search("tomorrow")] == ["Budget tomorrow."]
    assert await store.search("tomorow") == []
    assert await store.search("first") == []


async def test_turns_come_back_in_meeting_time_order(store: TranscriptStore) -> None:
    meeting, alice, bob = await make_meeting(store)
    await store.upsert_turns(
        [
            turn(meeting, 202, bob, 0, 2000, "two"),
            turn(meeting, 101, alice, 0, 3000, "three"),
            turn(meeting, 101, alice, 1, 1000, "one"),
        ]
    )
    got = await store.get_meeting(meeting)
    assert [t.text for t in got.turns] == ["one", "two", "three"]
    streamed = [t.text async for t in store.iter_turns(meeting, batch=2)]
    assert streamed == ["one", "two", "three"]


async def test_iter_turns_pages_through_ties(store: TranscriptStore) -> None:
    meeting, alice, bob = await make_meeting(store)
    records = [turn(meeting, 101, alice, i, (i // 3) * 100, f"a{i}") for i in range(10)]
    records += [turn(meeting, 202, bob, i, (i // 3) * 100, f"b{i}") for i in range(10)]
    await store.upsert_turns(records)
    full = [t.id for t in (await store.get_meeting(meeting)).turns]
    for batch in (1, 3, 7, 1000):
        assert [t.id async for t in store.iter_turns(meeting, batch=batch)] == full
    assert len(full) == 20


async def test_record_participant_upserts(store: TranscriptStore) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    first = await store.record_participant(meeting, 5, T0 + timedelta(seconds=5), "Eve")
    again = await store.record_participant(meeting, 5, T0 + timedelta(seconds=9))
    # An older sighting never moves last_seen back.
    await store.record_participant(meeting, 5, T0 + timedelta(seconds=7))
    assert first == again
    (participant,) = (await store.get_meeting(meeting)).participants
    assert participant.display_name == "Eve"
    assert participant.first_seen == T0 + timedelta(seconds=5)
    assert participant.last_seen == T0 + timedelta(seconds=9)


async def test_missing_things_raise_not_found(store: TranscriptStore) -> None:
    with pytest.raises(NotFoundError, match="no meetings recorded yet"):
        await store.resolve_meeting("latest")
    with pytest.raises(NotFoundError, match="no meeting with id 42"):
        await store.get_meeting(42)
    with pytest.raises(NotFoundError):
        await store.record_participant(42, 1, T0)
    with pytest.raises(NotFoundError):
        await store.close_stream_session(42, closed_at=T0, audio_seconds=0)
    with pytest.raises(NotFoundError):
        await store.set_display_name(42, 1, "x")
    with pytest.raises(NotFoundError):
        await store.add_note(42, "recap", "x", created_at=T0)
    with pytest.raises(NotFoundError, match="stream session"):
        await store.upsert_turns([turn(42, 1, 42, 0, 0, "x")])
    with pytest.raises(NotFoundError):
        [t async for t in store.iter_turns(42)]


async def test_upsert_refuses_a_turn_of_another_participant(store: TranscriptStore) -> None:
    meeting, alice, _ = await make_meeting(store)
    with pytest.raises(StorageError, match="belongs to"):
        await store.upsert_turns([turn(meeting, 202, alice, 0, 0, "x")])
    assert (await store.get_meeting(meeting)).turns == ()


async def test_resolve_meeting(store: TranscriptStore) -> None:
    first = await store.start_meeting("a", 1, T0)
    second = await store.start_meeting("b", 1, T0 + timedelta(hours=1))
    assert await store.resolve_meeting("latest") == second
    assert await store.resolve_meeting("LATEST", channel="a") == first
    assert await store.resolve_meeting(first) == first
    assert await store.resolve_meeting(str(second)) == second
    with pytest.raises(NotFoundError, match="in channel 'a'"):
        await store.resolve_meeting(second, channel="a")
    with pytest.raises(NotFoundError, match="no meetings recorded in channel 'zzz'"):
        await store.resolve_meeting("latest", channel="zzz")
    with pytest.raises(NotFoundError, match="'yesterday' is not a meeting"):
        await store.resolve_meeting("yesterday")


async def test_list_meetings_filters(store: TranscriptStore) -> None:
    a = await store.start_meeting("a", 1, T0)
    b = await store.start_meeting("b", 1, T0 + timedelta(hours=1))
    c = await store.start_meeting("a", 1, T0 + timedelta(hours=2))
    assert [m.id for m in await store.list_meetings()] == [c, b, a]
    assert [m.id for m in await store.list_meetings(channel="a")] == [c, a]
    assert [m.id for m in await store.list_meetings(since=T0 + timedelta(minutes=30))] == [c, b]


async def test_mark_interrupted_meetings(store: TranscriptStore) -> None:
    import sys

    # A meeting of this process is alive: never marked.
    mine = await store.start_meeting("live", 1, T0)
    # A meeting of a process that has exited, on this host: marked at once.
    dead = await store.start_meeting("dead", 1, T0)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import os; print(os.getpid())", stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await child.communicate()
    dead_pid = int(stdout)
    from sqlalchemy import update

    from storage.models import MeetingRow

    # Another host's meeting: only marked once stale.
    other = await store.start_meeting("other", 1, T0)
    async with store._engine.begin() as connection:  # simulate the killed recorder
        await connection.execute(
            update(MeetingRow).where(MeetingRow.id == dead).values(pid=dead_pid)
        )
        await connection.execute(
            update(MeetingRow).where(MeetingRow.id == other).values(host="elsewhere", pid=1)
        )
    now = T0 + timedelta(hours=1)
    assert await store.mark_interrupted_meetings(now=now) == 1
    statuses = {m.id: m.status for m in await store.list_meetings()}
    # Readers already show the other host's meeting as interrupted: its heartbeat
    # (T0) is long stale by the clock they read it with (storage/status.py).
    assert statuses == {mine: "recording", dead: "interrupted", other: "interrupted"}
    # However stale, this process's own meeting is left alone; the other host's is not.
    assert await store.mark_interrupted_meetings(channel="live", now=T0 + timedelta(days=1)) == 0
    assert await store.mark_interrupted_meetings(now=T0 + timedelta(days=1)) == 1
    summaries = {m.id: m for m in await store.list_meetings()}
    assert summaries[mine].status == "recording"
    assert summaries[other].status == "interrupted" and summaries[other].ended_at == T0


async def test_long_names_are_kept(store: TranscriptStore) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    name = "N" * 1000  # display names come from users: no length limit on either backend
    await store.record_participant(meeting, 5, T0, name)
    assert (await store.get_meeting(meeting)).participants[0].display_name == name


def test_clean_text() -> None:
    assert storable_text("a\x00b") == "ab"
    assert storable_text("x\ud800y") == "x\ufffdy"
    assert storable_text("plain é 日本") == "plain é 日本"
    assert storable_text("\ud83d\ude00") == "\U0001f600"


# Any Unicode, including NUL and lone surrogates: the store keeps the text
# exactly, except NUL (removed: PostgreSQL text cannot hold it) and lone
# surrogates (replaced by U+FFFD: UTF-8 cannot encode them); see storable_text.
_ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=60)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=_ANY_TEXT, name=_ANY_TEXT, word=_ANY_TEXT)
async def test_unicode_round_trips(store: TranscriptStore, text: str, name: str, word: str) -> None:
    meeting = await store.start_meeting(text or "c", 1, T0)
    session = await store.open_stream_session(meeting, 7, T0)
    await store.set_display_name(meeting, 7, name)
    await store.upsert_turns(
        [turn(meeting, 7, session, 0, 0, text, words=(Word(word, 0, 10),), language=word[:32])]
    )
    await store.add_note(meeting, "recap", text, created_at=T0, meta={"w": word})
    got = await store.get_meeting(meeting)
    assert got.summary.channel == storable_text(text or "c")
    assert got.turns[0].text == storable_text(text)
    assert got.turns[0].words[0].text == storable_text(word)
    assert got.participants[0].display_name == storable_text(name)
    assert got.notes[0].text == storable_text(text)
    assert "\x00" not in got.turns[0].text


def test_default_database_url_matches_config() -> None:
    from recorder.config import default_database_url as config_default
    from storage.db import default_database_url

    assert default_database_url() == config_default()


async def test_default_database_is_created_and_migrated(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path))
    from storage.db import default_database_url, normalize_url, sqlite_path

    url = default_database_url()
    path = sqlite_path(normalize_url(url))
    assert path is not None and str(tmp_path) in str(path) and not path.exists()
    async with await TranscriptStore.open(url) as store:
        assert await store.list_meetings() == []
    assert path.stat().st_size > 0


async def test_provider_session_id_and_heartbeat(store: TranscriptStore) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    session = await store.open_stream_session(meeting, 7, T0)
    await store.set_provider_session_id(session, "begin-id-1")
    await store.heartbeat(meeting, T0 + timedelta(hours=10))
    (stream,) = (await store.get_meeting(meeting)).stream_sessions
    assert stream.provider_session_id == "begin-id-1"
    # A fresh heartbeat keeps even another host's meeting from being marked.
    from sqlalchemy import update

    from storage.models import MeetingRow

    async with store._engine.begin() as connection:
        await connection.execute(
            update(MeetingRow).where(MeetingRow.id == meeting).values(host="elsewhere")
        )
    assert await store.mark_interrupted_meetings(now=T0 + timedelta(hours=11)) == 0
    assert await store.mark_interrupted_meetings(now=T0 + timedelta(hours=17)) == 1


async def test_in_memory_database() -> None:
    async with await TranscriptStore.open("sqlite+aiosqlite://") as store:
        meeting = await store.start_meeting("c", 1, T0)
        assert await store.resolve_meeting("latest") == meeting


@pytest.mark.slow
async def test_iter_turns_streams_100k_turns_in_flat_memory(sqlite_url: str) -> None:
    import tracemalloc

    from storage.db import upgrade_database

    await upgrade_database(sqlite_url)
    async with await TranscriptStore.open(sqlite_url) as store:
        meeting = await store.start_meeting("long", 1, T0)
        session = await store.open_stream_session(meeting, 7, T0)
        total = 100_000
        text = "a turn of about average length with a dozen words in it"
        for start in range(0, total, 10_000):
            await store.upsert_turns(
                [turn(meeting, 7, session, i, i * 100, text) for i in range(start, start + 10_000)]
            )
        tracemalloc.start()
        count = 0
        last = -1
        async for item in store.iter_turns(meeting, batch=1000):
            assert item.start_ms > last
            last = item.start_ms
            count += 1
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert count == total
        # Holding every turn would take well over 50 MB; a page of 1,000 a few MB.
        assert peak < 10_000_000, peak


async def test_sqlite_connections_are_set_up(sqlite_url: str) -> None:
    from sqlalchemy import text

    from storage.db import BUSY_TIMEOUT_S, create_engine, upgrade_database

    await upgrade_database(sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: (await connection.execute(text(f"PRAGMA {name}"))).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        await engine.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": int(BUSY_TIMEOUT_S * 1000),
    }


async def test_deleting_a_meeting_cascades(store: TranscriptStore) -> None:
    from sqlalchemy import delete

    from storage.models import MeetingRow

    meeting, alice, _ = await make_meeting(store)
    await store.upsert_turns([turn(meeting, 101, alice, 0, 0, "cascade me")])
    await store.add_note(meeting, "recap", "x", created_at=T0)
    async with store._engine.begin() as connection:
        await connection.execute(delete(MeetingRow).where(MeetingRow.id == meeting))
    assert await store.search("cascade") == []
    counts = await store.run_query(
        "SELECT (SELECT count(*) FROM turns), (SELECT count(*) FROM participants), "
        "(SELECT count(*) FROM stream_sessions), (SELECT count(*) FROM notes)"
    )
    assert counts.rows == ((0, 0, 0, 0),)


async def test_readers_can_skip_turns_and_word_timings(store: TranscriptStore) -> None:
    meeting, alice, _ = await make_meeting(store)
    words = (Word("hello", 0, 400, 0.9), Word("there", 450, 900, 0.8))
    await store.upsert_turns([turn(meeting, 101, alice, 0, 0, "hello there", words=words)])
    whole = await store.get_meeting(meeting)
    header = await store.get_meeting(meeting, with_turns=False)
    assert len(whole.turns) == 1 and header.turns == ()
    assert header.participants == whole.participants and header.summary == whole.summary
    (with_words,) = [t async for t in store.iter_turns(meeting)]
    (bare,) = [t async for t in store.iter_turns(meeting, with_words=False)]
    assert with_words.words == words
    assert bare.words == () and bare.text == with_words.text and bare.id == with_words.id
