"""End to end on real processes: `recorder join` records a replayed meeting through the STT
emulator into PostgreSQL while an SSE client of the service follows it live."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import pytest

from recorder.emulator.streaming.server import StreamingEmulator
from recorder.service.app import create_app
from storage.db import create_engine, upgrade_database
from storage.tokens import create_token
from tests.support.service import serving
from tests.support.timing import TIMEOUT

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]

SAYS = ["First sentence here.", "Second sentence here.", "Third sentence here."]
SCRIPT = {
    "channel": "e2e",
    "participants": [{"uid": 1, "name": "Ann"}, {"uid": 2, "name": "Ben"}],
    "events": [
        {"at": 0.0, "uid": 1, "join": True},
        {"at": 0.0, "uid": 2, "join": True},
        {"at": 0.2, "uid": 1, "say": SAYS[0]},
        {"at": 1.2, "uid": 2, "say": SAYS[1]},
        {"at": 2.4, "uid": 1, "say": SAYS[2]},
        {"at": 4.0, "uid": 2, "leave": True},
    ],
    "end": 5.0,
}


async def test_a_replayed_recording_streams_every_turn_once(
    postgres_url: str, tmp_path: Path
) -> None:
    await upgrade_database(postgres_url)
    engine = create_engine(postgres_url)
    try:
        _, token = await create_token(engine, "e2e")
    finally:
        await engine.dispose()
    script = tmp_path / "meeting.json"
    script.write_text(json.dumps(SCRIPT))  # noqa: ASYNC240 - a few bytes, before the run
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDER_", "ASSEMBLYAI"))}
    env.update(ASSEMBLYAI_API_KEY="test-key", XDG_DATA_HOME=str(tmp_path / "data"))
    env["PYTHONPATH"] = str(ROOT)
    app = create_app(postgres_url, poll_s=3600, mcp=False)
    async with StreamingEmulator().serve() as emulator, serving(app) as base_url:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "recorder",
            "join",
            f"--transport=replay:{script}",
            f"--stt-url={emulator.url}",
            f"--db={postgres_url}",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        # The first printed turn: the meeting exists. Events from its start are
        # still all there: the stream begins with what was already committed.
        first = await asyncio.wait_for(process.stdout.readline(), TIMEOUT * 4)
        assert first, (await process.communicate())[1].decode()
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
            meetings = (await client.get("/v1/meetings", params={"status": "recording"})).json()
            (meeting,) = meetings["meetings"]
            events = []
            async with client.stream("GET", f"/v1/meetings/{meeting['id']}/events") as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
        _, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT * 4)
    assert process.returncode == 0, stderr.decode()
    kinds = [event["kind"] for event in events]
    assert kinds[0] == "meeting.started" and kinds[-1] == "meeting.ended"
    assert events[-1]["status"] == "completed"
    assert kinds.count("participant.joined") == 2 and "participant.left" in kinds
    ids = [event["id"] for event in events]
    assert ids == sorted(set(ids))
    # Each turn once as final; a later update (the formatted text) replaces its text.
    texts: dict[int, str] = {}
    speakers: dict[int, str] = {}
    for event in events:
        if event["kind"] == "turn.final":
            assert event["turn_id"] not in texts
            speakers[event["turn_id"]] = event["speaker"]
        if event["kind"] in ("turn.final", "turn.updated"):
            texts[event["turn_id"]] = event["text"]
    assert list(texts.values()) == SAYS
    assert list(speakers.values()) == ["Ann", "Ben", "Ann"]
