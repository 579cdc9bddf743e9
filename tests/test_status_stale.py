"""A meeting whose recorder died reads as interrupted to every command at once.

No ``join`` runs in between: ``meetings``, ``show`` and every export judge the
stored ``recording`` row by its recorder (this host: is the process alive?)
and its heartbeat (stale after :data:`storage.status.STALE_HEARTBEAT`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from storage.models import MeetingRow
from storage.records import TurnRecord, Word
from storage.status import STALE_HEARTBEAT
from storage.store import TranscriptStore
from tests.support.timing import TIMEOUT

pytestmark = [pytest.mark.slow]


async def _dead_pid() -> int:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await process.wait()
    return process.pid


async def _cli(tmp_path: Path, db_url: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDER_", "ASSEMBLYAI"))}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
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


@pytest.mark.parametrize(
    ("recorder", "beat_age", "expected"),
    [
        ("another host", STALE_HEARTBEAT + timedelta(seconds=30), "interrupted"),
        ("another host", timedelta(seconds=30), "recording"),  # alive over there
        ("a dead process here", timedelta(seconds=5), "interrupted"),  # no need to wait
    ],
)
async def test_every_command_says_interrupted_as_soon_as_the_recorder_is_gone(
    tmp_path: Path, recorder: str, beat_age: timedelta, expected: str
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    now = datetime.now(UTC)
    async with await TranscriptStore.open(db_url, auto_migrate=True) as store:
        meeting = await store.start_meeting("killed", 1, now - timedelta(minutes=10))
        session = await store.open_stream_session(meeting, 7, now - timedelta(minutes=9))
        await store.upsert_turns(
            [TurnRecord(meeting, 7, session, 0, 0, 900, "hi.", (Word("hi.", 0, 900),))]
        )
        if recorder == "another host":
            where = {"host": f"not-{socket.gethostname()}", "pid": 1}
        else:
            where = {"host": socket.gethostname(), "pid": await _dead_pid()}
        values = {**where, "heartbeat_at": now - beat_age}
        await store.run_in_transaction(
            lambda c: c.execute(update(MeetingRow).where(MeetingRow.id == meeting).values(values)),
            write=True,
        )
    listing = json.loads(await _cli(tmp_path, db_url, "meetings", "--json"))
    assert [m["status"] for m in listing] == [expected]
    assert expected in await _cli(tmp_path, db_url, "meetings")
    assert expected in await _cli(tmp_path, db_url, "show", "latest")
    exported = json.loads(await _cli(tmp_path, db_url, "export", "latest", "-f", "json"))
    assert exported["meeting"]["status"] == expected
    for fmt in ("md", "html"):
        assert expected in await _cli(tmp_path, db_url, "export", "latest", "-f", fmt), fmt
