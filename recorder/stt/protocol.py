"""Sans-I/O AssemblyAI Universal-Streaming v3 protocol: URL, messages, close codes.

No asyncio, no websockets, no clock: feed it text frames and close codes,
collect typed events and the frames to send (modelled on websockets'
``Protocol``). The wire format is AssemblyAI's
(https://www.assemblyai.com/docs/api-reference/streaming-api/streaming-api);
what this code relies on is summarised in docs/providers.md, "Streaming: ..." sections.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from recorder.errors import ConfigError, SttProtocolError
from recorder.stt.events import (
    Closed,
    Disposition,
    Event,
    FinalTranscript,
    PartialTranscript,
    ServerError,
    SessionStarted,
    SessionTerminated,
    SpeechStarted,
    SttWord,
)

__all__ = [
    "is_rate_refusal",
    "MAX_CHUNK_MS",
    "MAX_KEYTERMS",
    "MAX_KEYTERM_CHARS",
    "MIN_CHUNK_MS",
    "SttProtocol",
    "State",
    "auth_headers",
    "build_url",
    "bytes_per_second",
    "check_keyterms",
    "classify_close",
    "parse_message",
]

logger = logging.getLogger(__name__)

# Every binary message holds 50-1000 ms of audio, else close 3007
# (docs/providers.md, "Streaming: audio").
MIN_CHUNK_MS = 50
MAX_CHUNK_MS = 1000
# At most 100 keyterms; terms over 50 characters are ignored by the server
# (docs/providers.md, "Streaming: connecting").
MAX_KEYTERMS = 100
MAX_KEYTERM_CHARS = 50

_KEY_HINT = "check ASSEMBLYAI_API_KEY (or the temporary token) and the account's balance"
_BUG_HINT = "this is a bug in recorder; please report it with the log"
# docs/providers.md, "Streaming: speech models, key check and pacing".
_TOO_FAST_HINT = (
    "audio arrived faster than the pacing rule allows; to replay with --speed N, start the "
    "emulator with 'recorder emulate --realtime-factor N' (or more), or use --speed 1"
)

_TERMINATE = json.dumps({"type": "Terminate"})
_FORCE_ENDPOINT = json.dumps({"type": "ForceEndpoint"})
_KEEPALIVE = json.dumps({"type": "KeepAlive"})


def bytes_per_second(sample_rate_hz: int, encoding: str) -> int:
    """Bytes of one second of mono audio in ``encoding``.

    Raises:
        ConfigError: for an encoding recorder does not send.
    """
    if encoding == "pcm_s16le":
        return 2 * sample_rate_hz
    if encoding == "pcm_mulaw":
        return sample_rate_hz
    raise ConfigError(f"unsupported stt audio encoding {encoding!r}; use pcm_s16le or pcm_mulaw")


def build_url(
    base_url: str,
    *,
    speech_model: str,
    sample_rate_hz: int = 16000,
    encoding: str = "pcm_s16le",
    keyterms: Iterable[str] = (),
    prompt: str | None = None,
    inactivity_timeout_s: int | None = None,
    language_detection: bool = True,
    min_turn_silence_ms: int | None = None,
    max_turn_silence_ms: int | None = None,
    token: str | None = None,
) -> str:
    """Build the ``/v3/ws`` URL with every setting in the query string.

    ``speech_model`` is always sent: the service's default has changed before
    (docs/providers.md, "Streaming: connecting").
    Lists are JSON arrays, booleans lowercase. Query parameters already in
    ``base_url`` (an emulator's knobs) are kept.

    Args:
        base_url: e.g. ``wss://streaming.assemblyai.com/v3/ws``.
        speech_model: e.g. ``u3-rt-pro``.
        sample_rate_hz: must match the audio sent.
        encoding: ``pcm_s16le`` or ``pcm_mulaw``.
        keyterms: up to 100 terms; terms over 50 characters are dropped (the
            server ignores them anyway).
        prompt: instruction-style prompt (beta).
        inactivity_timeout_s: 5-3600 seconds, or None for no timeout.
        language_detection: adds language_code to finals.
        min_turn_silence_ms: silence before the end-of-turn check (server default 100).
        max_turn_silence_ms: silence that forces the end of a turn (server default 1000).
        token: a temporary token, sent as ``?token=``.

    Returns:
        The URL to open.

    Raises:
        ConfigError: a value the server would reject.
    """
    bytes_per_second(sample_rate_hz, encoding)  # validates the encoding
    terms = check_keyterms(keyterms)
    if inactivity_timeout_s is not None and not 5 <= inactivity_timeout_s <= 3600:
        raise ConfigError(
            f"stt inactivity timeout {inactivity_timeout_s} s is out of range; use 5-3600 s"
        )
    return _encode_url(
        base_url,
        (
            ("speech_model", speech_model),
            ("sample_rate", str(sample_rate_hz)),
            ("encoding", encoding),
            ("language_detection", "true" if language_detection else "false"),
            ("keyterms_prompt", json.dumps(terms) if terms else None),
            ("prompt", prompt),
            ("inactivity_timeout", _str_or_none(inactivity_timeout_s)),
            ("min_turn_silence", _str_or_none(min_turn_silence_ms)),
            ("max_turn_silence", _str_or_none(max_turn_silence_ms)),
            ("token", token),
        ),
    )


def _str_or_none(value: int | None) -> str | None:
    return None if value is None else str(value)


# A stream is built per speaker and per reconnect with the same settings: encode once.
@functools.lru_cache(maxsize=64)
def _encode_url(base_url: str, settings: tuple[tuple[str, str | None], ...]) -> str:
    """``base_url`` with the settings that are not None in its query (replacing its own)."""
    parts = urlsplit(base_url)
    params = [(name, value) for name, value in settings if value is not None]
    ours = {name for name, _ in params}
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
    return urlunsplit(parts._replace(query=urlencode(query + params)))


def check_keyterms(keyterms: Iterable[str]) -> list[str]:
    """The keyterms to send: empty ones and those over 50 characters dropped (with a warning).

    Raises:
        ConfigError: more than 100 terms.
    """
    terms = [t for t in keyterms if t]
    if len(terms) > MAX_KEYTERMS:
        raise ConfigError(f"{len(terms)} stt keyterms given; at most {MAX_KEYTERMS} are allowed")
    long = [t for t in terms if len(t) > MAX_KEYTERM_CHARS]
    if long:
        logger.warning(
            "dropping %d stt keyterms longer than %d characters", len(long), MAX_KEYTERM_CHARS
        )
    return [t for t in terms if len(t) <= MAX_KEYTERM_CHARS]


def auth_headers(api_key: str) -> dict[str, str]:
    """Upgrade headers for an API key or temporary token: the raw value, no Bearer.

    See docs/providers.md, "Streaming: connecting".
    """
    return {"Authorization": api_key}


def is_rate_refusal(code: int | None, reason: str) -> bool:
    """Whether a close refused a new session for the account's rate (3009, or 1008 before).

    See docs/providers.md, "Streaming: close codes".
    """
    return code == 3009 or (code == 1008 and "concurrent" in reason.lower())


def classify_close(
    code: int | None, reason: str, *, terminated: bool, inactivity_timeout_set: bool
) -> tuple[Disposition, str]:
    """Decide what to do after a close, by code (docs/providers.md, "Streaming: close codes").

    Args:
        code: the close code; None or 1006 when the connection just dropped.
        reason: the close reason (only used where the code is ambiguous).
        terminated: whether ``Termination`` was received on this socket.
        inactivity_timeout_set: whether the URL set ``inactivity_timeout``.

    Returns:
        The disposition and, for FATAL, a hint for the user ("" otherwise).
    """
    if terminated:
        return Disposition.DONE, ""
    if code == 1008:
        # Before 2026-02-24 the new-session rate limit closed 1008 too.
        if "concurrent" in reason.lower():
            return Disposition.RETRY, ""
        return Disposition.FATAL, _KEY_HINT
    if code == 1009:
        return Disposition.FATAL, f"a message exceeded 128 KB; {_BUG_HINT}"
    if code == 3006:
        # Ambiguous: a bad text frame (client bug) or the inactivity timeout.
        if inactivity_timeout_set and not reason.lower().startswith("invalid"):
            return Disposition.REOPEN_ON_AUDIO, ""
        return Disposition.FATAL, f"the server rejected a control message; {_BUG_HINT}"
    if code == 3007:
        # A blind retry that resends a backlog would fail the same way.
        if "rate exceeded" in reason.lower():
            return Disposition.FATAL, _TOO_FAST_HINT
        return Disposition.FATAL, f"audio chunk size or pacing was violated; {_BUG_HINT}"
    if code == 3008:
        return Disposition.REOPEN, ""
    if code in (4001, 4002, 4003):
        # Legacy v2 codes, mapped defensively: not authorized, no funds, paid only.
        return Disposition.FATAL, _KEY_HINT
    if code in (1002, 1003, 1007):
        return Disposition.FATAL, f"the server reported a websocket protocol violation; {_BUG_HINT}"
    # 1000 without Termination, 1001, 1005, 1006, 1011, 1012-1014, 3005, 3009,
    # other 4xxx and anything unknown: transient, retry with backoff.
    return Disposition.RETRY, ""


# -- parsing ---------------------------------------------------------------


_NUMBER = (int, float)


def _get(msg: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = msg.get(name)
    # JSON gives exact types (bool is not int), so the usual case is one comparison.
    if type(value) is kind or (kind is _NUMBER and type(value) in _NUMBER):
        return value
    if (
        value is None
        or not isinstance(value, kind)
        or isinstance(value, bool) is not (kind is bool)
    ):
        raise SttProtocolError(
            f"stt message field {name!r} is missing or not a {_kind_name(kind)}", field=name
        )
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return kind.__name__ if isinstance(kind, type) else "number"


def _opt(msg: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    return None if msg.get(name) is None else _get(msg, name, kind)


def _ms(msg: Mapping[str, Any], name: str) -> int:
    value = _get(msg, name, _NUMBER)
    if type(value) is int:
        return value
    if not math.isfinite(value):
        raise SttProtocolError(f"stt message field {name!r} is not finite", field=name)
    return int(round(value))


def _number(msg: Mapping[str, Any], name: str) -> float | None:
    value = _opt(msg, name, _NUMBER)
    if value is None:
        return None
    if not math.isfinite(value):
        raise SttProtocolError(f"stt message field {name!r} is not finite", field=name)
    return float(value)


def _words(msg: Mapping[str, Any], default_final: bool) -> tuple[SttWord, ...]:
    raw = msg.get("words")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SttProtocolError("stt message field 'words' is not a list", field="words")
    words = []
    isfinite = math.isfinite
    for item in raw:
        # Every word of every partial comes here: the usual shape (integer times, a
        # finite float or no confidence) is checked inline, anything else by _word.
        if type(item) is dict:
            text, start, end = item.get("text"), item.get("start"), item.get("end")
            confidence, final = item.get("confidence"), item.get("word_is_final")
            if (
                type(text) is str
                and type(start) is int
                and type(end) is int
                and (confidence is None or type(confidence) is float and isfinite(confidence))
                and (final is None or final is True or final is False)
            ):
                words.append(
                    SttWord(text, start, end, confidence, default_final if final is None else final)
                )
                continue
        words.append(_word(item, default_final))
    return tuple(words)


def _word(item: object, default_final: bool) -> SttWord:
    if not isinstance(item, dict):
        raise SttProtocolError("stt word is not an object", field="words")
    final = _opt(item, "word_is_final", bool)
    return SttWord(
        _get(item, "text", str),
        _ms(item, "start"),
        _ms(item, "end"),
        _number(item, "confidence"),
        default_final if final is None else final,
    )


def parse_message(text: str, *, socket_index: int = 0, audio_offset_ms: int = 0) -> Event | None:
    """Parse one server text frame into an event (docs/providers.md, "Streaming: messages").

    Unknown message types and unknown fields are ignored, since the service
    adds them over time: they return None or are dropped.

    Args:
        text: the frame.
        socket_index: stamped on the event.
        audio_offset_ms: stamped on events that carry stream timestamps.

    Returns:
        The event, or None for a message type recorder does not use.

    Raises:
        SttProtocolError: bad JSON, or a known message with a missing or
            ill-typed field (``field`` names it).
    """
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SttProtocolError("stt message is not valid JSON", field=None) from exc
    if not isinstance(msg, dict):
        raise SttProtocolError("stt message is not a JSON object", field=None)
    kind = msg.get("type")
    if kind is None and "error" in msg:
        kind = "Error"  # the legacy bare {"error": "..."} form
    if kind == "Turn":
        end_of_turn = msg.get("end_of_turn")
        if end_of_turn is not True and end_of_turn is not False:
            end_of_turn = _get(msg, "end_of_turn", bool)  # raises
        turn_order = msg.get("turn_order")
        if type(turn_order) is not int:
            turn_order = _get(msg, "turn_order", int)
        transcript = msg.get("transcript")
        if type(transcript) is not str:
            transcript = _get(msg, "transcript", str)
        words = _words(msg, end_of_turn)
        speaker = msg.get("speaker_label")
        if speaker is not None and type(speaker) is not str:
            speaker = _get(msg, "speaker_label", str)
        if not end_of_turn:
            return PartialTranscript(
                turn_order, transcript, words, speaker, socket_index, audio_offset_ms
            )
        formatted = _opt(msg, "turn_is_formatted", bool)
        return FinalTranscript(
            turn_order=turn_order,
            transcript=transcript,
            words=words,
            end_of_turn_confidence=_number(msg, "end_of_turn_confidence"),
            language_code=_opt(msg, "language_code", str),
            language_confidence=_number(msg, "language_confidence"),
            is_formatted=True if formatted is None else formatted,
            speaker_label=speaker,
            socket_index=socket_index,
            audio_offset_ms=audio_offset_ms,
        )
    if kind == "SpeechStarted":
        return SpeechStarted(
            _ms(msg, "timestamp"), _number(msg, "confidence"), socket_index, audio_offset_ms
        )
    if kind == "Begin":
        config = msg.get("configuration")
        model = config.get("model") if isinstance(config, dict) else None
        return SessionStarted(
            id=_get(msg, "id", str),
            expires_at=_ms(msg, "expires_at"),
            model=model if isinstance(model, str) else None,
            socket_index=socket_index,
        )
    if kind == "Termination":
        return SessionTerminated(
            audio_duration_s=_number(msg, "audio_duration_seconds") or 0.0,
            session_duration_s=_number(msg, "session_duration_seconds") or 0.0,
            socket_index=socket_index,
        )
    if kind == "Error":
        code = _opt(msg, "error_code", int)
        message = msg.get("error")
        return ServerError(
            message if isinstance(message, str) else json.dumps(message), code, socket_index
        )
    if not isinstance(kind, str):
        raise SttProtocolError("stt message has no string 'type'", field="type")
    return None  # Warning, Heartbeat, SpeakerRevision, LLMGatewayResponse, later types


# -- the state machine -----------------------------------------------------


class State(enum.Enum):
    """Lifecycle of one socket."""

    CONNECTING = "connecting"
    """Upgraded (or upgrading); waiting for ``Begin``."""
    OPEN = "open"
    """``Begin`` received; audio and control messages flow."""
    TERMINATING = "terminating"
    """``Terminate`` sent; waiting for the last finals and ``Termination``."""
    CLOSED = "closed"
    """The socket closed."""


class SttProtocol:
    """One socket's protocol state: frames in, events and frames out.

    Args:
        sample_rate_hz: of the audio sent (for chunk-size checks and accounting).
        encoding: ``pcm_s16le`` or ``pcm_mulaw``.
        inactivity_timeout_set: whether the URL set ``inactivity_timeout``
            (needed to classify a 3006 close).
        socket_index: stamped on every event.
        audio_offset_ms: caller audio position of this socket's offset 0,
            stamped on events with stream timestamps.
    """

    def __init__(
        self,
        *,
        sample_rate_hz: int = 16000,
        encoding: str = "pcm_s16le",
        inactivity_timeout_set: bool = False,
        socket_index: int = 0,
        audio_offset_ms: int = 0,
    ) -> None:
        self.state = State.CONNECTING
        self.socket_index = socket_index
        self.audio_offset_ms = audio_offset_ms
        self.session_id: str | None = None
        self.is_terminated = False
        """Whether ``Termination`` arrived."""
        self.audio_bytes_sent = 0
        self.bytes_per_second = bytes_per_second(sample_rate_hz, encoding)
        self._min_chunk = self.bytes_per_second * MIN_CHUNK_MS // 1000
        self._max_chunk = self.bytes_per_second * MAX_CHUNK_MS // 1000
        self._inactivity_timeout_set = inactivity_timeout_set
        self._events: list[Event] = []
        self._out: list[str | bytes] = []
        self.malformed_count = 0

    @property
    def audio_seconds_sent(self) -> float:
        """Seconds of audio sent on this socket."""
        return self.audio_bytes_sent / self.bytes_per_second

    # sending

    def _check_can_send(self) -> None:
        if self.state is not State.OPEN:
            raise RuntimeError(f"cannot send on an stt socket in state {self.state.value}")

    def send_audio(self, pcm: bytes) -> None:
        """Queue one binary audio frame of 50-1000 ms.

        Raises:
            RuntimeError: not OPEN.
            ValueError: the chunk is outside 50-1000 ms (the server would close 3007).
        """
        self._check_can_send()
        if not self._min_chunk <= len(pcm) <= self._max_chunk:
            raise ValueError(
                f"audio chunk of {len(pcm)} bytes is outside {MIN_CHUNK_MS}-{MAX_CHUNK_MS} ms"
            )
        self.audio_bytes_sent += len(pcm)
        self._out.append(pcm)

    def audio_written(self, size: int) -> None:
        """Count one audio frame of ``size`` bytes the caller writes itself (as :meth:`send_audio`).

        The hot path's :meth:`send_audio` without the frame queued for :meth:`data_to_send`.

        Raises:
            RuntimeError: not OPEN.
            ValueError: the chunk is outside 50-1000 ms (the server would close 3007).
        """
        if self.state is not State.OPEN:
            self._check_can_send()
        if not self._min_chunk <= size <= self._max_chunk:
            raise ValueError(
                f"audio chunk of {size} bytes is outside {MIN_CHUNK_MS}-{MAX_CHUNK_MS} ms"
            )
        self.audio_bytes_sent += size

    def send_force_endpoint(self) -> None:
        """Queue ``ForceEndpoint``: end the current turn now."""
        self._check_can_send()
        self._out.append(_FORCE_ENDPOINT)

    def send_update_configuration(self, **fields: Any) -> None:
        """Queue ``UpdateConfiguration`` with wire-named fields, e.g. ``keyterms_prompt=[]``.

        Fields set to None are left out (include only what changes).
        """
        self._check_can_send()
        message = {"type": "UpdateConfiguration"}
        message.update({k: v for k, v in fields.items() if v is not None})
        self._out.append(json.dumps(message))

    def send_keepalive(self) -> None:
        """Queue ``KeepAlive``: resets the inactivity timer."""
        self._check_can_send()
        self._out.append(_KEEPALIVE)

    def send_terminate(self) -> None:
        """Queue ``Terminate``: the server flushes, sends ``Termination``, closes."""
        self._check_can_send()
        self._out.append(_TERMINATE)
        self.state = State.TERMINATING

    # receiving

    def receive_text(self, text: str) -> None:
        """Feed one server text frame. Malformed frames are logged and skipped, never fatal."""
        try:
            event = parse_message(
                text, socket_index=self.socket_index, audio_offset_ms=self.audio_offset_ms
            )
        except SttProtocolError as exc:
            self.malformed_count += 1
            if self.malformed_count == 1:
                logger.warning(
                    "! skipping malformed stt message on socket %d: %s", self.socket_index, exc
                )
            return
        if event is None:
            return
        if isinstance(event, SessionStarted):
            if self.state is not State.CONNECTING:
                logger.warning("! ignoring a second begin on socket %d", self.socket_index)
                return
            self.session_id = event.id
            self.state = State.OPEN
        elif isinstance(event, SessionTerminated):
            self.is_terminated = True
        self._events.append(event)

    def receive_close(self, code: int | None, reason: str) -> None:
        """Feed the end of the connection (code None or 1006 when it just dropped)."""
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        disposition, hint = classify_close(
            code,
            reason,
            terminated=self.is_terminated,
            inactivity_timeout_set=self._inactivity_timeout_set,
        )
        self._events.append(Closed(code, reason, disposition, hint, self.socket_index))

    # draining

    def events_received(self) -> list[Event]:
        """Return and clear the events parsed since the last call."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[str | bytes]:
        """Return and clear the frames to write: ``bytes`` binary, ``str`` text."""
        out, self._out = self._out, []
        return out
