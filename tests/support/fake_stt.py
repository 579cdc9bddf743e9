"""A scripted fake AssemblyAI v3 streaming server on 127.0.0.1:0 for client tests.

Each accepted connection runs one script (``scripts[i]`` for the i-th upgrade,
the last one repeating) while a reader records every frame the client sent,
with its arrival time. Upgrades can be refused with an HTTP status.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.support.timing import TIMEOUT

__all__ = ["FakeConnection", "FakeSttServer", "Received", "turn_message"]


@dataclass(frozen=True)
class Received:
    """One frame the client sent: ``bytes`` audio or ``str`` JSON, and when (monotonic)."""

    at: float
    data: str | bytes


@dataclass
class FakeConnection:
    """One accepted socket: what the client sent, and helpers to script replies."""

    index: int
    ws: ServerConnection
    path: str
    query: dict[str, str]
    headers: Headers
    received: list[Received] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    client_gone: asyncio.Event = field(default_factory=asyncio.Event)
    begin_sent_at: float | None = None

    # -- what the client sent ------------------------------------------------

    @property
    def audio(self) -> list[bytes]:
        """The binary frames, in order."""
        return [r.data for r in self.received if isinstance(r.data, bytes)]

    @property
    def audio_bytes(self) -> bytes:
        """All audio received, concatenated."""
        return b"".join(self.audio)

    @property
    def texts(self) -> list[dict[str, Any]]:
        """The text frames, parsed."""
        return [json.loads(r.data) for r in self.received if isinstance(r.data, str)]

    def text_types(self) -> list[str]:
        """The ``type`` of every text frame."""
        return [t.get("type", "") for t in self.texts]

    async def wait_until(self, predicate: Callable[[], bool], within_s: float = TIMEOUT) -> None:
        """Wait until ``predicate()`` holds (checked on every frame received)."""
        async with asyncio.timeout(within_s):
            while not predicate():
                self._changed.clear()
                if self.client_gone.is_set():
                    if predicate():
                        return
                    raise AssertionError("client went away before the condition held")
                gone = asyncio.ensure_future(self.client_gone.wait())
                changed = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait({gone, changed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    gone.cancel()
                    changed.cancel()

    async def wait_audio(self, n_bytes: int, within_s: float = TIMEOUT) -> None:
        """Wait until at least ``n_bytes`` of audio arrived."""
        await self.wait_until(lambda: sum(map(len, self.audio)) >= n_bytes, within_s)

    async def wait_text(self, kind: str, within_s: float = TIMEOUT) -> None:
        """Wait until a text frame of type ``kind`` arrived."""
        await self.wait_until(lambda: kind in self.text_types(), within_s)

    # -- replies -------------------------------------------------------------

    async def send_json(self, message: dict[str, Any]) -> None:
        """Send one JSON text frame."""
        await self.ws.send(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        """Send a text frame as is (e.g. malformed JSON)."""
        await self.ws.send(text)

    async def begin(self, session_id: str | None = None) -> str:
        """Send ``Begin``; return the session id."""
        session_id = session_id or str(uuid.uuid4())
        self.begin_sent_at = time.monotonic()
        await self.send_json(
            {"type": "Begin", "id": session_id, "expires_at": int(time.time()) + 10800}
        )
        return session_id

    async def terminate_reply(
        self, finals: Sequence[dict[str, Any]] = (), *, audio_s: int = 1, session_s: int = 2
    ) -> None:
        """Wait for ``Terminate``; send the finals, ``Termination``, and close 1000."""
        await self.wait_text("Terminate")
        for message in finals:
            await self.send_json(message)
        await self.send_json(
            {
                "type": "Termination",
                "audio_duration_seconds": audio_s,
                "session_duration_seconds": session_s,
            }
        )
        await self.ws.close(1000)

    async def close(self, code: int, reason: str = "", *, error: str | None = None) -> None:
        """Close with ``code``; with ``error``, send an ``Error`` frame first.

        See docs/providers.md, "Streaming: close codes".
        """
        if error is not None:
            await self.send_json({"type": "Error", "error_code": code, "error": error})
        await self.ws.close(code, reason)

    def drop(self) -> None:
        """Drop TCP without a close frame (the client sees 1006)."""
        self.ws.transport.abort()


Script = Callable[[FakeConnection], Awaitable[None]]


def turn_message(
    turn_order: int,
    words: Sequence[tuple[str, int, int]],
    *,
    final: bool = True,
    formatted: bool | None = None,
    language_code: str | None = "en",
) -> dict[str, Any]:
    """Build a ``Turn`` message from ``(text, start_ms, end_ms)`` words.

    See docs/providers.md, "Streaming: messages".
    """
    text = " ".join(w for w, _, _ in words)
    message: dict[str, Any] = {
        "type": "Turn",
        "turn_order": turn_order,
        "turn_is_formatted": final if formatted is None else formatted,
        "end_of_turn": final,
        "transcript": text,
        "utterance": text if final else "",
        "end_of_turn_confidence": 1 if final else 0,
        "words": [
            {"text": w, "start": s, "end": e, "confidence": 0.9, "word_is_final": final}
            for w, s, e in words
        ],
    }
    if final and language_code is not None:
        message["language_code"] = language_code
        message["language_confidence"] = 0.97
    return message


class FakeSttServer:
    """``async with FakeSttServer(scripts) as server:`` then connect to ``server.url``.

    Args:
        scripts: one script per connection attempt, the last repeating.
        reject: HTTP status to refuse the upgrade with, by attempt index.
    """

    def __init__(
        self, scripts: Sequence[Script] | Script, *, reject: dict[int, int] | None = None
    ) -> None:
        self._scripts = [scripts] if callable(scripts) else list(scripts)
        self._reject = reject or {}
        self.attempts = 0
        self.connections: list[FakeConnection] = []
        self.errors: list[BaseException] = []
        self._server: Server | None = None
        self._new_connection = asyncio.Event()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/v3/ws``."""
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/v3/ws"

    async def __aenter__(self) -> FakeSttServer:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            compression=None,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        if self.errors and exc[0] is None:
            raise AssertionError(f"fake server script failed: {self.errors[0]!r}")

    async def wait_connections(self, n: int, within_s: float = TIMEOUT) -> FakeConnection:
        """Wait until ``n`` connections were accepted; return the last."""
        async with asyncio.timeout(within_s):
            while len(self.connections) < n:
                self._new_connection.clear()
                await self._new_connection.wait()
        return self.connections[n - 1]

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        attempt = self.attempts
        self.attempts += 1
        status = self._reject.get(attempt)
        if status is not None:
            return connection.respond(HTTPStatus(status), f"refused with {status}\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        parts = urlsplit(ws.request.path)
        conn = FakeConnection(
            index=len(self.connections),
            ws=ws,
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers=ws.request.headers,
        )
        self.connections.append(conn)
        self._new_connection.set()
        reader = asyncio.create_task(self._read(conn), name=f"fake stt reader {conn.index}")
        script = self._scripts[min(conn.index, len(self._scripts) - 1)]
        try:
            await script(conn)
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        except (Exception, TimeoutError) as exc:  # recorded; raised by __aexit__
            self.errors.append(exc)
            ws.transport.abort()
        finally:
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                pass

    async def _read(self, conn: FakeConnection) -> None:
        try:
            async for frame in conn.ws:
                conn.received.append(Received(time.monotonic(), frame))
                conn._changed.set()
        except ConnectionClosed:
            pass
        finally:
            conn.client_gone.set()
            conn._changed.set()
