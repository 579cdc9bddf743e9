"""A local AssemblyAI Voice Agent server for tests, demos and benchmarks.

It speaks the protocol of docs/providers.md, "Voice Agent: protocol" (public reference:
https://www.assemblyai.com/docs/api-reference/voice-agent-api/voice-agent-web-socket) at
``/v1/ws`` (and issues temporary tokens at ``/v1/token``) on loopback. Its
"LLM" is extractive and its "TTS" is the synthetic speech codec at 24 kHz
(:mod:`recorder.emulator.agent.voice`), so what a client plays can be decoded
and compared with ``transcript.agent``. Switches are in
:class:`~recorder.emulator.agent.config.AgentBehaviour`, failures in
:class:`~recorder.emulator.agent.config.AgentFaults`; every socket leaves an
:class:`~recorder.emulator.agent.records.AgentSessionRecord` in
:attr:`VoiceAgentEmulator.sessions`.

What the real service does that is deliberately not modelled, and why:

* User turns are detected from decoded tone-code words, not from energy:
  ``input.speech.started`` comes when the first word has decoded (a burst later
  than a real VAD), a ``transcript.user.delta`` per word, and the turn ends
  after ``min_silence`` ms of silence; ``max_silence`` and the semantic
  end-of-turn model are not modelled (the codec's sentence gap is 1.2 s).
* Back-channels are recognised by word (``uh-huh``, ``okay``...) once a word
  has decoded, not by semantics.
* Tools: the recorder defines none; every ``tool.result`` is ``invalid_format``
  (unknown ``call_id``) and no ``tool.call`` is ever made.
* Resume: ``session.resume`` always fails with ``session_not_found`` and
  close 1008, the behaviour a Sept 2026 field report saw; no
  state is kept after a drop, because the recorder never resumes (a dropped
  recap is reported, and a new recap opens a new session).
* Golden replay: no recording of real Voice Agent traffic exists here; the
  greeting-only sequence is checked against the documented event order instead.

Choices where the documentation is silent (the real behaviour is unknown): ``session.end``
during a reply first interrupts it (``reply.done`` interrupted and the trimmed
``transcript.agent``), then sends ``session.ended``; a message other than
``session.update`` before ``session.ready`` is ``invalid_format``; the
``agent_timeout`` close code is 1011; ``max_prompt_chars`` (off by default)
refuses a longer ``system_prompt`` with ``invalid_value``.
"""

from __future__ import annotations

import contextlib
import http
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from recorder.emulator.agent.config import AgentBehaviour, AgentFaults
from recorder.emulator.agent.records import AgentSessionRecord
from recorder.emulator.agent.session import AgentConnection, Answer, ReplyText, echo_answer
from recorder.emulator.agent.voice import extractive_reply
from recorder.emulator.serving import json_response, server_options
from recorder.emulator.tokens import TokenBook

__all__ = ["AGENT_PATH", "AGENT_TOKEN_PATH", "RunningAgentServer", "VoiceAgentEmulator"]

AGENT_PATH = "/v1/ws"
AGENT_TOKEN_PATH = "/v1/token"

log = logging.getLogger("recorder.emulator")


@dataclass(frozen=True, slots=True)
class RunningAgentServer:
    """A serving Voice Agent emulator.

    Attributes:
        url: the socket URL, ``ws://HOST:PORT/v1/ws``.
        token_url: the token endpoint, ``http://HOST:PORT/v1/token``.
        host: the bound host.
        port: the bound port.
        server: the underlying websockets server.
    """

    url: str
    token_url: str
    host: str
    port: int
    server: Server


class VoiceAgentEmulator:
    """The emulated Voice Agent service; one instance may serve many sockets.

    Args:
        api_keys: keys accepted after ``Bearer``; empty means any non-empty key.
        realtime_factor: reply audio goes out this many times faster than real
            time (1.0 is real time; ``inf`` sends it all at once).
        behaviour: switches for behaviours the documentation leaves open.
        faults: failures injected on every connection; may be replaced between
            connections.
        reply_text: the "LLM": builds a reply's text from the system prompt and
            the ``reply.create`` instructions (default: extractive recap).
        answer: the "LLM" for user turns: builds the answer from the system prompt
            and the user's words (default: ``You said: <words>``).
    """

    def __init__(
        self,
        *,
        api_keys: Iterable[str] = frozenset(),
        realtime_factor: float = 1.0,
        behaviour: AgentBehaviour | None = None,
        faults: AgentFaults | None = None,
        reply_text: ReplyText = extractive_reply,
        answer: Answer = echo_answer,
    ) -> None:
        if not realtime_factor > 0 or math.isnan(realtime_factor):
            raise ValueError(f"realtime_factor must be positive, got {realtime_factor}")
        self.api_keys = frozenset(api_keys)
        self.realtime_factor = realtime_factor
        self.behaviour = behaviour or AgentBehaviour()
        self.faults = faults or AgentFaults()
        self.reply_text = reply_text
        self.answer = answer
        self.sessions: list[AgentSessionRecord] = []
        self._tokens = TokenBook(time.monotonic, json_response)

    @property
    def paths(self) -> frozenset[str]:
        """Request paths this emulator answers (for the shared server's routing)."""
        return frozenset({AGENT_PATH, AGENT_TOKEN_PATH})

    @contextlib.asynccontextmanager
    async def serve(
        self, host: str = "127.0.0.1", port: int = 0
    ) -> AsyncIterator[RunningAgentServer]:
        """Serve ``/v1/ws`` and ``/v1/token`` until the block exits.

        Args:
            host: interface to bind.
            port: TCP port; 0 picks a free one.

        Yields:
            The running server, with its URLs.
        """
        async with serve(
            self.handle,
            host,
            port,
            process_request=self.process_request,
            **server_options(),
        ) as server:
            bound_host, bound_port = next(iter(server.sockets)).getsockname()[:2]
            base = f"{bound_host}:{bound_port}"
            yield RunningAgentServer(
                f"ws://{base}{AGENT_PATH}",
                f"http://{base}{AGENT_TOKEN_PATH}",
                bound_host,
                bound_port,
                server,
            )

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Route one HTTP request: upgrade ``/v1/ws``, answer ``/v1/token``, refuse the rest.

        A shared server may call this for the paths it routes here.
        """
        path = urlsplit(request.path).path
        if path == AGENT_TOKEN_PATH:
            return self._issue_token(connection, request)
        if path != AGENT_PATH:
            status = http.HTTPStatus.NOT_FOUND
            return connection.respond(status, f"{status.phrase}\n")
        return None

    async def handle(self, connection: ServerConnection) -> None:
        """Serve one upgraded ``/v1/ws`` socket to the end."""
        record = AgentSessionRecord(index=len(self.sessions))
        self.sessions.append(record)
        request = connection.request
        assert request is not None  # the handler only runs after the handshake
        refusal, cap_s = self._admit(request)
        session = AgentConnection(
            connection,
            record,
            refusal=refusal,
            behaviour=self.behaviour,
            faults=self.faults,
            realtime_factor=self.realtime_factor,
            session_cap_s=cap_s,
            reply_text=self.reply_text,
            answer=self.answer,
        )
        try:
            await session.run()
        finally:
            log.info(
                "voice agent session %s closed: %d replies, close code %s",
                record.session_id or f"#{record.index} (never ready)",
                len(record.replies),
                record.close_code,
            )

    def _admit(self, request: Request) -> tuple[tuple[str, str] | None, float]:
        # A Bearer key on the upgrade, or ?token= without one (docs/providers.md,
        # "Voice Agent: protocol").
        cap = self.behaviour.session_cap_s
        unauthorized = ("UNAUTHORIZED", "Invalid or missing credentials")
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, key = header.partition(" ")
            if scheme != "Bearer":
                key = header if self.behaviour.accept_raw_key else ""
            if not key.strip() or (self.api_keys and key not in self.api_keys):
                return unauthorized, cap
            return None, cap
        query = dict(parse_qsl(urlsplit(request.path).query))
        token = self._tokens.redeem(query.get("token", ""))
        if token is None:
            return unauthorized, cap
        if not token.is_valid:
            return ("UNAUTHORIZED", "Token is expired or was already used"), cap
        return None, min(cap, token.session_cap_s)

    def _issue_token(self, connection: ServerConnection, request: Request) -> Response:
        # GET /v1/token: Bearer or raw key both accepted (the documentation shows both).
        header = request.headers.get("Authorization") or ""
        scheme, _, rest = header.partition(" ")
        key = rest if scheme == "Bearer" else header
        if not key or (self.api_keys and key not in self.api_keys):
            return json_response(connection, 401, {"error": "Unauthorized"})
        return self._tokens.issue(connection, request)


# websockets logs every handshake header at DEBUG; keys must never reach a log.
