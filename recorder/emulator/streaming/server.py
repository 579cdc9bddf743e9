"""A local AssemblyAI Universal-Streaming v3 server (``u3-rt-pro``) for tests, demos and benchmarks.

It speaks the protocol docs/providers.md describes ("Streaming: connecting" to
"Streaming: limits and billing"; public reference:
https://www.assemblyai.com/docs/api-reference/streaming-api/universal-3-pro-streaming) at
``/v3/ws`` on loopback: the synthetic speech codec's tones become words, and
pauses become partials and finals by the ``u3-rt-pro`` rules. Faults come from
a :class:`~recorder.emulator.faults.FaultPlan`; every socket leaves a
:class:`SessionRecord` in :attr:`StreamingEmulator.sessions`.

What the real service does that is deliberately not modelled, and why:

* Speech is heard from the codec only, not scripted from transcript files:
  the codec carries the text in the audio itself.
* ``speaker_label`` is always ``"A"`` (or ``"UNKNOWN"`` under 1 s): one
  socket carries one participant, so there is nobody else to tell apart.
* Temporary tokens are issued by ``GET /v3/token`` on the same port, but the
  official SDK's ``create_temporary_token`` always uses ``https://``, so only
  plain-HTTP clients can reach it.
* "Close 1011 during the handshake" is modelled as an upgrade followed at
  once by a 1011 close (``Fault.close(1011)``); an HTTP failure status is
  ``Fault.reject_http(...)``.
* No golden test against recorded real traffic: no recording of a real
  session exists in this project; the official SDK's conformance test stands in
  for it.
* ``prompt``, ``keyterms_prompt``, ``vad_threshold`` and ``domain`` are
  validated and stored but do not change the decoded text: the codec is exact.
* 1009 for messages over 128 KB comes without an ``Error`` frame, as a
  WebSocket-level size limit would (the documentation gives no ``Error`` text for it).
* Later or optional server messages (``Heartbeat``, ``SpeakerRevision``,
  ``LLMGatewayResponse``, ``Warning``) and ``Begin.configuration`` are never
  sent: u3-rt-pro of Feb-Mar 2026 (the default model) did not send them, and
  clients must ignore unknown messages anyway.
* The pacing allowance (``StreamingBehaviour.rate_allowance_s``, 3 s) is our
  choice; the real tolerance is not documented.

Test aids: :class:`~recorder.clock.ManualClock` moves the
session cap and inactivity timers by hand; ``realtime_factor=math.inf``
switches the pacing rule off.
"""

from __future__ import annotations

import collections
import contextlib
import http
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from recorder.clock import Clock, SystemClock
from recorder.emulator.faults import FaultKind, FaultPlan
from recorder.emulator.serving import json_response, server_options
from recorder.emulator.streaming.engine import Recognizer
from recorder.emulator.streaming.params import (
    DOCUMENTED_REASONS,
    ParameterError,
    SessionParams,
    parse_params,
)
from recorder.emulator.streaming.records import SessionRecord, StreamingBehaviour
from recorder.emulator.streaming.session import Admission, EmulatedSession
from recorder.emulator.tokens import TokenBook
from recorder.tonecode import StreamDecoder

__all__ = [
    "STREAMING_PATH",
    "TOKEN_PATH",
    "RunningServer",
    "StreamingEmulator",
    "default_recognizer",
]

STREAMING_PATH = "/v3/ws"
TOKEN_PATH = "/v3/token"
_V2_PATH = "/v2/realtime/ws"

log = logging.getLogger("recorder.emulator")


def default_recognizer(sample_rate_hz: int) -> Recognizer:
    """The synthetic speech codec's stream decoder for one socket."""
    return StreamDecoder(sample_rate_hz)


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A serving emulator.

    Attributes:
        url: the streaming URL, ``ws://HOST:PORT/v3/ws``.
        host: the bound host.
        port: the bound port.
        server: the underlying websockets server.
    """

    url: str
    host: str
    port: int
    server: Server


class StreamingEmulator:
    """The emulated streaming service; one instance may serve many sockets.

    Args:
        api_keys: keys accepted in ``Authorization``; empty means any non-empty key.
        realtime_factor: audio may arrive this many times faster than real time (plus
            ``behaviour.rate_allowance_s``); 1.0 is the real rule, ``inf`` disables it.
        faults: faults per connection; may be replaced between connections.
        clock: clock for the session cap, inactivity and billing.
        behaviour: model and rule switches.
        recognizer: builds the speech decoder of a socket from its sample rate.
    """

    #: The request paths this emulator answers (for routing next to other emulators).
    paths = frozenset({STREAMING_PATH, TOKEN_PATH})

    def __init__(
        self,
        *,
        api_keys: Iterable[str] = frozenset(),
        realtime_factor: float = 1.0,
        faults: FaultPlan | None = None,
        clock: Clock | None = None,
        behaviour: StreamingBehaviour | None = None,
        recognizer: Callable[[int], Recognizer] = default_recognizer,
    ) -> None:
        if not realtime_factor > 0:
            raise ValueError(f"realtime_factor must be positive, got {realtime_factor}")
        self.api_keys = frozenset(api_keys)
        self.realtime_factor = realtime_factor
        self.faults = faults or FaultPlan()
        self.clock: Clock = clock or SystemClock()
        self.behaviour = behaviour or StreamingBehaviour()
        self.sessions: list[SessionRecord] = []
        self.http_rejections: list[tuple[int, int]] = []
        self._recognizer = recognizer
        self._next_index = 0
        self._indexes: dict[object, int] = {}
        self._opened: collections.deque[float] = collections.deque()
        self._tokens = TokenBook(lambda: self.clock.monotonic(), json_response)

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[RunningServer]:
        """Serve ``/v3/ws`` (and ``/v3/token``) until the block exits.

        Args:
            host: interface to bind.
            port: TCP port; 0 picks a free one.

        Yields:
            The running server, with its URL.
        """
        async with serve(
            self.handle, host, port, process_request=self.process_request, **server_options()
        ) as server:
            bound_host, bound_port = next(iter(server.sockets)).getsockname()[:2]
            url = f"ws://{bound_host}:{bound_port}{STREAMING_PATH}"
            yield RunningServer(url, bound_host, bound_port, server)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Route one HTTP request: upgrade ``/v3/ws``, answer ``/v3/token``, refuse the rest."""
        path = urlsplit(request.path).path
        if path == TOKEN_PATH:
            return self._issue_token(connection, request)
        if path != STREAMING_PATH:
            # v2 realtime answers 410 Gone; anything else is simply not here.
            status = http.HTTPStatus.GONE if path == _V2_PATH else http.HTTPStatus.NOT_FOUND
            return connection.respond(status, f"{status.phrase}\n")
        index = self._next_index
        self._next_index += 1
        for fault in self.faults.for_connection(index):
            if fault.kind is FaultKind.REJECT_HTTP:
                self.http_rejections.append((index, fault.code))
                status = http.HTTPStatus(fault.code)
                return connection.respond(status, f"{status.phrase}\n")
        self._indexes[connection.id] = index
        return None

    async def handle(self, connection: ServerConnection) -> None:
        """Serve one upgraded ``/v3/ws`` socket to the end."""
        index = self._indexes.pop(connection.id, None)
        if index is None:
            index = self._next_index
            self._next_index += 1
        record = SessionRecord(index=index, opened_at=self.clock.monotonic())
        self.sessions.append(record)
        request = connection.request
        assert request is not None  # the handler only runs after the handshake
        query = dict(parse_qsl(urlsplit(request.path).query, keep_blank_values=True))
        params: SessionParams | ParameterError
        try:
            params = parse_params(query)
        except ParameterError as exc:
            params = exc
        if not isinstance(params, ParameterError) and params.ignored:
            log.debug("= ignored unknown parameters %s", ", ".join(params.ignored))
        session = EmulatedSession(
            connection,
            record,
            params=params,
            admission=self._admit(request, query.get("token")),
            faults=self.faults.for_connection(index),
            behaviour=self.behaviour,
            realtime_factor=self.realtime_factor,
            clock=self.clock,
            recognizer=self._recognizer,
        )
        try:
            await session.run()
        finally:
            log.info(
                "session %s closed: audio %.1f s, billed %.1f s, close code %s",
                record.session_id or f"#{index} (no Begin)",
                record.audio_seconds,
                record.billed_seconds,
                record.close_code,
            )

    def _admit(self, request: Request, query_token: str | None) -> Admission:
        cap = self.behaviour.session_cap_s
        unauthorized = DOCUMENTED_REASONS[1008]
        credential = request.headers.get("Authorization") or query_token
        if not credential:
            return Admission(unauthorized, 1008, cap)
        token = self._tokens.redeem(credential)
        if token is not None:
            if not token.is_valid:
                return Admission("Unauthorized Connection: Invalid or expired token", 1008, cap)
            cap = min(cap, token.session_cap_s)
        elif self.api_keys and credential not in self.api_keys:
            return Admission(unauthorized, 1008, cap)
        limit = self.behaviour.max_sessions_per_minute
        if limit is not None:
            now = self.clock.monotonic()
            while self._opened and self._opened[0] <= now - 60:
                self._opened.popleft()
            if len(self._opened) >= limit:
                code = 1008 if self.behaviour.rate_limit_legacy_1008 else 3009
                return Admission(DOCUMENTED_REASONS[3009], code, cap)
            self._opened.append(now)
        return Admission(None, 1008, cap)

    def _issue_token(self, connection: ServerConnection, request: Request) -> Response:
        # GET /v3/token (docs/providers.md, "Streaming: connecting").
        key = request.headers.get("Authorization")
        if not key or (self.api_keys and key not in self.api_keys):
            return json_response(connection, 401, {"error": "Unauthorized"})
        return self._tokens.issue(connection, request)
