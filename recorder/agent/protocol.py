"""The Voice Agent wire protocol without I/O: commands out, typed events in, close codes sorted.

:class:`AgentProtocol` follows websockets' sans-I/O contract: ``send_*`` queue
JSON text frames that :meth:`~AgentProtocol.data_to_send` hands to the caller,
``receive_*`` feed what the socket delivered, and
:meth:`~AgentProtocol.events_received` drains the parsed events. No asyncio,
sockets or clocks here. The events and their order are documented at
https://www.assemblyai.com/docs/voice-agents/voice-agent-api/events-reference
and https://www.assemblyai.com/docs/voice-agents/voice-agent-api/message-sequence;
what this client relies on beyond them (error codes and what to do about
them, close codes, undocumented events) is in docs/providers.md,
"Voice Agent: protocol".
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from recorder.errors import AgentProtocolError

__all__ = [
    "Action",
    "AgentProtocol",
    "AgentTranscript",
    "Closed",
    "Event",
    "ReplyAudio",
    "ReplyDone",
    "ReplyError",
    "ReplyStarted",
    "SessionConfig",
    "SessionEnded",
    "SessionError",
    "SessionReady",
    "SessionUpdated",
    "SpeechStarted",
    "SpeechStopped",
    "State",
    "ToolCall",
    "UserTranscript",
    "UserTranscriptDelta",
    "close_action",
    "error_action",
    "parse_event",
]

log = logging.getLogger("recorder.agent")


class State(enum.Enum):
    """Where a session is in its life."""

    OPENING = "opening"
    """``session.update`` sent (or about to be); waiting for ``session.ready``."""
    READY = "ready"
    """``session.ready`` received."""
    ENDING = "ending"
    """``session.end`` sent; waiting for ``session.ended``."""
    CLOSED = "closed"
    """The socket closed."""


class Action(enum.Enum):
    """What the client should do about an error code or a close."""

    DONE = "done"
    """A clean end: ``session.ended`` then close 1000."""
    LOG = "log"
    """A client bug the server tolerated; the socket stays open."""
    RETRY = "retry"
    """Transient: try again later with backoff."""
    NEW_SESSION = "new_session"
    """This session is gone (expired, not resumable); a fresh one may work."""
    FATAL = "fatal"
    """Retrying cannot help: bad credential, permission or configuration."""


# Codes are compared case-insensitively: the service's documents spell them both
# upper- and lower-case (docs/providers.md, "Voice Agent: protocol").
_ERROR_ACTIONS: dict[str, Action] = {
    "unauthorized": Action.FATAL,
    "forbidden": Action.FATAL,
    "internal_error": Action.RETRY,
    "server_error": Action.RETRY,
    "session_not_found": Action.NEW_SESSION,
    "session_forbidden": Action.FATAL,
    "session_expired": Action.NEW_SESSION,
    "agent_init_failed": Action.RETRY,
    "agent_timeout": Action.RETRY,
    "agent_not_found": Action.FATAL,
    "agent_id_not_first": Action.FATAL,
    "invalid_format": Action.LOG,
    "invalid_audio": Action.LOG,
    # The socket stays open, but the session config is wrong: fix it.
    "invalid_value": Action.FATAL,
    "invalid_config": Action.FATAL,
    # The change is ignored and the session carries on.
    "immutable_field": Action.LOG,
    "at_capacity": Action.RETRY,
    "concurrency_exceeded": Action.RETRY,
    "audio_rate_violation": Action.LOG,
    "invalid_webhook": Action.FATAL,
}


def error_action(code: str) -> Action:
    """What to do about a ``session.error`` code; unknown codes are fatal.

    Args:
        code: the error's ``code``, in any case.
    """
    return _ERROR_ACTIONS.get(code.lower(), Action.FATAL)


def close_action(code: int | None, *, is_ended: bool) -> Action:
    """What to do about a socket close.

    Args:
        code: the close code (None or 1006 when the connection dropped).
        is_ended: whether ``session.ended`` arrived before the close.
    """
    if is_ended and code in (1000, 1008):
        # 1008 after session.ended is the session-duration cap (docs/providers.md,
        # "Voice Agent: protocol").
        return Action.DONE if code == 1000 else Action.NEW_SESSION
    if code == 1008:
        return Action.FATAL
    # 1011, 1006, or a close without session.ended: a drop.
    return Action.RETRY


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionReady:
    """``session.ready``: the session is configured and live."""

    session_id: str


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """``session.updated``: a later ``session.update`` was applied."""


@dataclass(frozen=True, slots=True)
class SessionError:
    """``session.error`` (or the pre-GA ``error``).

    Attributes:
        code: the error code as sent.
        message: the server's text.
        param: the offending field, for some validation errors.
    """

    code: str
    message: str
    param: str | None = None

    @property
    def action(self) -> Action:
        """What to do about it."""
        return error_action(self.code)


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """``session.ended``: the last event of a clean teardown."""

    session_duration_s: float | None = None
    audio_duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """``input.speech.started``: the user began speaking."""


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """``input.speech.stopped``: the user stopped speaking."""


@dataclass(frozen=True, slots=True)
class UserTranscriptDelta:
    """``transcript.user.delta``: the whole utterance so far (replace, don't append)."""

    text: str


@dataclass(frozen=True, slots=True)
class UserTranscript:
    """``transcript.user``: the final text of a user turn."""

    text: str
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    """``reply.started``: the agent began a reply."""

    reply_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReplyAudio:
    """``reply.audio``: one chunk of agent speech, decoded from base64 ``data``."""

    audio: bytes = field(repr=False)
    reply_id: str | None = None


@dataclass(frozen=True, slots=True)
class AgentTranscript:
    """``transcript.agent``: what the agent said (trimmed to what was heard if interrupted)."""

    text: str
    is_interrupted: bool = False
    reply_id: str | None = None
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReplyDone:
    """``reply.done``: the reply finished; a missing status means ``completed``."""

    status: str = "completed"
    reply_id: str | None = None

    @property
    def is_interrupted(self) -> bool:
        """Whether the reply was cut short (barge-in or cancel)."""
        return self.status in ("interrupted", "cancelled")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """``tool.call``: the agent wants a client tool run (``arguments`` is an object)."""

    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReplyError:
    """``reply.error`` (undocumented, but sent): the reply failed upstream."""

    code: str
    message: str
    reply_id: str | None = None


@dataclass(frozen=True, slots=True)
class Closed:
    """The socket closed (produced by :meth:`AgentProtocol.receive_close`).

    Attributes:
        code: the close code, None if none was received (a drop).
        reason: the close reason.
        action: what to do about it.
    """

    code: int | None
    reason: str
    action: Action


Event = (
    SessionReady
    | SessionUpdated
    | SessionError
    | SessionEnded
    | SpeechStarted
    | SpeechStopped
    | UserTranscriptDelta
    | UserTranscript
    | ReplyStarted
    | ReplyAudio
    | AgentTranscript
    | ReplyDone
    | ToolCall
    | ReplyError
    | Closed
)


# --- parsing -------------------------------------------------------------------------------


def _str(message: dict[str, Any], name: str, *, default: str | None = None) -> str:
    value = message.get(name, default)
    if not isinstance(value, str):
        kind = message.get("type")
        raise AgentProtocolError(
            f"the voice agent sent {kind} with a bad '{name}': {value!r}", field=name
        )
    return value


def _optional_str(message: dict[str, Any], name: str) -> str | None:
    value = message.get(name)
    return value if isinstance(value, str) else None


def _optional_float(message: dict[str, Any], name: str) -> float | None:
    value = message.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _audio(message: dict[str, Any]) -> bytes:
    data = _str(message, "data")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AgentProtocolError(
            "the voice agent sent reply.audio whose 'data' is not base64", field="data"
        ) from exc


def _error(message: dict[str, Any]) -> SessionError:
    # The pre-GA API nested the error; take either shape.
    body = message.get("error")
    source = body if isinstance(body, dict) else message
    code = source.get("code")
    text = source.get("message")
    return SessionError(
        code if isinstance(code, str) else "unknown",
        text if isinstance(text, str) else "",
        _optional_str(source, "param"),
    )


def parse_event(text: str | bytes) -> Event | None:
    """Parse one server frame into an event.

    Args:
        text: the frame as received.

    Returns:
        The event, or None for an event type this client does not know (ignored:
        the service adds events and fields without notice).

    Raises:
        AgentProtocolError: the frame is not a JSON object with a string ``type``,
            or a field this client relies on is missing or malformed.
    """
    try:
        message = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise AgentProtocolError("the voice agent sent a frame that is not JSON") from exc
    if not isinstance(message, dict):
        raise AgentProtocolError("the voice agent sent JSON that is not an object")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise AgentProtocolError("the voice agent sent a message without a 'type'", field="type")
    if kind == "reply.audio":
        return ReplyAudio(_audio(message), _optional_str(message, "reply_id"))
    if kind == "session.ready":
        return SessionReady(_str(message, "session_id"))
    if kind == "session.updated":
        return SessionUpdated()
    if kind in ("session.error", "error"):
        return _error(message)
    if kind == "session.ended":
        return SessionEnded(
            _optional_float(message, "session_duration_seconds"),
            _optional_float(message, "audio_duration_seconds"),
        )
    if kind == "input.speech.started":
        return SpeechStarted()
    if kind == "input.speech.stopped":
        return SpeechStopped()
    if kind == "transcript.user.delta":
        return UserTranscriptDelta(_str(message, "text"))
    if kind == "transcript.user":
        return UserTranscript(_str(message, "text"), _optional_str(message, "item_id"))
    if kind == "reply.started":
        return ReplyStarted(_optional_str(message, "reply_id"))
    if kind == "transcript.agent":
        return AgentTranscript(
            _str(message, "text"),
            message.get("interrupted") is True,
            _optional_str(message, "reply_id"),
            _optional_str(message, "item_id"),
        )
    if kind == "reply.done":
        # A missing or odd status reads as completed.
        status = message.get("status")
        return ReplyDone(
            status if isinstance(status, str) else "completed", _optional_str(message, "reply_id")
        )
    if kind == "tool.call":
        arguments = message.get("arguments", {})
        if not isinstance(arguments, dict):
            raise AgentProtocolError(
                "the voice agent sent tool.call whose 'arguments' is not an object",
                field="arguments",
            )
        return ToolCall(_str(message, "call_id"), _str(message, "name"), arguments)
    if kind == "reply.error":
        code = message.get("code")
        return ReplyError(
            code if isinstance(code, str) else "unknown",
            _optional_str(message, "message") or "",
            _optional_str(message, "reply_id"),
        )
    return None


# --- commands ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """The inline session configuration sent in the first ``session.update``.

    None leaves a field to the server's default and out of the message.

    Attributes:
        system_prompt: persona and instructions for the LLM (mutable later).
        greeting: words spoken verbatim right after ``session.ready`` (immutable).
        voice: ``output.voice`` (immutable; unknown ids are rejected).
        output_encoding: ``output.format.encoding`` (immutable).
        volume: ``output.volume``, 0-100.
        keyterms: ``input.keyterms``, at most 100.
        interrupt_response: whether user speech may interrupt the agent.
    """

    system_prompt: str | None = None
    greeting: str | None = None
    voice: str | None = None
    output_encoding: str | None = "audio/pcm"
    volume: float | None = None
    keyterms: tuple[str, ...] = ()
    interrupt_response: bool | None = None

    def to_message(self) -> dict[str, Any]:
        """The ``session.update`` message for this configuration."""
        session: dict[str, Any] = {}
        if self.system_prompt is not None:
            session["system_prompt"] = self.system_prompt
        if self.greeting is not None:
            session["greeting"] = self.greeting
        output: dict[str, Any] = {}
        if self.voice is not None:
            output["voice"] = self.voice
        if self.output_encoding is not None:
            output["format"] = {"encoding": self.output_encoding}
        if self.volume is not None:
            output["volume"] = self.volume
        if output:
            session["output"] = output
        inputs: dict[str, Any] = {}
        if self.keyterms:
            inputs["keyterms"] = list(self.keyterms[:100])
        if self.interrupt_response is not None:
            inputs["turn_detection"] = {"interrupt_response": self.interrupt_response}
        if inputs:
            session["input"] = inputs
        return {"type": "session.update", "session": session}


class AgentProtocol:
    """One Voice Agent session's protocol state, without I/O.

    Frames are parsed as they are received; a frame that cannot be parsed is
    logged and skipped (counted in :attr:`parse_errors`) rather than ending
    the session, and unknown event types are ignored.
    """

    def __init__(self) -> None:
        self.state = State.OPENING
        self.session_id: str | None = None
        self.is_ended = False
        self.parse_errors = 0
        self.close_code: int | None = None
        self._events: list[Event] = []
        self._outgoing: list[str] = []

    # Commands.

    def send_session_update(self, config: SessionConfig) -> None:
        """Queue ``session.update``; the first one must be the first frame."""
        self._queue(config.to_message())

    def send_reply_create(self, instructions: str | None = None) -> None:
        """Queue ``reply.create``, with one-shot ``instructions`` if given."""
        message: dict[str, Any] = {"type": "reply.create"}
        if instructions is not None:
            message["instructions"] = instructions
        self._queue(message)

    def send_input_audio(self, pcm: bytes) -> None:
        """Queue ``input.audio``: note the field is ``audio`` here."""
        self._queue({"type": "input.audio", "audio": base64.b64encode(pcm).decode("ascii")})

    def send_session_end(self) -> None:
        """Queue ``session.end``: ends the session and its billing."""
        if self.state in (State.OPENING, State.READY):
            self.state = State.ENDING
        self._queue({"type": "session.end"})

    def data_to_send(self) -> list[str]:
        """Drain the text frames queued for the socket."""
        frames, self._outgoing = self._outgoing, []
        return frames

    # Input.

    def receive_text(self, text: str) -> None:
        """Feed one text frame from the server."""
        try:
            event = parse_event(text)
        except AgentProtocolError as exc:
            self.parse_errors += 1
            log.warning("! skipped a voice agent frame: %s", exc)
            return
        if event is None:
            return
        if isinstance(event, SessionReady):
            self.session_id = event.session_id
            if self.state is State.OPENING:
                self.state = State.READY
        elif isinstance(event, SessionEnded):
            self.is_ended = True
        self._events.append(event)

    def receive_bytes(self, data: bytes) -> None:
        """Feed one binary frame; the API sends none, so it is skipped."""
        self.parse_errors += 1
        log.warning("! skipped a binary voice agent frame of %d bytes", len(data))

    def receive_close(self, code: int | None, reason: str = "") -> None:
        """Record that the socket closed; queues a :class:`Closed` event."""
        self.state = State.CLOSED
        self.close_code = code
        self._events.append(Closed(code, reason, close_action(code, is_ended=self.is_ended)))

    def events_received(self) -> list[Event]:
        """Drain the events parsed so far, in arrival order."""
        events, self._events = self._events, []
        return events

    def _queue(self, message: dict[str, Any]) -> None:
        self._outgoing.append(json.dumps(message, ensure_ascii=False))
