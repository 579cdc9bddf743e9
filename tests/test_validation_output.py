"""Output that cannot be written never costs the recording: the turns are stored anyway.

``recorder join | head -1`` closed the pipe after the first turn; printing the
second raised BrokenPipeError out of the recording, which ended at once with
exit 0 and the meeting left without an end (shown ``interrupted``). With stdout
on a full device it ended with a one-line error, the meeting unfinished too.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from pathlib import Path

import pytest

from recorder.console import LiveConsole
from recorder.emulator.streaming.server import StreamingEmulator
from storage.db import upgrade_database
from storage.store import TranscriptStore

SCRIPT = {
    "channel": "piped",
    "participants": [{"uid": 1, "name": "Ann"}, {"uid": 2, "name": "Ben"}],
    "events": [
        {"at": 0.0, "uid": 1, "join": True},
        {"at": 0.0, "uid": 2, "join": True},
        {"at": 0.5, "uid": 1, "say": "First sentence here."},
        {"at": 3.0, "uid": 2, "say": "Second sentence here."},
        {"at": 5.5, "uid": 1, "say": "Third sentence here."},
    ],
    "end": 9.0,
}


class _Closed(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_stops_the_printing_not_the_console() -> None:
    status = io.StringIO()
    console = LiveConsole({1: "Ann"}, out=_Closed(), status=status)
    console.final(1, 1000, "hello")  # must not raise
    console.final(1, 2000, "again")  # nor try again
    assert status.getvalue().splitlines() == [
        "! turns are no longer printed (Broken pipe); recording goes on"
    ]


@pytest.mark.parametrize("stdout", ["closed pipe", "/dev/full"])
async def test_join_records_the_whole_meeting_when_stdout_fails(
    tmp_path: Path, stdout: str
) -> None:
    if stdout == "/dev/full" and not os.path.exists("/dev/full"):  # noqa: ASYNC240, PTH110
        pytest.skip("no /dev/full")
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    await upgrade_database(db_url)
    script = tmp_path / "piped.json"
    script.write_text(json.dumps(SCRIPT))  # noqa: ASYNC240 - a few bytes, before the run
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDER_", "ASSEMBLYAI"))}
    env.update(ASSEMBLYAI_API_KEY="k", XDG_DATA_HOME=str(tmp_path))
    # stdout: a pipe whose reader leaves after the first turn (as `| head -1`), or /dev/full.
    reader, writer = (
        os.pipe() if stdout == "closed pipe" else (-1, os.open("/dev/full", os.O_WRONLY))
    )
    async with StreamingEmulator(realtime_factor=8).serve() as server:
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "recorder",
                "join",
                f"--transport=replay:{script}",
                f"--stt-url={server.url}",
                f"--db={db_url}",
                "--speed=4",
                "--no-audio",
                env=env,
                stdout=writer,
                stderr=asyncio.subprocess.PIPE,
            )
        finally:
            os.close(writer)
        if reader != -1:
            with os.fdopen(reader, "rb") as pipe:
                first = await asyncio.wait_for(asyncio.to_thread(pipe.readline), 60)
            assert first.startswith(b"[00:00] Ann (1): First")
        assert process.stderr is not None
        err = await asyncio.wait_for(process.stderr.read(), 60)
        await asyncio.wait_for(process.wait(), 60)
    stderr = err.decode()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert "! turns are no longer printed (" in stderr
    assert "status: completed" in stderr
    async with await TranscriptStore.open(db_url) as store:
        meeting = await store.get_meeting(await store.resolve_meeting("latest"))
    assert meeting.summary.status == "completed"
    assert [t.text for t in meeting.turns] == [
        "First sentence here.",
        "Second sentence here.",
        "Third sentence here.",
    ]
