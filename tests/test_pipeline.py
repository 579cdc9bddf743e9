"""Scripted meetings through app.record, the STT emulator and SQLite: every word, once, in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.emulator.faults import Fault, FaultPlan
from tests.support.harness import assert_matches_script, record_script, script_of

# Whole meetings played through the emulator at 10-15x: seconds each (make test-fast skips them).
pytestmark = pytest.mark.slow

MEETING = {
    "channel": "plan-ü",
    "participants": [
        {"uid": 101, "name": "Zoë"},
        {"uid": 202, "name": "李雷"},
        {"uid": 303, "name": "Ana"},
    ],
    "events": [
        {"at": 0.0, "uid": 101, "join": True},
        {"at": 0.2, "uid": 202, "join": True},
        {"at": 0.3, "uid": 303, "join": True},
        {"at": 0.5, "uid": 101, "say": "Good morning, shall we start?"},
        {"at": 3.0, "uid": 202, "say": "好的 let us review the naïve plan."},
        {"at": 4.0, "uid": 303, "say": "I agree, überhaupt kein Problem."},
        {"at": 7.5, "uid": 101, "mute": True},
        {"at": 8.0, "uid": 303, "say": "While Zoë is muted, a quick note."},
        {"at": 11.0, "uid": 101, "unmute": True},
        {"at": 11.5, "uid": 101, "say": "I am back now."},
        {"at": 12.0, "uid": 202, "leave": True},
        {"at": 14.0, "uid": 202, "join": True},
        {"at": 14.5, "uid": 202, "say": "Rejoined after a drop 🚀 done."},
    ],
    "end": 19.0,
}


async def test_overlaps_mutes_rejoins_and_unicode(tmp_path: Path) -> None:
    recorded = await record_script(MEETING, tmp_path)
    assert_matches_script(recorded.meeting, script_of(MEETING))
    assert recorded.meeting.summary.status == "completed"
    names = {p.uid: p.display_name for p in recorded.meeting.participants}
    assert names == {101: "Zoë", 202: "李雷", 303: "Ana"}
    # A muted or departed participant's socket was closed: 202 had two sockets.
    sessions = [s for s in recorded.meeting.stream_sessions if s.uid == 202]
    assert len(sessions) >= 2
    assert all(s.closed_at is not None for s in recorded.meeting.stream_sessions)
    assert recorded.report.turns == len(recorded.meeting.turns)


async def test_long_silence_closes_the_idle_socket_and_reopens_on_speech(tmp_path: Path) -> None:
    meeting = {
        "channel": "quiet",
        "events": [
            {"at": 0.0, "uid": 7, "join": True},
            {"at": 0.5, "uid": 7, "say": "First thought."},
            {"at": 32.0, "uid": 7, "say": "Second thought after a long pause."},
        ],
        "end": 37.0,
    }
    recorded = await record_script(meeting, tmp_path, speed=15.0, idle_close_s=3.0)
    assert_matches_script(recorded.meeting, script_of(meeting))
    sessions = recorded.meeting.stream_sessions
    assert len(sessions) == 2  # closed during the silence, reopened on speech
    # The emulator saw far less than the meeting's 37 s of audio: the silence was not streamed.
    streamed = sum(s.audio_seconds for s in recorded.emulator.sessions)
    assert streamed < 15.0


@pytest.mark.parametrize("code", [1006, 1011, 3005, 3009])
async def test_socket_drop_loses_no_word(tmp_path: Path, code: int) -> None:
    meeting = {
        "channel": "drops",
        "events": [
            {"at": 0.0, "uid": 5, "join": True},
            {"at": 0.2, "uid": 5, "say": "One two three four five six seven."},
            {"at": 4.0, "uid": 5, "say": "Eight nine ten eleven twelve."},
        ],
        "end": 8.0,
    }
    fault = Fault.drop(at_audio_s=2.0) if code == 1006 else Fault.close(code, at_audio_s=2.0)
    recorded = await record_script(
        meeting, tmp_path, faults=FaultPlan(per_connection={0: (fault,)}), idle_close_s=30
    )
    assert_matches_script(recorded.meeting, script_of(meeting))
    assert len(recorded.emulator.sessions) >= 2  # it really reconnected
    first = recorded.emulator.sessions[0]
    assert first.close_code == code


def round_robin_meeting(
    participants: int = 5, rounds: int = 2, sentences: int = 3, channel: str = "costs"
) -> dict:
    """Each participant in turn says a few sentences: everyone talks 1/participants of the time."""
    from recorder.tonecode import encode_words

    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()
    events: list[dict] = [{"at": 0.0, "uid": 100 + p, "join": True} for p in range(participants)]
    at = 0.5
    n = 0
    for _ in range(rounds):
        for p in range(participants):
            for _ in range(sentences):
                sentence = " ".join(words[(n + i) % len(words)] for i in range(8)) + "."
                events.append({"at": round(at, 3), "uid": 100 + p, "say": sentence})
                _, timing = encode_words(sentence)
                at += timing[-1].end_ms / 1000 + 0.3  # the next sentence after a short pause
                n += 1
            at += 0.5  # hand-over between speakers
    return {"channel": channel, "events": events, "end": at + 3.0}


def talk_seconds(script, pause_s: float = 2.0) -> float:
    """Seconds each participant spends talking, summed: their speech spans, where a pause
    shorter than ``pause_s`` inside a turn counts as talking (as a listener would count it)."""
    total = 0.0
    for uid in {c.uid for c in script.clips}:
        spans = sorted(
            (c.words[0].start_ms, c.words[-1].end_ms)
            for c in script.clips
            if c.uid == uid and c.words
        )
        start, end = spans[0]
        for s, e in spans[1:]:
            if s - end < pause_s * 1000:
                end = max(end, e)
            else:
                total += end - start
                start, end = s, e
        total += end - start
    return total / 1000


async def test_billed_seconds_stay_near_speech_time(tmp_path: Path) -> None:
    data = round_robin_meeting()
    script = script_of(data)
    speed = 10.0
    recorded = await record_script(data, tmp_path, speed=speed)
    assert_matches_script(recorded.meeting, script)
    speech = talk_seconds(script)
    meeting_s = script.end_ms / 1000
    # This emulator bills wall-clock socket time; at speed N one wall second is N script
    # seconds, the meeting's clock the recorder reports billed time on.
    billed = sum(s.billed_seconds for s in recorded.emulator.sessions) * speed
    assert 0.15 < speech / (meeting_s * 5) < 0.25  # each participant talks ~20% of the time
    assert billed < 1.5 * speech, f"billed {billed:.1f} s for {speech:.1f} s of speech"
    assert recorded.report.billed_seconds == pytest.approx(billed, rel=0.1)


async def test_a_recording_on_each_database(tmp_path: Path, db_url: str) -> None:
    """The whole pipeline writes to PostgreSQL (a fleet's shared database) as to SQLite."""
    from storage.db import upgrade_database

    await upgrade_database(db_url)
    recorded = await record_script(MEETING, tmp_path, db_url=db_url)
    assert_matches_script(recorded.meeting, script_of(MEETING))
    assert recorded.meeting.summary.status == "completed"
