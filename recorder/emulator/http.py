"""Plain HTTP for the emulators: requests, responses, one HTTP/1.1 connection loop.

AssemblyAI's REST APIs (the async API's uploads and transcripts, the LLM Gateway) take
``POST`` bodies, which websockets' server does not read. :class:`HttpSide` builds a
websockets connection class that looks at a new connection's request line first: a
request an :class:`HttpApp` claims is answered here on the same socket; anything else goes
to websockets as if nothing had happened. So one ``host:port`` serves every endpoint.
:func:`serve_http` serves an app on a port of its own (the async emulator standalone).

The wire format is the small part of RFC 9112 a client of these APIs uses: keep-alive,
bodies by ``Content-Length`` or chunked transfer coding (section 7.1), bounded sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "HttpApp",
    "HttpHandler",
    "HttpRequest",
    "HttpResponse",
    "HttpSide",
    "json_reply",
    "serve_connection",
    "serve_http",
    "text_reply",
]

log = logging.getLogger("recorder.emulator.http")

MAX_HEAD_BYTES = 64 * 1024
# A meeting transcript for the gateway is a few MB; the async API sets its own (2.2 GB).
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One HTTP request.

    Attributes:
        method: upper case.
        path: without the query string.
        headers: names in lower case.
        body: the whole body.
        query: the query string's parameters (the last of a repeated name).
        params: the route pattern's ``{name}`` segments (:class:`~recorder.emulator.router.Router`).
    """

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    query: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One HTTP response."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


# None drops the connection without an answer (an injected fault).
HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse | None]]


class HttpApp(Protocol):
    """What serves plain HTTP requests: a router, or an emulator wrapping one."""

    def claims(self, method: str, path: str) -> bool:
        """Whether the app answers ``method path`` (else websockets sees the request)."""

    def body_limit(self, method: str, path: str) -> int:
        """The largest body a request to ``method path`` may carry (413 beyond)."""

    async def __call__(self, request: HttpRequest) -> HttpResponse | None:
        """Answer one request; None drops the connection."""


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> HttpResponse:
    """A JSON response."""
    return HttpResponse(status, json.dumps(body).encode("utf-8"), dict(headers or {}))


def text_reply(status: int, text: str) -> HttpResponse:
    """A plain-text response."""
    return HttpResponse(status, text.encode("utf-8"), content_type="text/plain")


class _BadRequest(Exception):
    """A request that cannot be read; answered with ``reply`` and the connection closed."""

    def __init__(self, reply: HttpResponse) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _refuse(status: int, message: str) -> _BadRequest:
    return _BadRequest(json_reply(status, {"error": message}))


def _encode(response: HttpResponse, *, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = ""
    headers = {
        "Content-Type": response.content_type,
        **response.headers,
        "Content-Length": str(len(response.body)),
        "Connection": "keep-alive" if keep_alive else "close",
    }
    head = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return head.encode("latin-1") + b"\r\n" + response.body


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        line = await reader.readline()
        try:
            length = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _refuse(400, "bad chunk size") from None
        if length == 0:
            # Trailer fields (ignored) up to the blank line that ends the message.
            while (await reader.readline()).strip():
                pass
            return b"".join(parts)
        size += length
        if length < 0 or size > limit:
            raise _refuse(413, "body too large")
        parts.append(await reader.readexactly(length))
        await reader.readexactly(2)  # the CRLF after each chunk


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, app: HttpApp
) -> tuple[HttpRequest, bool]:
    """One request, and whether the connection stays open after its answer."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _BadRequest(HttpResponse(431)) from None
    request_line, *lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadRequest(text_reply(400, "bad request line"))
    method, target = parts[0].upper(), urlsplit(parts[1])
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    # HTTP/1.1 keeps a connection open unless told otherwise; 1.0 only when asked to.
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if parts[2] != "HTTP/1.0" else connection == "keep-alive"
    limit = app.body_limit(method, target.path)
    # curl waits for this before sending a large upload (RFC 9110 section 10.1.1); it is
    # sent only once the body is known to be welcome.
    expects = headers.get("expect", "").lower() == "100-continue"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        if expects:
            writer.write(_CONTINUE)
        body = await _read_chunked(reader, limit)
    else:
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _refuse(400, "bad content-length") from None
        if length < 0:
            raise _refuse(400, "bad content-length")
        if length > limit:
            raise _refuse(413, "body too large")
        if expects and length:
            writer.write(_CONTINUE)
        body = await reader.readexactly(length) if length else b""
    request = HttpRequest(method, target.path, headers, body, dict(parse_qsl(target.query)))
    return request, keep_alive


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, app: HttpApp
) -> None:
    """Answer requests on one connection until the client closes it (or asks to)."""
    try:
        while True:
            try:
                request, keep_alive = await _read_request(reader, writer, app)
            except _BadRequest as bad:
                writer.write(_encode(bad.reply, keep_alive=False))
                await writer.drain()
                return
            try:
                response = await app(request)
            except Exception:  # an emulator bug: answer like a server would, and log it
                log.exception("! %s %s failed", request.method, request.path)
                response = text_reply(500, "Internal Server Error")
            if response is None:  # an injected dropped connection
                writer.transport.abort()
                return
            writer.write(_encode(response, keep_alive=keep_alive))
            await writer.drain()
            if not keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


class _Connections:
    """The open HTTP connections of one server, so its exit can close keep-alive ones."""

    def __init__(self, app: HttpApp) -> None:
        self.app = app
        self.transports: set[asyncio.BaseTransport] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        self.transports.add(transport)
        task = asyncio.get_running_loop().create_task(
            serve_connection(reader, writer, self.app), name="emulator-http"
        )
        self.tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self.tasks.discard(finished)
            self.transports.discard(transport)

        task.add_done_callback(done)

    async def aclose(self) -> None:
        for transport in list(self.transports):
            transport.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class HttpSide:
    """The plain HTTP requests taken over from a websockets server.

    Args:
        app: answers every request it claims; the rest go to websockets.

    Attributes:
        connection_class: pass as ``create_connection`` to ``websockets.asyncio.server.serve``.
    """

    def __init__(self, app: HttpApp) -> None:
        self.app = app
        self._connections = _Connections(app)
        self.connection_class = self._sniffing_class()

    async def aclose(self) -> None:
        """Close every HTTP connection (keep-alive clients would hold the server open)."""
        await self._connections.aclose()

    def _sniffing_class(self) -> type[ServerConnection]:
        app, connections = self.app, self._connections

        class SniffingConnection(ServerConnection):
            _sniff: bytearray | None = None
            _transport: asyncio.Transport | None = None

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                # Hold the handshake until the request line shows who this is for.
                self._transport = transport  # type: ignore[assignment]
                self._sniff = bytearray()

            def data_received(self, data: bytes) -> None:
                if self._sniff is None:
                    super().data_received(data)
                    return
                self._sniff += data
                end = self._sniff.find(b"\r\n")
                if end < 0 and len(self._sniff) < MAX_HEAD_BYTES:
                    return
                first = bytes(self._sniff[: max(end, 0)]).decode("latin-1").split(" ")
                buffered, self._sniff = bytes(self._sniff), None
                transport = self._transport
                assert transport is not None
                if len(first) == 3 and app.claims(first[0].upper(), urlsplit(first[1]).path):
                    self._hand_to_http(transport, buffered)
                    return
                super().connection_made(transport)
                super().data_received(buffered)

            def _hand_to_http(self, transport: asyncio.Transport, buffered: bytes) -> None:
                loop = asyncio.get_running_loop()
                reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES, loop=loop)
                protocol = asyncio.StreamReaderProtocol(reader, connections.serve, loop=loop)
                transport.set_protocol(protocol)
                protocol.connection_made(transport)
                protocol.data_received(buffered)

            def connection_lost(self, exc: Exception | None) -> None:
                if self._sniff is not None:  # closed before saying anything
                    self._sniff = None
                    return
                super().connection_lost(exc)

            def eof_received(self) -> None:
                if self._sniff is None:
                    super().eof_received()

        return SniffingConnection


@contextlib.asynccontextmanager
async def serve_http(app: HttpApp, host: str, port: int) -> AsyncIterator[asyncio.Server]:
    """Serve ``app`` on ``host:port`` (0: a free port) until the block exits."""
    connections = _Connections(app)
    server = await asyncio.start_server(connections.serve, host, port, limit=MAX_HEAD_BYTES)
    try:
        yield server
    finally:
        server.close()
        # Keep-alive clients would otherwise hold wait_closed() open.
        await connections.aclose()
        await server.wait_closed()
