"""Scripted meetings with faults: the stored transcript (live + repaired) matches the script.

Each test plays a meeting through ``app.record`` against the streaming and the
async API emulators, breaks something, and checks every said word is stored
exactly once, for the right speaker, within 150 ms, and prints per fault:
words said / live / repaired / lost.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from recorder.app import RecordingOptions, record
from recorder.bot import MeetingReport
from recorder.config import Config
from recorder.emulator.batch import BatchBehaviour, BatchEmulator
from recorder.emulator.streaming.server import StreamingEmulator
from recorder.transport.replay import ReplayTransport
from storage.audio import list_segments
from storage.records import Meeting
from storage.store import TranscriptStore
from tests.support.harness import assert_matches_script, script_of

pytestmark = pytest.mark.slow

SPEED = 10.0

MEETING: dict[str, Any] = {
    "channel": "durable",
    "participants": [{"uid": 101, "name": "Ada"}, {"uid": 202, "name": "Bo"}],
    "events": [
        {"at": 0.0, "uid": 101, "join": True},
        {"at": 0.1, "uid": 202, "join": True},
        {"at": 0.5, "uid": 101, "say": "Good morning, shall we start the review?"},
        {"at": 4.0, "uid": 202, "say": "Yes, the numbers look fine to me."},
        {"at": 8.0, "uid": 101, "say": "Then we ship on Friday."},
        {"at": 11.0, "uid": 202, "say": "Agreed, see you all then."},
    ],
    "end": 15.0,
}


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"ws://127.0.0.1:{port}/v3/ws"


def tally(name: str, meeting: Meeting, script: dict[str, Any]) -> dict[str, int]:
    said = len(script_of(script).expected_words())
    live = sum(len(t.words) for t in meeting.turns if t.source == "live")
    repaired = sum(len(t.words) for t in meeting.turns if t.source == "repaired")
    counts = {"said": said, "live": live, "repaired": repaired, "lost": said - live - repaired}
    print(f"{name}: words said {said} / live {live} / repaired {repaired} / lost {counts['lost']}")
    return counts


async def record_meeting(
    tmp_path: Path,
    script: dict[str, Any],
    *,
    stt_url: str | None = None,
    batch: BatchEmulator | None = None,
) -> tuple[MeetingReport, Meeting, TranscriptStore | None]:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    streaming = StreamingEmulator(realtime_factor=SPEED * 3)
    batch = batch or BatchEmulator(behaviour=BatchBehaviour(processing_s=0.05))
    async with (
        streaming.serve() as live,
        batch.serve() as repair,
        await TranscriptStore.open(db_url, auto_migrate=True) as store,
    ):
        config = Config(
            database_url=db_url,
            assemblyai_api_key="test-key",
            stt_url=stt_url or live.url,
            async_url=repair.url,
        )
        report = await record(
            config,
            ReplayTransport(script_of(script), speed=SPEED),
            options=RecordingOptions(
                sessions_per_minute=600.0,
                names={101: "Ada", 202: "Bo"},
                realtime_factor=SPEED * 2,
            ),
            store=store,
        )
        meeting = await store.get_meeting(report.meeting_id)
        segments = await list_segments(store, report.meeting_id)
    assert segments and all(s.is_complete and s.format == "flac" for s in segments)
    assert all(Path(s.path).is_file() for s in segments)  # noqa: ASYNC240 - after the run
    return report, meeting, None


async def test_a_clean_meeting_keeps_its_audio_and_ends_completed(tmp_path: Path) -> None:
    report, meeting, _ = await record_meeting(tmp_path, MEETING)
    assert_matches_script(meeting, script_of(MEETING))
    assert report.status == "completed" and meeting.gaps == ()
    counts = tally("no fault", meeting, MEETING)
    assert counts["repaired"] == 0 and counts["lost"] == 0
    # Audio kept for both participants, about as long as the meeting.
    assert report.audio_kept_s > 2 * 10


async def test_service_unreachable_for_the_whole_meeting_is_repaired(tmp_path: Path) -> None:
    report, meeting, _ = await record_meeting(tmp_path, MEETING, stt_url=closed_port_url())
    counts = tally("stt unreachable, whole meeting", meeting, MEETING)
    assert_matches_script(meeting, script_of(MEETING))
    assert report.status == "completed", meeting.gaps
    assert counts["live"] == 0 and counts["lost"] == 0
    assert meeting.gaps and all(g.state == "repaired" for g in meeting.gaps)
    assert {g.uid for g in meeting.gaps} == {101, 202}
