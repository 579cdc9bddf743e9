"""The write journal: bounded, ordered, tolerant of a torn last line, replayed once."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from recorder.errors import NotFoundError, StorageError
from recorder.journal import Journal, JournalFull, journal_path, leftover_journals, read_entries
from recorder.persist import (
    StoreWrites,
    Write,
    gap_write,
    journal_header,
    participant_write,
    segment_finished_write,
    segment_write,
    session_closed_write,
    session_write,
    turn_write,
)
from recorder.writer import TranscriptWriter, replay_leftover_journals
from storage.audio import list_segments
from storage.gaps import list_gaps
from storage.records import TurnRecord, Word
from storage.store import TranscriptStore
from tests.support.writes import turn_said


def test_entries_come_back_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append([{"n": 1}, {"n": 2}])
    journal.append([{"n": 3, "text": "é 中文 🚀"}])
    entries, offset = read_entries(journal.path)
    assert entries == [{"n": 1}, {"n": 2}, {"n": 3, "text": "é 中文 🚀"}]
    assert offset == journal.size == journal.path.stat().st_size
    first, middle = read_entries(journal.path, limit=2)
    rest, _ = read_entries(journal.path, middle)
    assert first + rest == entries
    journal.remove()
    assert not journal.path.exists()


def test_the_bound_refuses_a_whole_append_and_keeps_what_was_there(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl", max_bytes=100)
    journal.append([{"n": 1}])
    with pytest.raises(JournalFull, match="over its bound of 100 bytes"):
        journal.append([{"pad": "x" * 200}])
    assert read_entries(journal.path)[0] == [{"n": 1}]


def test_an_unwritable_place_is_a_full_journal_not_a_crash(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    journal = Journal(blocker / "journals" / "j.jsonl")
    with pytest.raises(JournalFull) as caught:
        journal.append([{"n": 1}])
    assert "write journal" in str(caught.value) and "free some disk space" in str(caught.value)


def test_a_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":')  # a crash mid-append
    assert read_entries(path)[0] == [{"n": 1}, {"n": 2}]
    journal = Journal(path)
    journal.append([{"n": 3}])
    assert read_entries(path)[0] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_a_corrupt_line_in_the_middle_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"n":1}\nnot json\n{"n":3}\n')
    assert read_entries(path)[0] == [{"n": 1}, {"n": 3}]


def test_a_live_recorders_journal_is_not_left_over(tmp_path: Path) -> None:
    live = Journal(journal_path(tmp_path, 1))
    live.append([{"n": 1}])
    dead = journal_path(tmp_path, 2)
    dead.write_text('{"n":1}\n')
    assert leftover_journals(tmp_path) == [dead]
    live.close()  # the recorder died: its journal is left over now
    assert leftover_journals(tmp_path) == [live.path, dead]
    assert leftover_journals(tmp_path, 2) == [dead]
    with pytest.raises(JournalFull, match="another recorder holds it"):
        fd = os.open(dead, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            Journal(dead).append([{"n": 2}])
        finally:
            os.close(fd)


async def _journal_of_a_meeting(store: TranscriptStore, folder: Path) -> tuple[int, Path]:
    """A meeting whose recorder died with all of this in its journal."""
    started = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    meeting = await store.start_meeting("standup", 1, started)
    # A session stored before the database went away: the journal names it by id.
    before = await store.open_stream_session(meeting, 101, started)
    opened = started + timedelta(seconds=5)
    ref = "9.1/session-202-0-1"

    def turn(session: int, order: int, text: str) -> TurnRecord:
        return TurnRecord(
            meeting_id=meeting,
            uid=101 if session == before else 202,
            stream_session_id=session,
            turn_order=order,
            start_ms=order * 1000,
            end_ms=order * 1000 + 500,
            text=text,
            words=(Word(text, order * 1000, order * 1000 + 500, 0.9),),
        )

    late = {**turn_write(turn(0, 1, "Later")), "ref": ref, "id": None}
    writes = [
        journal_header(meeting, "standup", started),
        turn_write(turn(before, 0, "Hello")),
        participant_write(meeting, 202, opened, "Bo", "joined"),
        session_write(ref, meeting, 202, opened, "prov-1"),
        late,
        session_closed_write(
            ref,
            closed_at=opened + timedelta(seconds=3),
            audio_seconds=3.0,
            close_code=1000,
            close_reason=None,
        ),
        gap_write(meeting, 202, 4000, 9000, "the service was unreachable"),
        segment_write(
            "a.pcm",
            meeting,
            202,
            start_ms=4000,
            sample_rate_hz=16000,
            format="pcm_s16le",
            path="a.pcm",
        ),
        segment_finished_write(
            "a.pcm", duration_ms=5000, size=99, sha256=None, format="flac", path="a.flac"
        ),
    ]
    path = journal_path(folder, meeting)
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(w) + "\n" for w in writes))
    return meeting, path


async def test_a_left_over_journal_is_stored_once_however_often_it_is_replayed(
    store: TranscriptStore, tmp_path: Path
) -> None:
    meeting, path = await _journal_of_a_meeting(store, tmp_path)
    text = path.read_text()
    said: list[str] = []
    assert await replay_leftover_journals(store, tmp_path, say=said.append) == 8
    assert not path.exists() and "journaled" in said[0]
    # A crash after storing but before removing the journal: replayed again.
    path.write_text(text)
    await replay_leftover_journals(store, tmp_path)
    stored = await store.get_meeting(meeting)
    assert [(t.uid, t.text) for t in stored.turns] == [(101, "Hello"), (202, "Later")]
    assert len(stored.stream_sessions) == 2
    closed = [s for s in stored.stream_sessions if s.closed_at is not None]
    assert len(closed) == 1 and closed[0].provider_session_id == "prov-1"
    assert [(g.from_ms, g.to_ms) for g in await list_gaps(store, meeting)] == [(4000, 9000)]
    (segment,) = await list_segments(store, meeting)
    assert (segment.path, segment.duration_ms, segment.format) == ("a.flac", 5000, "flac")
    assert {p.uid for p in stored.participants} == {101, 202}


async def test_a_journal_of_another_database_is_left_alone(
    store: TranscriptStore, tmp_path: Path
) -> None:
    _, path = await _journal_of_a_meeting(store, tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["channel"] = "another-database"
    path.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    assert await replay_leftover_journals(store, tmp_path) == 0
    assert path.exists()


async def test_a_malformed_journal_line_is_dropped_and_the_rest_stored(
    store: TranscriptStore, tmp_path: Path
) -> None:
    meeting, path = await _journal_of_a_meeting(store, tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    broken = json.dumps({"op": "turn", "ref": None, "id": 1}) + "\n"  # no record
    unknown = json.dumps({"op": "teleport"}) + "\n"
    path.write_text(lines[0] + broken + unknown + "".join(lines[1:]))
    assert await replay_leftover_journals(store, tmp_path) == 10
    stored = await store.get_meeting(meeting)
    assert [t.text for t in stored.turns] == ["Hello", "Later"]


def test_a_turn_write_carries_the_record_as_asdict_would() -> None:
    import dataclasses

    record = TurnRecord(
        meeting_id=1,
        uid=2,
        stream_session_id=3,
        turn_order=4,
        start_ms=5,
        end_ms=9,
        text="Hello there",
        words=(Word("Hello", 5, 7, 0.9), Word("there", 7, 9, None)),
        end_of_turn_confidence=0.8,
        language="en",
    )
    write = turn_write(record, session="session-2-1-0")
    assert write["record"] == dataclasses.asdict(record)
    assert write["ref"] == "session-2-1-0" and write["id"] is None
    assert json.loads(json.dumps(write))["record"]["words"][1] == {
        "text": "there",
        "start_ms": 7,
        "end_ms": 9,
        "confidence": None,
    }


async def test_a_batch_is_one_transaction_and_a_failed_one_keeps_no_ref(
    store: TranscriptStore,
) -> None:
    started = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    meeting = await store.start_meeting("standup", 1, started)
    applier = StoreWrites(store)

    def turn(session: int, text: str) -> TurnRecord:
        return TurnRecord(
            meeting_id=meeting,
            uid=202,
            stream_session_id=session,
            turn_order=0,
            start_ms=0,
            end_ms=500,
            text=text,
        )

    opened = session_write("s-1", meeting, 202, started, "prov-1")
    stray = turn_write(turn(987654, "Nowhere"))  # names a session that does not exist
    with pytest.raises(NotFoundError):
        await applier.apply([opened, stray])
    assert applier.refs == {}  # rolled back: no id to hand to later writes
    assert not (await store.get_meeting(meeting)).stream_sessions

    await applier.apply([opened, turn_write(turn(0, "Hello"), session="s-1")])
    stored = await store.get_meeting(meeting)
    assert [s.id for s in stored.stream_sessions] == [applier.refs["s-1"]]
    assert [t.text for t in stored.turns] == ["Hello"]


async def test_a_batchs_turns_are_stored_together_before_a_participant_leaves(
    store: TranscriptStore,
) -> None:
    started = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    meeting = await store.start_meeting("standup", 1, started)
    applier = StoreWrites(store)

    def said(uid: int, order: int, text: str) -> Write:
        return turn_said(meeting, uid, order, text, session=f"s-{uid}")

    def closed(uid: int) -> Write:
        return session_closed_write(
            f"s-{uid}", closed_at=started, audio_seconds=1.0, close_code=1000, close_reason=None
        )

    left = started + timedelta(seconds=9)
    await applier.apply(
        [
            session_write("s-101", meeting, 101, started, None),
            said(101, 0, "Hello"),
            closed(101),
            session_write("s-202", meeting, 202, started, None),
            said(202, 1, "Hi"),
            participant_write(meeting, 202, left, None, "left"),
            said(101, 2, "Bye"),
            closed(202),
            said(101, 0, "Hello."),  # a formatted final: the later record wins
        ]
    )
    stored = await store.get_meeting(meeting)
    assert [(t.uid, t.text) for t in stored.turns] == [(101, "Hello."), (202, "Hi"), (101, "Bye")]
    assert all(s.closed_at is not None for s in stored.stream_sessions)
    if store.dialect == "postgresql":

        async def kinds_of(connection: AsyncConnection) -> list[str]:
            query = "SELECT kind FROM meeting_events WHERE meeting_id = :m ORDER BY id"
            return list((await connection.execute(text(query), {"m": meeting})).scalars())

        kinds = await store.run_in_transaction(kinds_of, write=False)
        assert kinds == [
            "meeting.started",
            "turn.final",
            "turn.final",
            "participant.left",
            "turn.updated",  # one upsert's events go in meeting time order
            "turn.final",
        ]


class _LostAnswer:
    """A store whose first commit succeeds but whose answer is lost (the connection cut)."""

    def __init__(self, applier: StoreWrites) -> None:
        self.applier = applier
        self.fresh: list[bool] = []

    async def apply(self, writes: Sequence[Write], *, fresh: bool = False) -> None:
        self.fresh.append(fresh)
        await self.applier.apply(writes, fresh=fresh)
        if len(self.fresh) == 1:
            raise StorageError("the connection was closed after COMMIT")

    def resolve(self, write: Write) -> Write:
        return self.applier.resolve(write)


@pytest.mark.parametrize("size", [1, 3])
async def test_a_fresh_batch_committed_but_unanswered_is_stored_once(
    store: TranscriptStore, size: int
) -> None:
    started = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    meeting = await store.start_meeting("standup", 1, started)
    applier = _LostAnswer(StoreWrites(store))
    writer = TranscriptWriter(applier, max_delay_s=0.01, retry_delay_s=0.01)
    writes = [
        session_write("s-1", meeting, 202, started, "prov-1"),
        segment_write(
            "a.pcm", meeting, 202, start_ms=0, sample_rate_hz=16000, format="pcm_s16le", path="a"
        ),
        gap_write(meeting, 202, 0, 500, "the service was unreachable"),
    ][:size]
    for write in writes:
        writer.submit(write)
    task = asyncio.create_task(writer.run())
    await writer.flush()
    writer.close()
    await task
    assert applier.fresh == [True, False]  # the retry looks for what the first try stored
    assert len((await store.get_meeting(meeting)).stream_sessions) == 1
    assert len(await list_segments(store, meeting)) == (size >= 2)
    assert len(await list_gaps(store, meeting)) == (size >= 3)
