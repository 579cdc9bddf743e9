"""A full audio disk: the recording goes on, says so once, and ends partial with the gap named.

The recorder runs as a real process whose file size limit (RLIMIT_FSIZE) the
audio files reach, so writes fail with the kernel's own EFBIG exactly as they
would with ENOSPC on a full disk. The database is PostgreSQL, which the limit
does not touch.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys
from pathlib import Path

import pytest

from recorder.emulator.batch import BatchBehaviour, BatchEmulator
from recorder.emulator.streaming.server import StreamingEmulator
from storage.db import upgrade_database
from storage.store import TranscriptStore
from tests.support.timing import TIMEOUT

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MEETING = {
    "channel": "full-disk",
    "participants": [{"uid": 101, "name": "Ada"}],
    "events": [{"at": 0.0, "uid": 101, "join": True}]
    + [{"at": 0.5 + 4.0 * i, "uid": 101, "say": f"Point {i} alpha bravo."} for i in range(5)],
    "end": 22.0,
}
LIMIT_BYTES = 200_000  # about 6 s of one participant's raw audio


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))


async def test_full_audio_disk_ends_partial_with_the_gap_named(
    tmp_path: Path, postgres_url: str
) -> None:
    await upgrade_database(postgres_url)
    script = tmp_path / "meeting.json"
    script.write_text(json.dumps(MEETING))  # noqa: ASYNC240 - before the run
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDER_", "ASSEMBLYAI"))}
    env.update(ASSEMBLYAI_API_KEY="test-key", XDG_DATA_HOME=str(tmp_path / "data"))
    speed = 4.0
    async with (
        StreamingEmulator(realtime_factor=speed * 3).serve() as live,
        BatchEmulator(behaviour=BatchBehaviour(processing_s=0.05)).serve() as repair,
    ):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "recorder",
            "join",
            f"--transport=replay:{script}",
            f"--stt-url={live.url}",
            f"--async-url={repair.url}",
            f"--speed={speed}",
            f"--db={postgres_url}",
            f"--audio-dir={tmp_path / 'audio'}",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_limit_file_size,
        )
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT * 6)
    text = err.decode()
    assert "Traceback" not in text, text
    assert process.returncode == 3, text
    assert text.count("cannot write audio") >= 1
    assert "audio is no longer kept" in text  # said once, during the meeting
    assert text.count("audio is no longer kept") == 1
    assert "status: partial" in text
    async with await TranscriptStore.open(postgres_url) as store:
        (summary,) = await store.list_meetings()
        meeting = await store.get_meeting(summary.id)
    assert summary.status == "partial"
    assert [g.uid for g in meeting.gaps] == [101]
    assert "File too large" in meeting.gaps[0].cause and meeting.gaps[0].state != "repaired"
    # Live transcription went on: every sentence is there.
    assert len(meeting.turns) == 5
    said = sum(len(t.words) for t in meeting.turns)
    print(f"full audio disk: words said 20 / live {said} / repaired 0 / lost {20 - said}")
