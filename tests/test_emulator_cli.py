"""``recorder emulate`` in a real process: URL on stdout, a line per session, clean Ctrl+C."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys

from click.testing import CliRunner
from test_emulator_support import TIMEOUT, open_client

from recorder import tonecode
from recorder.cli import cli


async def start(*args: str) -> tuple[asyncio.subprocess.Process, str]:
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
    async with asyncio.timeout(TIMEOUT * 2):
        line = (await process.stdout.readline()).decode()
    match = re.fullmatch(r"streaming: (ws://127\.0\.0\.1:\d+/v3/ws)\n", line)
    assert match, line
    return process, match.group(1)


async def test_serves_logs_sessions_and_stops_on_ctrl_c() -> None:
    process, url = await start("--api-key", "k1", "--api-key", "k2", "--realtime-factor", "50")
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
