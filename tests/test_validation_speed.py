"""A replay faster than the emulator allows is one clear line telling how to start it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from recorder.cli import cli
from recorder.emulator.server import serve_emulators
from recorder.stt.events import Disposition
from recorder.stt.protocol import classify_close
from storage.db import upgrade_database
from storage.store import TranscriptStore

SCRIPT = {
    "channel": "fast",
    "participants": [{"uid": 1, "name": "Ann"}, {"uid": 2, "name": "Ben"}],
    "events": [
        {"at": 0.0, "uid": 1, "join": True},
        {"at": 0.0, "uid": 2, "join": True},
        {"at": 0.5, "uid": 1, "say": "First sentence here, a little longer than that."},
        {"at": 0.7, "uid": 2, "say": "Second sentence here, spoken over the first one."},
        {"at": 6.0, "uid": 1, "say": "Third sentence here."},
    ],
    "end": 30.0,
}


def test_rate_exceeded_is_not_called_a_bug() -> None:
    reason = "Input Duration Error: Audio Transmission Rate Exceeded: Received 3.1 sec. audio"
    disposition, hint = classify_close(3007, reason, terminated=False, inactivity_timeout_set=False)
    assert disposition is Disposition.FATAL
    assert "--realtime-factor" in hint and "bug" not in hint


async def test_speed_beyond_the_emulator_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    await upgrade_database(db_url)
    script = tmp_path / "fast.json"
    script.write_text(json.dumps(SCRIPT))  # noqa: ASYNC240 - a few bytes, before the run
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDER_", "ASSEMBLYAI"))}
    env.update(ASSEMBLYAI_API_KEY="k", XDG_DATA_HOME=str(tmp_path))
    # realtime_factor 1, the real rule; the async API is there, so the gap is repaired.
    async with serve_emulators() as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "recorder",
            "join",
            f"--transport=replay:{script}",
            f"--emulator={server.urls['emulator']}",
            f"--db={db_url}",
            "--speed=20",
            "--quiet",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), 60)
    stderr = err.decode()
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr and "bug in recorder" not in stderr, stderr
    assert len(stderr.splitlines()) < 15, stderr
    url = server.urls["streaming"]
    assert stderr.splitlines()[-1] == (
        f"error: the emulator at {url} refused audio played at --speed 20; "
        "start it with 'recorder emulate --realtime-factor 20'"
    )
    # Said once: not also by the socket, the stream, the gap and the recording.
    assert stderr.count("realtime-factor") == 1 and "3007" not in stderr, stderr
    async with await TranscriptStore.open(db_url) as store:
        (meeting,) = await store.list_meetings()
    # Stopped at about 3 s of a 30 s meeting: never completed, even once repaired.
    assert meeting.status == "interrupted"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--transport", "replay:m.json", "--speed", "4"],
            "--speed 4 sends audio faster than real time, which the real service refuses; "
            "use --stt-url with an emulator started with --realtime-factor 4",
        ),
        (["--channel", "c", "--speed", "2"], "--speed 2 only applies to --transport replay:FILE"),
    ],
)
def test_speed_needs_a_replay_and_an_emulator(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["join", *args], env={"ASSEMBLYAI_API_KEY": "k"})
    assert (result.exit_code, result.output) == (2, f"error: {message}\n")
