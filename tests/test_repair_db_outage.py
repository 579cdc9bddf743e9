"""The database away for 30 s mid-meeting: every word is stored, the console says so.

PostgreSQL is reached through a TCP proxy that the test cuts and restores, so
pooled connections break and new ones are refused exactly as when the server
is down (the shared test server itself stays up).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from recorder.app import RecordingOptions, record
from recorder.config import Config
from recorder.console import LiveConsole
from recorder.emulator.batch import BatchBehaviour, BatchEmulator
from recorder.emulator.streaming.server import StreamingEmulator
from storage.db import upgrade_database
from storage.store import TranscriptStore
from tests.support.harness import assert_matches_script, script_of
from tests.support.proxy import CuttableProxy, OutageAt
from tests.test_repair_e2e import LONG_MEETING, tally

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


async def test_postgres_away_for_30_s_mid_meeting_loses_nothing(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await upgrade_database(postgres_url)
    url = make_url(postgres_url)
    speed = 4.0
    async with (
        CuttableProxy(int(url.port or 5432)) as proxy,
        StreamingEmulator(realtime_factor=speed * 3).serve() as live,
        BatchEmulator(behaviour=BatchBehaviour(processing_s=0.05)).serve() as repair,
    ):
        via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        config = Config(
            database_url=via_proxy,
            assemblyai_api_key="k",
            stt_url=live.url,
            async_url=repair.url,
            audio_dir=str(tmp_path / "audio"),
        )
        report = await record(
            config,
            OutageAt(script_of(LONG_MEETING), proxy, 15_000, 45_000, speed=speed),
            options=RecordingOptions(
                sessions_per_minute=600.0, names={101: "Ada", 202: "Bo"}, realtime_factor=speed * 2
            ),
            console=LiveConsole(quiet=True),
        )
    async with await TranscriptStore.open(postgres_url) as store:
        meeting = await store.get_meeting(report.meeting_id)
    counts = tally("database away 30 s mid-meeting", meeting, LONG_MEETING)
    assert_matches_script(meeting, script_of(LONG_MEETING))
    assert meeting.summary.status == "completed" and report.status == "completed"
    assert counts["lost"] == 0 and counts["repaired"] == 0
    said = capsys.readouterr().err
    assert said.count("the database is unreachable") == 1, said
    assert said.count("the database is back") == 1, said
    assert all(s.closed_at is not None for s in meeting.stream_sessions)
