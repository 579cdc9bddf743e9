"""Plain HTTP endpoints on the emulators' WebSocket port.

websockets' server reads only ``GET`` requests, but the LLM Gateway (and AssemblyAI's
other REST APIs) take ``POST`` bodies. :func:`sniffing_connection` builds a websockets
connection class that looks at a new connection's request line first: a request for
one of the HTTP routes is handed to a small HTTP/1.1 handler (keep-alive,
``Content-Length`` bodies) on the same socket; anything else goes to websockets as if
nothing had happened. So one ``host:port`` serves every endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection

__all__ = [
    "HttpHandler",
    "HttpRequest",
    "HttpSide",
    "HttpResponse",
    "json_reply",
    "serve_http",
    "sniffing_connection",
]

log = logging.getLogger("recorder.emulator.http")

# Bigger request heads or bodies are refused (413): a meeting transcript is a few MB.
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One HTTP request; header names are lowercase."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One HTTP response."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> HttpResponse:
    """A JSON response."""
    return HttpResponse(status, json.dumps(body).encode("utf-8"), dict(headers or {}))


def _encode(response: HttpResponse, *, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    headers = {
        "Content-Type": response.content_type,
        "Content-Length": str(len(response.body)),
        "Connection": "keep-alive" if keep_alive else "close",
        **response.headers,
    }
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


async def serve_http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: HttpHandler
) -> None:
    """Answer requests on one connection until the client closes it."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                writer.write(_encode(HttpResponse(431, b""), keep_alive=False))
                break
            except asyncio.IncompleteReadError:
                break
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            parts = request_line.split(" ")
            if len(parts) != 3:
                writer.write(_encode(HttpResponse(400, b"bad request line"), keep_alive=False))
                break
            method, path, _version = parts
            headers: dict[str, str] = {}
            for line in header_lines:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                writer.write(_encode(HttpResponse(411, b""), keep_alive=False))
                break
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                writer.write(_encode(HttpResponse(413, b""), keep_alive=False))
                break
            body = await reader.readexactly(length) if length else b""
            try:
                response = await handler(HttpRequest(method, path, headers, body))
            except Exception:  # an emulator bug: answer like a server would, and log it
                log.exception("! %s %s failed", method, path)
                response = HttpResponse(500, b"Internal Server Error", content_type="text/plain")
            keep_alive = headers.get("connection", "").lower() != "close"
            writer.write(_encode(response, keep_alive=keep_alive))
            await writer.drain()
            if not keep_alive:
                break
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


class HttpSide:
    """The HTTP connections taken over from a websockets server, for one or more emulators.

    Args:
        routes: ``(is_http, handler)`` pairs: ``is_http(method, path)`` says whether a
            request is for that handler; the first that claims a request answers it.

    Attributes:
        connection_class: pass as ``create_connection`` to ``websockets.asyncio.server.serve``.
    """

    def __init__(self, *routes: tuple[Callable[[str, str], bool], HttpHandler]) -> None:
        self.transports: set[asyncio.Transport] = set()
        self._routes = routes
        self.connection_class = sniffing_connection(self.claims, self.handle, self.transports)

    def claims(self, method: str, path: str) -> bool:
        """Whether any route answers this request."""
        return any(is_http(method, path) for is_http, _ in self._routes)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer with the first route that claims the request (404 if none)."""
        path = request.path.split("?", 1)[0]
        for is_http, handler in self._routes:
            if is_http(request.method, path):
                return await handler(request)
        return HttpResponse(404, b"Not found", content_type="text/plain")

    def close(self) -> None:
        """Close every HTTP connection (keep-alive clients would hold the server open)."""
        for transport in list(self.transports):
            transport.close()


def sniffing_connection(
    is_http: Callable[[str, str], bool],
    handler: HttpHandler,
    transports: set[asyncio.Transport] | None = None,
) -> type[ServerConnection]:
    """A websockets connection class that hands HTTP requests to ``handler``.

    Args:
        is_http: ``(method, path) -> bool``: whether a request is for the HTTP side.
        handler: answers one HTTP request.
        transports: a set the class keeps its open HTTP connections in.

    Returns:
        The class to pass as ``create_connection`` to ``websockets.asyncio.server.serve``.
    """
    tasks: set[asyncio.Task[None]] = set()
    open_transports = transports if transports is not None else set()

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
            if len(first) == 3 and is_http(first[0], first[1].split("?", 1)[0]):
                self._hand_to_http(transport, buffered)
                return
            super().connection_made(transport)
            super().data_received(buffered)

        def _hand_to_http(self, transport: asyncio.Transport, buffered: bytes) -> None:
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES, loop=loop)

            def connected(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                task = loop.create_task(serve_http(r, w, handler), name="emulator-http")
                tasks.add(task)
                open_transports.add(transport)

                def done(finished: asyncio.Task[None]) -> None:
                    tasks.discard(finished)
                    open_transports.discard(transport)

                task.add_done_callback(done)

            protocol = asyncio.StreamReaderProtocol(reader, connected, loop=loop)
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
