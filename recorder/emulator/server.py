"""Serve every emulator on one port, routed by request path.

The streaming emulator answers ``/v3/ws`` (and ``/v3/token``), the Voice Agent
emulator ``/v1/ws`` (and ``/v1/token``): WebSocket upgrades, served by websockets. The
plain HTTP APIs go through one :class:`~recorder.emulator.http.HttpSide` and one
:class:`~recorder.emulator.router.Router`: the pre-recorded (async) API under ``/v2``
(``/v2/upload``, ``/v2/transcript``...), the LLM Gateway under ``/v1``
(``/v1/chat/completions``, ``/v1/models``). So ``http://HOST:PORT`` stands in for every
AssemblyAI host the recorder uses (``--emulator``). Used by ``recorder emulate``, the
demo and the benchmarks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from recorder.emulator.agent.server import AGENT_PATH, VoiceAgentEmulator
from recorder.emulator.batch.server import BatchEmulator
from recorder.emulator.http import HttpSide
from recorder.emulator.llm.gateway import LLM_BASE_PATH, LlmGatewayEmulator
from recorder.emulator.router import Router
from recorder.emulator.serving import server_options
from recorder.emulator.streaming.records import StreamingBehaviour
from recorder.emulator.streaming.server import STREAMING_PATH, StreamingEmulator

__all__ = ["EmulatorServer", "RoutedEmulator", "serve_emulators"]


class RoutedEmulator(Protocol):
    """What an emulator offers the shared server."""

    @property
    def paths(self) -> frozenset[str]:
        """Request paths it answers."""

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer or accept one HTTP request for one of its paths."""

    async def handle(self, connection: ServerConnection) -> None:
        """Serve one upgraded socket."""


@dataclass(frozen=True, slots=True)
class EmulatorServer:
    """The running emulators.

    Attributes:
        host: the bound host.
        port: the bound port.
        streaming: the streaming emulator (its ``sessions`` are the records).
        agent: the Voice Agent emulator.
        urls: what is served, by name (``"streaming"``: ``ws://HOST:PORT/v3/ws``,
            ``"agent"``: ``ws://HOST:PORT/v1/ws``, ``"llm"``: ``http://HOST:PORT/v1``,
            ``"async"``: ``http://HOST:PORT`` (the API's paths start ``/v2``),
            ``"emulator"``: ``http://HOST:PORT``, for ``--emulator``).
        server: the websockets server.
        llm: the LLM Gateway emulator.
        batch: the pre-recorded (async) API emulator.
    """

    host: str
    port: int
    streaming: StreamingEmulator
    agent: VoiceAgentEmulator
    urls: Mapping[str, str] = field(default_factory=dict)
    server: Server | None = None
    llm: LlmGatewayEmulator | None = None
    batch: BatchEmulator | None = None


def _route(emulators: Iterable[RoutedEmulator], path: str) -> RoutedEmulator | None:
    for emulator in emulators:
        if path in emulator.paths:
            return emulator
    return None


@contextlib.asynccontextmanager
async def serve_emulators(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    api_keys: Iterable[str] = frozenset(),
    realtime_factor: float = 1.0,
    streaming: StreamingEmulator | None = None,
    agent: VoiceAgentEmulator | None = None,
    llm: LlmGatewayEmulator | None = None,
    batch: BatchEmulator | None = None,
) -> AsyncIterator[EmulatorServer]:
    """Serve the emulators on one port until the block exits.

    Args:
        host: interface to bind (keep it on loopback unless you mean it).
        port: TCP port; 0 picks a free one.
        api_keys: keys accepted; empty means any non-empty key.
        realtime_factor: how much faster than real time audio may arrive (streaming) and
            reply audio is sent (Voice Agent).
        streaming: a pre-built streaming emulator (tests); overrides the two above.
            Without it, frames are not recorded (``record_frames=False``), only sessions.
        agent: a pre-built Voice Agent emulator (tests).
        llm: a pre-built LLM Gateway emulator (tests).
        batch: a pre-built pre-recorded (async) API emulator (tests, fault switches).

    Yields:
        The running emulators and their URLs.
    """
    if streaming is None:
        # A long-running server keeps session records but not every frame (memory).
        streaming = StreamingEmulator(
            api_keys=api_keys,
            realtime_factor=realtime_factor,
            behaviour=StreamingBehaviour(record_frames=False),
        )
    if agent is None:
        agent = VoiceAgentEmulator(api_keys=api_keys, realtime_factor=realtime_factor)
    if llm is None:
        llm = LlmGatewayEmulator(api_keys=api_keys)
    if batch is None:
        batch = BatchEmulator(api_keys=api_keys)
    emulators: list[RoutedEmulator] = [streaming, agent]
    # The REST APIs are plain HTTP (POST bodies), taken over before websockets sees them.
    rest = Router()
    rest.mount(batch)
    rest.mount(llm.router)
    http = HttpSide(rest)

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        emulator = _route(emulators, urlsplit(request.path).path)
        if emulator is None:
            # Any path nobody serves is simply not here; v2 is gone (HTTP 410,
            # docs/providers.md, "Streaming: connecting").
            return streaming.process_request(connection, request)
        return emulator.process_request(connection, request)

    async def handle(connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None  # handlers only run after the handshake
        emulator = _route(emulators, urlsplit(request.path).path)
        if emulator is None:  # pragma: no cover - process_request refused it already
            await connection.close(1011)
            return
        await emulator.handle(connection)

    async with serve(
        handle,
        host,
        port,
        process_request=process_request,
        create_connection=http.connection_class,
        **server_options(),
    ) as server:
        bound_host, bound_port = next(iter(server.sockets)).getsockname()[:2]
        base = f"ws://{bound_host}:{bound_port}"
        http_base = f"http://{bound_host}:{bound_port}"
        urls = {
            "streaming": base + STREAMING_PATH,
            "agent": base + AGENT_PATH,
            "llm": http_base + LLM_BASE_PATH,
            "async": http_base,
            "emulator": http_base,
        }
        batch.base_url = http_base
        try:
            yield EmulatorServer(bound_host, bound_port, streaming, agent, urls, server, llm, batch)
        finally:
            await batch.aclose()
            await http.aclose()
