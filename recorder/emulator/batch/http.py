"""A minimal HTTP/1.1 server on asyncio streams, enough for the async API emulator.

One request per connection (``Connection: close``), bodies by
``Content-Length`` or chunked transfer encoding (RFC 9112 section 7.1),
bounded in size. The emulator's routes get a :class:`Request` and return a
:class:`Response`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["HttpError", "Request", "Response", "json_response", "serve_http"]

log = logging.getLogger(__name__)

_MAX_HEADER_BYTES = 64 * 1024
_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class HttpError(Exception):
    """A request the server cannot parse; answered with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(slots=True)
class Response:
    """One response."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, body: Any, **headers: str) -> Response:
    """A JSON response."""
    return Response(
        status, json.dumps(body).encode(), {"Content-Type": "application/json", **headers}
    )


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], limit: int) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        size = 0
        while True:
            line = await reader.readline()
            try:
                length = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise HttpError(400, "bad chunk size") from None
            if length == 0:
                await reader.readline()  # the blank line after the last chunk (no trailers)
                return b"".join(parts)
            size += length
            if size > limit:
                raise HttpError(413, "body too large")
            parts.append(await reader.readexactly(length))
            await reader.readexactly(2)
    raw = headers.get("content-length")
    if raw is None:
        return b""
    try:
        length = int(raw)
    except ValueError:
        raise HttpError(400, "bad content-length") from None
    if length > limit:
        raise HttpError(413, "body too large")
    return await reader.readexactly(length)


async def _read_request(reader: asyncio.StreamReader, limit: int) -> Request:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > _MAX_HEADER_BYTES:
        raise HttpError(400, "headers too large")
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        raise HttpError(400, "bad request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    parts = urlsplit(target)
    body = await _read_body(reader, headers, limit)
    return Request(method.upper(), parts.path, dict(parse_qsl(parts.query)), headers, body)


def _encode(response: Response) -> bytes:
    reason = _REASONS.get(response.status, "Unknown")
    headers = {**response.headers, "Content-Length": str(len(response.body))}
    headers["Connection"] = "close"
    head = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return head.encode("latin-1") + b"\r\n" + response.body


@contextlib.asynccontextmanager
async def serve_http(
    handle: Callable[[Request], Awaitable[Response | None]],
    host: str,
    port: int,
    *,
    max_body_bytes: int,
) -> AsyncIterator[asyncio.Server]:
    """Serve ``handle`` until the block exits; a None response drops the connection."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request = await _read_request(reader, max_body_bytes)
            except HttpError as exc:
                response: Response | None = json_response(exc.status, {"error": str(exc)})
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            else:
                response = await handle(request)
            if response is None:
                writer.transport.abort()
                return
            writer.write(_encode(response))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(on_connection, host, port, limit=_MAX_HEADER_BYTES)
    async with server:
        yield server
