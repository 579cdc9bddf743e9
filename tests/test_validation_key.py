"""A bad key stops `join` before it joins, without opening a (billed) streaming session.

The streaming emulator serves the temporary-token endpoint, which answers 401
for a key it does not accept; everything here runs on real loopback sockets.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from recorder.app import _check_key
from recorder.console import LiveConsole
from recorder.emulator.streaming.server import StreamingEmulator
from recorder.stt.connect import KeyRejected, check_api_key, token_url
from storage.db import upgrade_database
from storage.store import TranscriptStore

SCRIPT = {
    "channel": "keys",
    "participants": [{"uid": 1, "name": "Ann"}],
    "events": [
        {"at": 0.0, "uid": 1, "join": True},
        {"at": 0.2, "uid": 1, "say": "Hello there."},
    ],
    "end": 20.0,
}


@pytest.mark.parametrize(
    ("streaming", "token"),
    [
        ("wss://streaming.assemblyai.com/v3/ws", "https://streaming.assemblyai.com/v3/token"),
        ("ws://127.0.0.1:8765/v3/ws?knob=1", "http://127.0.0.1:8765/v3/token"),
        ("ws://[::1]:9/v3/ws", "http://[::1]:9/v3/token"),
    ],
)
def test_the_token_endpoint_sits_beside_the_socket(streaming: str, token: str) -> None:
    assert token_url(streaming) == f"{token}?expires_in_seconds=60"


async def test_a_good_key_is_verified_and_opens_no_session() -> None:
    emulator = StreamingEmulator(api_keys={"right"})
    async with emulator.serve() as server:
        check = await check_api_key(server.url, "right")
    assert check.is_verified and check.problem is None
    assert emulator.sessions == []


async def test_a_bad_key_is_refused_without_a_session() -> None:
    emulator = StreamingEmulator(api_keys={"right"})
    async with emulator.serve() as server:
        with pytest.raises(KeyRejected) as info:
            await check_api_key(server.url, "wrong")
    assert str(info.value).startswith("the speech-to-text service refused the API key (")
    assert "ASSEMBLYAI_API_KEY" in str(info.value) and "wrong" not in str(info.value)
    assert emulator.sessions == []


@pytest.mark.parametrize("key", ["right\n", "rïght", "ri ght"])
async def test_a_malformed_key_is_refused_here_and_never_sent(key: str) -> None:
    # The local check refuses it (nothing listens at the port, so nothing was sent):
    # saying the service refused it would be untrue.
    with pytest.raises(KeyRejected) as info:
        await check_api_key(f"ws://127.0.0.1:{_closed_port()}/v3/ws", key)
    text = str(info.value)
    assert text.startswith("the API key is malformed (") and "it was not sent" in text
    assert "service refused" not in text and key not in text
    assert "ASSEMBLYAI_API_KEY" in text


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_an_unreachable_service_is_said_once_and_recording_goes_on() -> None:
    url = f"ws://127.0.0.1:{_closed_port()}/v3/ws"
    check = await check_api_key(url, "k")
    assert not check.is_verified and not check.is_reachable
    assert check.problem is not None and "Connection refused" in check.problem
    status = io.StringIO()
    await _check_key(url, "k", LiveConsole(status=status))
    (line,) = status.getvalue().splitlines()
    assert line.startswith("! the speech-to-text service is unreachable: cannot reach http://")
    assert line.endswith("recording anyway, transcription will keep retrying")


@pytest.fixture
async def http_server() -> AsyncIterator[Callable[[bytes], Awaitable[str]]]:
    """A loopback HTTP server answering every request with the response given."""
    servers: list[asyncio.Server] = []

    async def serve(response: bytes) -> str:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/v3/ws"

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("response", "reachable", "problem"),
    [
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", False, "HTTP 503"),
        (b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n", False, "HTTP 429"),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", True, "HTTP 404"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", True, "answered without a token"),
        (b"garbage\r\n\r\n", True, "gave an unreadable answer"),
    ],
)
async def test_other_answers_are_not_a_verdict_on_the_key(
    http_server: Callable[[bytes], Awaitable[str]], response: bytes, reachable: bool, problem: str
) -> None:
    url = await http_server(response)
    check = await check_api_key(url, "k")
    assert not check.is_verified
    assert check.is_reachable is reachable
    assert check.problem is not None and problem in check.problem


async def test_join_with_a_bad_key_stops_before_joining(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    await upgrade_database(db_url)
    script = tmp_path / "m.json"
    script.write_text(json.dumps(SCRIPT))  # noqa: ASYNC240 - a few bytes, before the run
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDER_", "ASSEMBLYAI"))}
    env.update(ASSEMBLYAI_API_KEY="not-the-key", XDG_DATA_HOME=str(tmp_path))
    emulator = StreamingEmulator(api_keys={"the-right-key"})
    async with emulator.serve() as server:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "recorder",
            "join",
            f"--transport=replay:{script}",
            f"--stt-url={server.url}",
            f"--db={db_url}",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        took = time.monotonic() - started
    print(f"join with a bad key stopped after {took:.2f} s")  # a figure, not an assertion
    assert process.returncode == 1
    assert out == b""
    assert err.decode() == (
        "error: the speech-to-text service refused the API key (HTTP 401); "
        "check ASSEMBLYAI_API_KEY (or the temporary token)\n"
    )
    assert emulator.sessions == []  # no streaming session: nothing billed
    async with await TranscriptStore.open(db_url) as store:
        assert await store.list_meetings() == []  # no meeting, so none marked completed
