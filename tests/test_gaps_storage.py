"""Gaps, audio segments, turn sources and revisions, and the new statuses, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from recorder.errors import NotFoundError
from storage.audio import add_segment, finish_segment, list_segments
from storage.gaps import add_gap, latest_revision, list_gaps, set_gap_state, store_transcribed_turns
from storage.records import TurnRecord, Word
from storage.store import TranscriptStore

T0 = datetime(2026, 12, 4, 9, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", ["completed", "partial", "failed", "interrupted"])
async def test_every_finished_status_is_stored(store: TranscriptStore, status: str) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    await store.finish_meeting(meeting, T0 + timedelta(minutes=1), status=status)
    assert (await store.get_meeting(meeting)).summary.status == status


async def test_the_check_constraint_refuses_other_statuses(store: TranscriptStore) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    with pytest.raises(IntegrityError, match="(?i)check"):
        async with store._engine.begin() as connection:
            await connection.execute(
                text("UPDATE meetings SET status = 'bogus' WHERE id = :id"), {"id": meeting}
            )
    with pytest.raises(ValueError, match="partial"):
        await store.finish_meeting(meeting, T0, status="recording")


async def test_gaps_round_trip_and_count_in_the_listing(store: TranscriptStore) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    late = await add_gap(store, meeting, 202, 5000, 9000, "stt unreachable")
    early = await add_gap(store, meeting, 101, 1000, 2000, "stop with unsent audio")
    gaps = await list_gaps(store, meeting)
    assert [(g.id, g.uid, g.from_ms, g.to_ms, g.state) for g in gaps] == [
        (early, 101, 1000, 2000, "open"),
        (late, 202, 5000, 9000, "open"),
    ]
    assert (await store.list_meetings())[0].open_gaps == 2
    await set_gap_state(store, early, "lost", detail="no audio stored")
    await set_gap_state(store, late, "repaired")
    summary = (await store.list_meetings())[0]
    assert summary.open_gaps == 1  # lost still counts: it is not transcribed
    meeting_record = await store.get_meeting(meeting)
    assert [(g.state, g.detail) for g in meeting_record.gaps] == [
        ("lost", "no audio stored"),
        ("repaired", None),
    ]
    with pytest.raises(NotFoundError):
        await set_gap_state(store, 99999, "lost")
    with pytest.raises(ValueError):
        await add_gap(store, meeting, 1, 10, 5, "backwards")


async def test_audio_segments_are_indexed_open_then_finished(store: TranscriptStore) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    segment = await add_segment(
        store, meeting, 101, start_ms=1500, sample_rate_hz=16000, format="wav", path="a.wav"
    )
    [found] = await list_segments(store, meeting)
    assert (found.uid, found.start_ms, found.is_complete, found.path) == (101, 1500, False, "a.wav")
    await finish_segment(
        store, segment, duration_ms=2500, size=1234, sha256="ab" * 32, format="flac", path="a.flac"
    )
    [done] = await list_segments(store, meeting, uid=101)
    assert (done.duration_ms, done.end_ms, done.bytes, done.format, done.is_complete) == (
        2500,
        4000,
        1234,
        "flac",
        True,
    )
    assert await list_segments(store, meeting, uid=202) == []


async def test_repaired_turns_fill_their_gap_and_revisions_are_separate(
    store: TranscriptStore,
) -> None:
    meeting = await store.start_meeting("c", 1, T0)
    live = await store.open_stream_session(meeting, 101, T0)
    await store.upsert_turns(
        [TurnRecord(meeting, 101, live, 0, 0, 900, "hello there.", (Word("hello", 0, 400),))]
    )
    gap = await add_gap(store, meeting, 101, 1000, 3000, "stt unreachable")
    repaired = TurnRecord(meeting, 101, 0, 0, 1100, 2000, "fixed words.", source="repaired")
    await store_transcribed_turns(
        store,
        meeting,
        101,
        [repaired],
        transcript_id="t-1",
        transcribed_at=T0,
        audio_seconds=2.0,
        repaired_gap_ids=[gap],
    )
    got = await store.get_meeting(meeting)
    assert [(t.text, t.source, t.revision) for t in got.turns] == [
        ("hello there.", "live", 1),
        ("fixed words.", "repaired", 1),
    ]
    assert [g.state for g in got.gaps] == ["repaired"]
    assert got.summary.open_gaps == 0 and got.summary.turn_count == 2
    # A re-transcription is a new revision; the latest is what readers see by default.
    again = TurnRecord(
        meeting, 101, 0, 0, 0, 2000, "all again.", source="retranscribed", revision=2
    )
    await store_transcribed_turns(
        store, meeting, 101, [again], transcript_id="t-2", transcribed_at=T0, audio_seconds=3.0
    )
    assert await latest_revision(store, meeting) == 2
    latest = await store.get_meeting(meeting)
    assert [t.text for t in latest.turns] == ["all again."]
    assert latest.revision == 2 and latest.revisions == (1, 2)
    assert (await store.list_meetings())[0].turn_count == 1
    first = await store.get_meeting(meeting, revision=1)
    assert [t.text for t in first.turns] == ["hello there.", "fixed words."]
    assert [t.text async for t in store.iter_turns(meeting, revision=1)] == [
        "hello there.",
        "fixed words.",
    ]
    assert [t.text async for t in store.iter_turns(meeting)] == ["all again."]
    with pytest.raises(NotFoundError, match="revision 7"):
        await store.get_meeting(meeting, revision=7)


async def test_a_repair_rewrites_and_deletes_the_live_turns_it_displaces(
    store: TranscriptStore,
) -> None:
    # A live word cut by a gap's edge gives way to the whole word, in the same transaction.
    meeting = await store.start_meeting("c", 1, T0)
    live = await store.open_stream_session(meeting, 101, T0)
    cut = TurnRecord(
        meeting,
        101,
        live,
        0,
        2900,
        3400,
        "[speech 0.1 s] bravo",
        (Word("[speech 0.1 s]", 2900, 3000), Word("bravo", 3060, 3400)),
    )
    alone = TurnRecord(
        meeting, 101, live, 1, 5000, 5100, "[speech 0.1 s]", (Word("[speech 0.1 s]", 5000, 5100),)
    )
    await store.upsert_turns([cut, alone])
    gap = await add_gap(store, meeting, 101, 1000, 2900, "stt unreachable")
    turns = {t.turn_order: t for t in (await store.get_meeting(meeting)).turns}
    await store_transcribed_turns(
        store,
        meeting,
        101,
        [
            TurnRecord(
                meeting,
                101,
                0,
                0,
                2700,
                3000,
                "alpha",
                (Word("alpha", 2700, 3000),),
                source="repaired",
            )
        ],
        transcript_id="t-1",
        transcribed_at=T0,
        audio_seconds=2.0,
        repaired_gap_ids=[gap],
        rewritten=[TurnRecord(meeting, 101, live, 0, 3060, 3400, "bravo", cut.words[1:])],
        deleted_turn_ids=[turns[1].id],
    )
    got = await store.get_meeting(meeting)
    assert [(t.text, t.source, [w.text for w in t.words]) for t in got.turns] == [
        ("alpha", "repaired", ["alpha"]),
        ("bravo", "live", ["bravo"]),
    ]
    assert [g.state for g in got.gaps] == ["repaired"]
    assert await store.search("speech") == []  # the full-text index forgot them too
