"""How a meeting ends, as every command sees it: completed, partial, failed, interrupted."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.db import upgrade_database
from storage.gaps import add_gap
from storage.records import TurnRecord, Word
from storage.status import STALE_HEARTBEAT, effective_status
from storage.store import TranscriptStore
from tests.support.timing import TIMEOUT

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("host", "pid", "beat", "expected"),
    [
        ("elsewhere", 1, NOW - timedelta(seconds=30), "recording"),  # alive elsewhere
        ("elsewhere", 1, NOW - STALE_HEARTBEAT - timedelta(seconds=1), "interrupted"),
        (socket.gethostname(), os.getpid(), NOW - timedelta(days=1), "recording"),  # this one
    ],
)
def test_a_recording_meeting_reads_as_interrupted_once_its_recorder_is_gone(
    host: str, pid: int, beat: datetime, expected: str
) -> None:
    assert effective_status("recording", host=host, pid=pid, heartbeat_at=beat, now=NOW) == expected
    assert effective_status("partial", host=host, pid=pid, heartbeat_at=beat, now=NOW) == "partial"


@pytest.mark.slow
async def test_nothing_recorded_is_failed_with_exit_code_1(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    await upgrade_database(db_url)
    script = tmp_path / "m.json"
    meeting = {
        "channel": "nobody-home",
        "events": [{"at": 0.0, "uid": 5, "join": True}, {"at": 0.3, "uid": 5, "say": "Hello?"}],
        "end": 3.0,
    }
    script.write_text(json.dumps(meeting))  # noqa: ASYNC240 - before the run
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDER_", "ASSEMBLYAI"))}
    env.update(ASSEMBLYAI_API_KEY="k", XDG_DATA_HOME=str(tmp_path / "data"))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "recorder",
        "join",
        f"--transport=replay:{script}",
        f"--stt-url=ws://127.0.0.1:{closed}/v3/ws",
        "--speed=2",
        "--no-audio",
        f"--db={db_url}",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), TIMEOUT * 6)
    text = err.decode()
    assert "Traceback" not in text, text
    assert process.returncode == 1, text
    assert "status: failed" in text
    # Said at once, as the meeting began, not only in the final summary.
    assert text.index("the speech-to-text service is unreachable") < text.index("status: failed")
    async with await TranscriptStore.open(db_url) as store:
        (summary,) = await store.list_meetings()
        stored = await store.get_meeting(summary.id)
    assert summary.status == "failed" and summary.open_gaps == 1
    assert [(g.uid, g.state) for g in stored.gaps] == [(5, "lost")]


@pytest.mark.slow
async def test_meetings_show_and_exports_list_the_gaps(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    async with await TranscriptStore.open(db_url, auto_migrate=True) as store:
        meeting = await store.start_meeting("gappy", 1, NOW)
        session = await store.open_stream_session(meeting, 7, NOW)
        await store.upsert_turns(
            [TurnRecord(meeting, 7, session, 0, 0, 900, "hi.", (Word("hi.", 0, 900),))]
        )
        await add_gap(store, meeting, 7, 61_000, 75_000, "the service was unreachable")
        await store.finish_meeting(meeting, NOW + timedelta(minutes=2), status="partial")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDER_", "ASSEMBLYAI"))}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")

    async def cli(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "recorder",
            *args,
            f"--db={db_url}",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT * 4)
        assert process.returncode == 0, err.decode()
        return out.decode()

    listing = json.loads(await cli("meetings", "--json"))
    assert listing[0]["status"] == "partial" and listing[0]["open_gaps"] == 1
    assert "GAPS" in await cli("meetings")
    shown = await cli("show", "latest")
    assert "gap: 7 00:01:01-00:01:15: the service was unreachable (open)" in shown
    exported = json.loads(await cli("export", "latest", "-f", "json"))
    assert exported["gaps"] == [
        {
            "uid": 7,
            "from_ms": 61000,
            "to_ms": 75000,
            "cause": "the service was unreachable",
            "state": "open",
        }
    ]
    assert exported["turns"][0]["source"] == "live"
    for fmt, expected in (("md", "## Gaps"), ("txt", "Gap: 7"), ("html", "<h2>Gaps</h2>")):
        assert expected in await cli("export", "latest", "-f", fmt)
