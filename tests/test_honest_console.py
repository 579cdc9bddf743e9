"""The console tells the truth once: what stopped, when it is back, how long a stop takes."""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from recorder.app import RecordingOptions, record
from recorder.config import Config
from recorder.console import LiveConsole
from recorder.emulator.batch import BatchBehaviour, BatchEmulator
from recorder.transport.replay import ReplayTransport
from storage.store import TranscriptStore
from tests.support.harness import script_of

# Real time (speed 1): the stop's length is what a user waits for.
SHORT: dict[str, Any] = {
    "channel": "honest",
    "participants": [{"uid": 101, "name": "Ada"}, {"uid": 202, "name": "Bo"}],
    "events": [
        {"at": 0.0, "uid": 101, "join": True},
        {"at": 0.0, "uid": 202, "join": True},
        {"at": 0.2, "uid": 101, "say": "Good morning, shall we start the review?"},
        {"at": 0.4, "uid": 202, "say": "Yes, the numbers look fine to me."},
    ],
    "end": 4.5,
}


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"ws://127.0.0.1:{port}/v3/ws"


@pytest.mark.slow
async def test_an_unreachable_service_is_said_once_per_participant_and_stops_fast(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    status = io.StringIO()
    console = LiveConsole({101: "Ada", 202: "Bo"}, out=io.StringIO(), status=status)
    batch = BatchEmulator(behaviour=BatchBehaviour(processing_s=0.05))
    async with (
        batch.serve() as repair,
        await TranscriptStore.open(db_url, auto_migrate=True) as store,
    ):
        config = Config(
            database_url=db_url,
            assemblyai_api_key="test-key",
            stt_url=closed_port_url(),
            async_url=repair.url,
        )
        transport = ReplayTransport(script_of(SHORT), speed=1.0)
        began = time.monotonic()
        report = await record(
            config,
            transport,
            options=RecordingOptions(sessions_per_minute=600.0),
            console=console,
            store=store,
        )
        took = time.monotonic() - began
        meeting = await store.get_meeting(report.meeting_id)
    lines = status.getvalue().splitlines()
    for who in ("Ada (101)", "Bo (202)"):
        stopped = [line for line in lines if line.startswith(f"! transcription stopped for {who}")]
        assert len(stopped) == 1, lines  # once per change, whatever the later wording
    # Streams that never opened have nothing to close: the stop does not wait out
    # its 10 s bound for them (the meeting is 4.5 s; the repair takes about a second).
    # The repairs after it poll the async API (about 3 s each here); before, the stop
    # alone waited 10 s more.
    assert took < SHORT["end"] + 12, (took, lines)
    assert "did not close" not in caplog.text
    assert meeting.summary.status == "completed" and meeting.turns, lines
    # The report counts the repaired turns and their speech, not only the live ones.
    repaired = [t for t in meeting.turns if t.source == "repaired"]
    assert len(repaired) == 2 and len(meeting.turns) == 2
    assert (report.turns, report.repaired_turns) == (2, 2)
    assert report.speech_ms == sum(t.end_ms - t.start_ms for t in repaired) > 0
