"""``recorder serve`` as a real process: starts, answers with auth, stops on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from recorder.cli import cli
from storage.db import upgrade_database
from storage.store import TranscriptStore
from tests.support.service import seed_meeting
from tests.support.timing import TIMEOUT

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]
_RUNNING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


async def _start(url: str, *extra: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RECORDER_DATABASE_URL": url}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "recorder",
        "serve",
        "--port",
        "0",
        *extra,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _port(process: asyncio.subprocess.Process, log: bytearray) -> int:
    assert process.stderr is not None
    async with asyncio.timeout(TIMEOUT * 6):
        while True:
            line = await process.stderr.readline()
            if not line:
                raise AssertionError(f"recorder serve stopped: {log.decode()}")
            log += line
            if match := _RUNNING.search(line):
                return int(match.group(1))


@pytest.fixture
async def migrated(postgres_url: str) -> AsyncIterator[str]:
    await upgrade_database(postgres_url)
    yield postgres_url


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
async def test_serve_runs_until_signalled(migrated: str, stop: signal.Signals) -> None:
    created = await asyncio.to_thread(
        CliRunner().invoke, cli, ["tokens", "create", "--name", "proc", "--db", migrated]
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    store = await TranscriptStore.open(migrated)
    try:
        meeting_id = await seed_meeting(store, turns=[(101, 0, 1000, "hello from a process")])
    finally:
        await store.close()
    process = await _start(migrated)
    log = bytearray()
    try:
        port = await _port(process, log)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).json()["status"] == "ok"
            assert (await client.get("/v1/meetings")).status_code == 401
            headers = {"Authorization": f"Bearer {token}"}
            transcript = await client.get(
                f"/v1/meetings/{meeting_id}/transcript?format=txt", headers=headers
            )
            assert transcript.status_code == 200 and "hello from a process" in transcript.text
            docs = await client.get("/docs")
            assert docs.status_code == 200
    finally:
        process.send_signal(stop)
        stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT * 4)
    log += stderr
    # uvicorn shuts down cleanly, then re-raises SIGTERM so supervisors see it.
    assert process.returncode in (0, -stop), log.decode()
    assert b"Application shutdown complete" in log
    assert token not in (log + stdout).decode()
    assert b"Traceback" not in log


@pytest.mark.slow
async def test_serve_refuses_an_unmigrated_database_in_one_line(postgres_url: str) -> None:
    process = await _start(postgres_url)
    stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT * 6)
    assert process.returncode == 1
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "recorder db upgrade" in lines[0]
