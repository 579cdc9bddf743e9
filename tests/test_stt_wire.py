"""The STT wire: websockets' sans-I/O client on an asyncio transport, against real servers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidHeaderValue, InvalidMessage, InvalidStatus
from websockets.frames import Frame, Opcode

from recorder.stt.wire import WireSocket, open_wire, tls_context

LOG = logging.getLogger("test.wire")
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def opened(url: str, **kwargs: float | None) -> WireSocket:
    options: dict[str, float | None] = {
        "open_timeout_s": 5.0,
        "close_timeout_s": 1.0,
        "ping_interval_s": None,
        "ping_timeout_s": None,
    }
    options.update(kwargs)
    return await open_wire(
        url,
        {"Authorization": "key"},
        user_agent="recorder/test",
        max_size=2**20,
        logger=LOG,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[bytes | str], list[dict[str, str]]]]:
    """A websockets server that greets, records what it gets and echoes text as text."""
    got: list[bytes | str] = []
    headers: list[dict[str, str]] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        headers.append(dict(ws.request.headers.raw_items()))
        await ws.send('{"type": "Begin"}')
        async for message in ws:
            got.append(message)
            if isinstance(message, str):
                if message == "close":
                    await ws.close(4001, "asked")
                    return
                await ws.send(message.upper())

    async with serve(handler, "127.0.0.1", 0) as server:
        port = list(server.sockets)[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v3/ws", got, headers


async def test_handshake_first_message_audio_and_text(
    echo: tuple[str, list[bytes | str], list[dict[str, str]]],
) -> None:
    url, got, headers = echo
    wire = await opened(url)
    texts: list[str] = []
    arrived = asyncio.Event()

    def on_text(text: str) -> None:
        texts.append(text)
        arrived.set()

    await asyncio.sleep(0.05)  # Begin may arrive before anyone listens: it is held
    wire.receive(on_text)
    assert texts == ['{"type": "Begin"}']
    chunks = [bytes([i]) * 3200 for i in range(5)] + [b"x" * 70_000, b"y" * 10]
    for chunk in chunks:
        wire.send_binary(chunk)
    arrived.clear()
    wire.send_text("hello")
    await asyncio.wait_for(arrived.wait(), 5)
    assert texts[-1] == "HELLO"
    assert got == [*chunks, "hello"]  # unmasked by the server: the masking was right
    assert headers[0]["Authorization"] == "key"
    assert headers[0]["User-Agent"] == "recorder/test"
    wire.close()
    await asyncio.wait_for(wire.closed, 5)
    assert wire.close_code == 1000
    with pytest.raises(RuntimeError, match="not open"):
        wire.send_binary(b"late")


async def test_server_close_code_and_reason(
    echo: tuple[str, list[bytes | str], list[dict[str, str]]],
) -> None:
    url, _, _ = echo
    wire = await opened(url)
    wire.receive(lambda text: None)
    wire.send_text("close")
    await asyncio.wait_for(wire.closed, 5)
    assert (wire.close_code, wire.close_reason) == (4001, "asked")
    assert not wire.is_open


async def test_masking_keys_differ_per_frame() -> None:
    """RFC 6455 §5.3: every frame has its own unpredictable key (pooled, not repeated)."""
    received = bytearray()
    done = asyncio.Event()

    async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handshake(reader, writer)
        while len(received) < 2000 * 14:
            received.extend(await reader.read(65536))
        done.set()
        await reader.read()

    server = await raw_server(raw)
    port = server.sockets[0].getsockname()[1]
    async with server:
        wire = await opened(f"ws://127.0.0.1:{port}/")
        for _ in range(2000):  # past one pool of keys
            wire.send_binary(b"\0" * 8)
        await asyncio.wait_for(done.wait(), 5)
        wire.abort()
    keys = [bytes(received[i * 14 + 2 : i * 14 + 6]) for i in range(2000)]
    payloads = [bytes(received[i * 14 + 6 : i * 14 + 14]) for i in range(2000)]
    assert all(received[i * 14] == 0x82 and received[i * 14 + 1] == 0x88 for i in range(2000))
    assert payloads == [key * 2 for key in keys]  # zeros masked: the key itself
    assert len(set(keys)) > 1990


async def raw_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> asyncio.Server:
    """A raw TCP server on a free port; each connection is closed when its handler ends."""

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    return await asyncio.start_server(run, "127.0.0.1", 0)


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer a client's upgrade by hand (a server that then does nothing websockets would)."""
    request = (await reader.readuntil(b"\r\n\r\n")).decode()
    key = next(
        line.split(":", 1)[1].strip()
        for line in request.split("\r\n")
        if line.lower().startswith("sec-websocket-key")
    )
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    writer.write(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )
    await writer.drain()


async def test_a_server_that_stops_answering_pings_is_dropped() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handshake(reader, writer)
        await reader.read()  # reads pings, never answers

    server = await raw_server(silent)
    port = server.sockets[0].getsockname()[1]
    async with server:
        wire = await opened(f"ws://127.0.0.1:{port}/", ping_interval_s=0.05, ping_timeout_s=0.1)
        await asyncio.wait_for(wire.closed, 5)
    assert wire.close_code == 1006  # no close frame came back: as websockets reports it


async def test_pongs_keep_the_socket_open(
    echo: tuple[str, list[bytes | str], list[dict[str, str]]],
) -> None:
    url, _, _ = echo
    wire = await opened(url, ping_interval_s=0.02, ping_timeout_s=0.2)
    await asyncio.sleep(0.5)
    assert wire.is_open
    wire.close()
    await asyncio.wait_for(wire.closed, 5)


async def test_refused_upgrade_raises_invalid_status() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await raw_server(refuse)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(InvalidStatus) as info:
            await opened(f"ws://127.0.0.1:{port}/")
    assert info.value.response.status_code == 401


async def test_no_answer_times_out() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await raw_server(mute)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(TimeoutError):
            await opened(f"ws://127.0.0.1:{port}/", open_timeout_s=0.2)


async def test_fragmented_text_is_joined() -> None:
    got: list[str] = []
    arrived = asyncio.Event()

    async def fragments(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handshake(reader, writer)
        for frame in (
            Frame(Opcode.TEXT, b'{"a": ', fin=False),
            Frame(Opcode.CONT, b"1}", fin=True),
        ):
            writer.write(frame.serialize(mask=False))
        await writer.drain()
        await reader.read()

    server = await raw_server(fragments)
    port = server.sockets[0].getsockname()[1]
    async with server:
        wire = await opened(f"ws://127.0.0.1:{port}/")

        def on_text(text: str) -> None:
            got.append(text)
            arrived.set()

        wire.receive(on_text)
        await asyncio.wait_for(arrived.wait(), 5)
        wire.abort()
    assert got == ['{"a": 1}']


async def test_an_http_proxy_from_the_environment_is_tunnelled_through(
    echo: tuple[str, list[bytes | str], list[dict[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP(S)_PROXY is honoured as websockets' own connect() does (CONNECT, then the handshake)."""
    url, got, _ = echo
    target = url.split("/")[2]
    asked: list[str] = []

    async def tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        asked.append(head.split(b"\r\n", 1)[0].decode())
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    proxy = await asyncio.start_server(tunnel, "127.0.0.1", 0)
    async with proxy:
        port = proxy.sockets[0].getsockname()[1]
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        wire = await opened(url)
        texts: list[str] = []
        arrived = asyncio.Event()

        def on_text(text: str) -> None:
            texts.append(text)
            arrived.set()

        wire.receive(on_text)
        await asyncio.wait_for(arrived.wait(), 5)
        assert texts == ['{"type": "Begin"}']
        assert asked == [f"CONNECT {target} HTTP/1.1"]
        wire.abort()


async def answer_with(reader: asyncio.StreamReader, answer: str) -> bytes:
    """Read a client's upgrade and return ``answer`` (``{accept}`` filled in) as bytes."""
    request = (await reader.readuntil(b"\r\n\r\n")).decode()
    key = next(
        line.split(":", 1)[1].strip()
        for line in request.split("\r\n")
        if line.lower().startswith("sec-websocket-key")
    )
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    return answer.format(accept=accept).encode()


@pytest.mark.parametrize(
    "connection",
    ["Upgrade", "keep-alive, Upgrade"],  # the second is websockets' to judge
)
async def test_an_answer_in_pieces_with_a_message_behind_it(connection: str) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = await answer_with(
            reader,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            f"Connection: {connection}\r\nSec-WebSocket-Accept: {{accept}}\r\n\r\n",
        )
        for i in range(len(answer) - 1):
            writer.write(answer[i : i + 1])
            await writer.drain()
        writer.write(answer[-1:] + Frame(Opcode.TEXT, b'{"type": "Begin"}').serialize(mask=False))
        await writer.drain()
        await reader.read()

    server = await raw_server(trickle)
    port = server.sockets[0].getsockname()[1]
    async with server:
        wire = await opened(f"ws://127.0.0.1:{port}/")
        arrived = asyncio.Event()
        texts: list[str] = []

        def on_text(text: str) -> None:
            texts.append(text)
            arrived.set()

        wire.receive(on_text)
        await asyncio.wait_for(arrived.wait(), 5)
        assert wire.is_open
        wire.close()
        await asyncio.wait_for(wire.closed, 5)
    assert texts == ['{"type": "Begin"}']


async def test_a_connection_closed_mid_answer_fails_as_websockets_says() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = await answer_with(reader, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: web")
        writer.write(answer)
        await writer.drain()

    server = await raw_server(cut)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(InvalidMessage, match="did not receive a valid HTTP response") as info:
            await opened(f"ws://127.0.0.1:{port}/")
    assert isinstance(info.value.__cause__, EOFError)


async def test_a_bad_accept_fails_as_websockets_says() -> None:
    async def wrong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer_with(reader, "")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n"
        )
        await writer.drain()
        await reader.read()

    server = await raw_server(wrong)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(InvalidHeaderValue, match="Sec-WebSocket-Accept"):
            await opened(f"ws://127.0.0.1:{port}/")


async def test_at_debug_websockets_logs_the_handshake(
    echo: tuple[str, list[bytes | str], list[dict[str, str]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, _, headers = echo
    caplog.set_level(logging.DEBUG, logger=LOG.name)
    wire = await opened(url)
    wire.abort()
    lines = [record.getMessage() for record in caplog.records if record.name == LOG.name]
    assert "> GET /v3/ws HTTP/1.1" in lines and "< HTTP/1.1 101 Switching Protocols" in lines
    assert headers[0]["User-Agent"] == "recorder/test"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (made by the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        + ["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key)]
        + ["-out", str(cert), "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_wss_sockets_share_one_verified_tls_context(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building a context loads the CA store (tens of ms): it is built once, not per socket."""
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    built: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def trusting_the_test_certificate() -> ssl.SSLContext:
        context = real()
        context.load_verify_locations(cert)
        built.append(context)
        return context

    async def greet(ws: ServerConnection) -> None:
        await ws.send('{"type": "Begin"}')
        await ws.wait_closed()

    monkeypatch.setattr(ssl, "create_default_context", trusting_the_test_certificate)
    tls_context.cache_clear()
    try:
        async with serve(greet, "127.0.0.1", 0, ssl=server_context) as server:
            port = list(server.sockets)[0].getsockname()[1]
            for _ in range(2):
                wire = await opened(f"wss://127.0.0.1:{port}/v3/ws")
                assert wire.is_open
                wire.close()
                await asyncio.wait_for(wire.closed, 5)
    finally:
        tls_context.cache_clear()  # later tests get the real one
    assert len(built) == 1 and built[0].verify_mode is ssl.CERT_REQUIRED
