"""``recorder emulate`` in a real process: URLs on stdout, a line per session, clean Ctrl+C.

One port serves every AssemblyAI endpoint the recorder uses, the pre-recorded (async)
API included, and ``--emulator URL`` points all of them, repair included, at it.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner
from test_emulator_support import open_client

from recorder import tonecode
from recorder.batch import AsyncClient
from recorder.cli import cli
from recorder.errors import SttConnectionError, SttRejected
from storage.store import TranscriptStore
from tests.support.harness import assert_matches_script, script_of
from tests.support.processes import clean_env
from tests.support.timing import TIMEOUT


async def start(*args: str) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """Start ``recorder emulate`` on a free port; its printed lines, by name, up to ``try:``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "recorder",
        "emulate",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    printed: dict[str, str] = {}
    async with asyncio.timeout(TIMEOUT * 2):
        while "try" not in printed:
            line = (await process.stdout.readline()).decode()
            assert line, "recorder emulate exited before printing its URLs"
            name, sep, value = line.rstrip("\n").partition(": ")
            if not sep:  # the export line
                name, _, value = line.rstrip("\n").partition("=")
            printed[name] = value
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/v3/ws", printed["streaming"]), printed
    return process, printed


async def stop(process: asyncio.subprocess.Process) -> str:
    """Ctrl+C, then its stderr; it must exit 0 without a traceback."""
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(TIMEOUT):
        _, stderr = await process.communicate()
    text = stderr.decode()
    assert process.returncode == 0, text
    assert "Traceback" not in text
    return text


def flac(pcm: bytes) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, np.frombuffer(pcm, dtype=np.int16), 16000, format="FLAC")
    return out.getvalue()


async def test_serves_logs_sessions_and_stops_on_ctrl_c() -> None:
    process, printed = await start("--api-key", "k1", "--api-key", "k2", "--realtime-factor", "50")
    url = printed["streaming"]
    assert printed["async (EU)"] == printed["async"] + "/eu"
    try:
        client = await open_client(url, key="k2")
        begin = await client.next_of("Begin")
        await client.send_audio(tonecode.encode("Hello world."))
        await client.terminate()
        assert (await client.closed())[0] == 1000
        assert client.of_type("Turn")[-1]["transcript"] == "Hello world."
        refused = await open_client(url, key="k3")
        assert (await refused.closed())[0] == 1008
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(TIMEOUT):
            stdout, stderr = await process.communicate()
    text = stderr.decode()
    assert process.returncode == 0, text
    assert "Traceback" not in text
    assert re.search(
        rf"session {begin['id']} closed: audio 1\.8 s, billed \d+\.\d s, close code 1000", text
    ), text
    assert "session #1 (no Begin) closed: audio 0.0 s" in text
    assert "k1" not in text and "k2" not in text  # keys are never logged


def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["emulate", "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(cli, ["emulate", "--help"])
    assert result.exit_code == 0
    assert "recorder emulate --port 8765 --api-key dev-key" in result.output
    assert "not built yet" not in result.output


async def test_one_port_serves_the_async_api_and_prints_the_one_switch() -> None:
    process, printed = await start("--api-key", "k1")
    try:
        port = printed["streaming"].split(":")[2].split("/")[0]
        base = f"http://127.0.0.1:{port}"
        assert printed["async"] == base and printed["emulator"] == base
        assert printed["llm"] == base + "/v1"
        assert printed["export RECORDER_EMULATOR"] == base
        assert printed["try"] == (
            f"recorder join --transport replay:FILE --emulator {base} --notes"
        )
        pcm, said = tonecode.encode_words("Ship it on Friday.", 16000)
        async with AsyncClient(base, "k1", poll_interval_s=0.02) as client:
            transcript = await client.transcribe(flac(tonecode.silence(300) + pcm))
        assert [w.text for w in transcript.words] == [w.text for w in said]
        assert abs(transcript.words[0].start_ms - (300 + said[0].start_ms)) <= 30
        with pytest.raises(SttRejected):
            async with AsyncClient(base, "wrong") as client:
                await client.upload(b"abc")
    finally:
        text = await stop(process)
    assert re.search(r"async transcript [0-9a-f-]{36} completed", text), text


async def test_async_fault_fails_every_async_request() -> None:
    process, printed = await start("--async-fault", "503")
    try:
        async with AsyncClient(printed["async"], "k", attempts=2) as client:
            with pytest.raises(SttConnectionError, match="kept failing"):
                await client.upload(b"abc")
    finally:
        await stop(process)


MEETING = {
    "channel": "one-emulator",
    "participants": [{"uid": 101, "name": "Ada"}, {"uid": 202, "name": "Bo"}],
    "events": [
        {"at": 0.0, "uid": 101, "join": True},
        {"at": 0.1, "uid": 202, "join": True},
        {"at": 0.5, "uid": 101, "say": "Shall we ship on Friday?"},
        {"at": 4.0, "uid": 202, "say": "Yes, the numbers look fine."},
    ],
    "end": 7.0,
}


@pytest.mark.slow  # the stop waits 10 s for the streams that never opened
async def test_emulator_switch_repairs_a_meeting_the_live_service_missed(tmp_path: Path) -> None:
    """Live streaming points at a closed port; ``--emulator`` alone brings the async API."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"ws://127.0.0.1:{probe.getsockname()[1]}/v3/ws"
    script = tmp_path / "meeting.json"
    script.write_text(json.dumps(MEETING))
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'recorder.db'}"
    env = clean_env(tmp_path, ASSEMBLYAI_API_KEY="k1")
    async with await TranscriptStore.open(db_url, auto_migrate=True):
        pass  # join records into an existing database only
    process, printed = await start("--api-key", "k1")
    try:
        join = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "recorder",
            "join",
            "--transport",
            f"replay:{script}",
            "--speed",
            "10",
            "--stt-url",
            closed,
            "--emulator",
            printed["export RECORDER_EMULATOR"],
            "--db",
            db_url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=tmp_path,  # no .env of the repository's
        )
        async with asyncio.timeout(TIMEOUT * 6):
            output = (await join.communicate())[0].decode()
    finally:
        text = await stop(process)
    assert join.returncode == 0, output
    assert "Traceback" not in output
    assert re.search(r"async transcript [0-9a-f-]{36} completed", text), text
    async with await TranscriptStore.open(db_url) as store:
        meeting = await store.get_meeting(await store.resolve_meeting("latest"))
    assert meeting.turns and {t.source for t in meeting.turns} == {"repaired"}, output
    assert_matches_script(meeting, script_of(MEETING))


@pytest.mark.parametrize("command", ["repair", "retranscribe"])
def test_repair_commands_take_the_one_switch(command: str, tmp_path: Path) -> None:
    assert "--emulator URL" in CliRunner().invoke(cli, [command, "--help"]).output
    db = f"sqlite+aiosqlite:///{tmp_path / 'absent.db'}"
    bad = CliRunner().invoke(cli, [command, "latest", "--emulator", "127.0.0.1:8765", "--db", db])
    assert bad.exit_code == 1
    assert "--emulator must start with http:// or https://" in bad.output
    assert "Traceback" not in bad.output
