"""The database away mid-meeting (30 s, 5 minutes): every word is stored, the console says so.

PostgreSQL is reached through a TCP proxy that the test cuts and restores, so
pooled connections break and new ones are refused exactly as when the server
is down (the shared test server itself stays up). SQLite is made unwritable
the way another program does it: a second connection holding the write lock.
While the database is away the recorder's writes go to its journal on disk
(memory stays bounded); once it is back the journal is stored and removed.
Outages are in meeting time; the meetings are replayed fast.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from recorder.app import RecordingOptions, record
from recorder.bot import MeetingContext
from recorder.config import Config
from recorder.console import LiveConsole
from recorder.emulator.batch import BatchBehaviour, BatchEmulator
from recorder.emulator.streaming.server import StreamingEmulator
from recorder.journal import read_entries
from recorder.pipeline import FinalTurn
from recorder.transport.base import Transport
from recorder.writer import TranscriptWriter
from storage.db import upgrade_database
from storage.store import TranscriptStore
from tests.support.harness import assert_matches_script, script_of
from tests.support.processes import recorder_exec
from tests.support.proxy import CuttableProxy, OutageAt, SqliteLock
from tests.support.timing import TIMEOUT
from tests.test_repair_e2e import LONG_MEETING, tally

pytestmark = [pytest.mark.slow]


def _meeting(minutes: float) -> dict[str, Any]:
    """Two people taking turns every 6 s for ``minutes`` of meeting time."""
    end_s = minutes * 60
    return {
        "channel": "db-outage",
        "participants": [{"uid": 101, "name": "Ada"}, {"uid": 202, "name": "Bo"}],
        "events": [
            {"at": 0.0, "uid": 101, "join": True},
            {"at": 0.1, "uid": 202, "join": True},
        ]
        + [
            {
                "at": 0.5 + 6.0 * i,
                "uid": 101 if i % 2 == 0 else 202,
                "say": f"Item {i} is on the list, alpha bravo.",
            }
            for i in range(int((end_s - 6) // 6))
        ],
        "end": end_s,
    }


@dataclass
class WriterProbe:
    """Looks at the recording's one writer (through the context it gives observers)."""

    audio_dir: Path
    writer: TranscriptWriter | None = None
    at_restore: dict[str, Any] = field(default_factory=dict)

    async def started(self, context: MeetingContext) -> None:
        writer = getattr(context.flush_turns, "__self__", None)
        assert isinstance(writer, TranscriptWriter)
        self.writer = writer

    def final_turn(self, turn: FinalTurn) -> None:
        pass

    def speech(self, uid: int) -> None:
        pass

    async def before_end(self) -> None:
        pass

    async def stopped(self) -> None:
        pass

    def look(self) -> None:
        """Just before the database is back: what is held in memory, what is on disk."""
        assert self.writer is not None
        journals = list((self.audio_dir / "journals").glob("*.jsonl"))
        self.at_restore = {
            "held": self.writer.pending,
            "journaled": self.writer.journaled,
            "journal_turns": sum(
                e.get("op") == "turn" for path in journals for e in read_entries(path)[0]
            ),
        }


async def _record_through_outage(
    database_url: str,
    tmp_path: Path,
    script: dict[str, Any],
    outage: Any,
    from_ms: float,
    to_ms: float,
    speed: float,
) -> tuple[Any, WriterProbe]:
    audio_dir = tmp_path / "audio"
    probe = WriterProbe(audio_dir)
    async with (
        StreamingEmulator(realtime_factor=speed * 3).serve() as live,
        BatchEmulator(behaviour=BatchBehaviour(processing_s=0.05)).serve() as repair,
    ):
        config = Config(
            database_url=database_url,
            assemblyai_api_key="k",
            stt_url=live.url,
            async_url=repair.url,
            audio_dir=str(audio_dir),
        )
        transport: Transport = OutageAt(
            script_of(script), outage, from_ms, to_ms, speed=speed, on_restore=probe.look
        )
        report = await record(
            config,
            transport,
            options=RecordingOptions(
                sessions_per_minute=600.0, names={101: "Ada", 202: "Bo"}, realtime_factor=speed * 2
            ),
            observers=[probe],
            console=LiveConsole(quiet=True),
        )
    return report, probe


def _check(
    name: str,
    meeting: Any,
    report: Any,
    script: dict[str, Any],
    said: str,
    probe: WriterProbe | None = None,
    *,
    is_long: bool = True,
) -> None:
    counts = tally(name, meeting, script)
    assert_matches_script(meeting, script_of(script))
    assert meeting.summary.status == "completed" and report.status == "completed"
    assert counts["lost"] == 0 and counts["repaired"] == 0
    assert said.count("the database is unreachable") == 1, said
    assert said.count("the database is back") == 1, said
    assert all(s.closed_at is not None for s in meeting.stream_sessions)
    if probe is not None:
        assert probe.writer is not None
        print(
            f"{name}: at the restore {probe.at_restore}; most writes held in memory "
            f"{probe.writer.most_held}"
        )
        # The writes made while the database was away went to the journal, not memory,
        # and the journal is gone once stored.
        assert probe.at_restore["journal_turns"] > 0
        if is_long:
            # Over minutes, most of what was made is on disk: memory holds at most
            # what came since the last failed retry (they are at most 5 s apart).
            assert probe.at_restore["held"] < probe.at_restore["journaled"]
        assert not list((probe.audio_dir / "journals").glob("*.jsonl"))


@pytest.mark.postgres
async def test_postgres_away_for_30_s_mid_meeting_loses_nothing(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await upgrade_database(postgres_url)
    url = make_url(postgres_url)
    async with CuttableProxy(int(url.port or 5432)) as proxy:
        via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        report, probe = await _record_through_outage(
            via_proxy, tmp_path, LONG_MEETING, proxy, 15_000, 45_000, speed=4.0
        )
    async with await TranscriptStore.open(postgres_url) as store:
        meeting = await store.get_meeting(report.meeting_id)
    _check(
        "database away 30 s mid-meeting",
        meeting,
        report,
        LONG_MEETING,
        capsys.readouterr().err,
        probe,
        is_long=False,
    )


@pytest.mark.postgres
async def test_postgres_away_for_5_minutes_mid_meeting_loses_nothing(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await upgrade_database(postgres_url)
    url = make_url(postgres_url)
    script = _meeting(6.5)
    async with CuttableProxy(int(url.port or 5432)) as proxy:
        via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        report, probe = await _record_through_outage(
            via_proxy, tmp_path, script, proxy, 30_000, 330_000, speed=20.0
        )
    async with await TranscriptStore.open(postgres_url) as store:
        meeting = await store.get_meeting(report.meeting_id)
    _check(
        "postgres away 5 min mid-meeting", meeting, report, script, capsys.readouterr().err, probe
    )


async def test_sqlite_locked_by_another_program_for_5_minutes_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite waits busy_timeout (10 s) for a lock before failing: a shorter wait here, so
    # the outage (15 s of wall time at this speed) is met as failures, not one long wait.
    monkeypatch.setattr("storage.db.BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "recorder.db"
    db_url = f"sqlite+aiosqlite:///{path}"
    await upgrade_database(db_url)
    script = _meeting(6.5)
    lock = SqliteLock(path)
    try:
        report, probe = await _record_through_outage(
            db_url, tmp_path, script, lock, 30_000, 330_000, speed=20.0
        )
    finally:
        await asyncio.to_thread(lock.close)
    assert lock.cuts == 1
    async with await TranscriptStore.open(db_url) as store:
        meeting = await store.get_meeting(report.meeting_id)
    _check(
        "sqlite locked 5 min mid-meeting", meeting, report, script, capsys.readouterr().err, probe
    )


@pytest.mark.postgres
async def test_a_recorder_killed_while_postgres_is_away_leaves_a_journal_repair_stores(
    tmp_path: Path, postgres_url: str
) -> None:
    await upgrade_database(postgres_url)
    url = make_url(postgres_url)
    speed = 4.0
    script_path = tmp_path / "meeting.json"
    script_path.write_text(json.dumps(LONG_MEETING))  # noqa: ASYNC240 - before the run
    journals = tmp_path / "data" / "recorder" / "audio" / "journals"
    async with (
        CuttableProxy(int(url.port or 5432)) as proxy,
        StreamingEmulator(realtime_factor=speed * 3).serve() as live,
        BatchEmulator(behaviour=BatchBehaviour(processing_s=0.05)).serve() as repair,
    ):
        via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        process = await recorder_exec(
            tmp_path,
            "join",
            f"--transport=replay:{script_path}",
            f"--stt-url={live.url}",
            f"--async-url={repair.url}",
            f"--speed={speed}",
            f"--db={via_proxy}",
        )
        assert process.stdout is not None and process.stderr is not None
        # Two turns stored, then the database goes away; two more turns are said.
        for _ in range(2):
            assert await asyncio.wait_for(process.stdout.readline(), TIMEOUT * 4)
        proxy.cut()
        for _ in range(2):
            assert await asyncio.wait_for(process.stdout.readline(), TIMEOUT * 4)
        # The writer journals what it holds each time a retry fails (at most 5 s apart).
        deadline = asyncio.get_running_loop().time() + TIMEOUT * 4
        journaled: list[Any] = []
        while sum(e.get("op") == "turn" for e in journaled) < 2:
            assert asyncio.get_running_loop().time() < deadline, "nothing was journaled"
            await asyncio.sleep(0.1)
            found = list(journals.glob("*.jsonl"))
            journaled = read_entries(found[0])[0] if found else []
        process.kill()
        await process.wait()
        proxy.restore()
        (journal,) = journals.glob("*.jsonl")
        entries, _ = read_entries(journal)
        meeting_id = entries[0]["meeting_id"]
        kept = [e["record"]["text"] for e in entries if e.get("op") == "turn"]
        fixed = await recorder_exec(
            tmp_path,
            "repair",
            str(meeting_id),
            f"--async-url={repair.url}",
            f"--db={postgres_url}",
        )
        _, err = await asyncio.wait_for(fixed.communicate(), TIMEOUT * 4)
    text = err.decode()
    assert fixed.returncode == 0, text
    assert "Traceback" not in text and "a stopped recorder had journaled" in text, text
    assert not journal.exists()
    async with await TranscriptStore.open(postgres_url) as store:
        meeting = await store.get_meeting(meeting_id)
    stored = [t.text for t in meeting.turns]
    print(f"killed while the database was away: {len(kept)} journaled turns, stored {stored}")
    assert kept and all(text in stored for text in kept)
    assert len(stored) == len(set(stored))  # none stored twice
