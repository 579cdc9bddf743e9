"""Typed events of the streaming STT client, as small frozen dataclasses.

Protocol events (``SessionStarted`` … ``Closed``) are named for the server
message that produced them (docs/providers.md, "Streaming: messages"); stream
events (``SocketOpened``, ``SocketClosed``, ``AudioDropped``) describe the
sockets the :class:`~recorder.stt.stream.SttStream` opened and the audio it held.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "AudioDropped",
    "Closed",
    "Disposition",
    "Event",
    "FinalTranscript",
    "PartialTranscript",
    "SocketClosed",
    "SocketOpened",
    "ServerError",
    "SessionStarted",
    "SessionTerminated",
    "SpeechStarted",
    "SttWord",
]


class Disposition(enum.Enum):
    """What the client should do after a socket closed.

    See docs/providers.md, "Streaming: close codes".
    """

    DONE = "done"
    """The session ended normally (``Termination`` was received)."""
    RETRY = "retry"
    """Transient failure: reconnect with backoff and resend unfinalised audio."""
    REOPEN = "reopen"
    """The session hit its duration cap (3008): open a new one at once."""
    REOPEN_ON_AUDIO = "reopen_on_audio"
    """The inactivity timeout closed it: reopen when audio flows again."""
    FATAL = "fatal"
    """Retrying cannot help (bad key, client bug); stop and tell the user."""


@dataclass(frozen=True, slots=True)
class SttWord:
    """One word of a turn; times are ms from the first audio byte of its socket."""

    text: str
    start_ms: int
    end_ms: int
    confidence: float | None
    word_is_final: bool


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """``Begin``: the server accepted the socket.

    Attributes:
        id: the provider's session id (store as the stream session id).
        expires_at: Unix seconds at which the server will close it with 3008.
        model: the model the server says it applied, when it says so (later servers).
        socket_index: which socket of the :class:`SttStream` this is.
    """

    id: str
    expires_at: int
    model: str | None = None
    socket_index: int = 0


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """``SpeechStarted``: a turn began at ``timestamp_ms`` on this socket.

    ``audio_offset_ms`` is the caller audio position of this socket's offset 0,
    so the caller position of the onset is ``audio_offset_ms + timestamp_ms``.
    """

    timestamp_ms: int
    confidence: float | None
    socket_index: int = 0
    audio_offset_ms: int = 0


@dataclass(frozen=True, slots=True)
class PartialTranscript:
    """A ``Turn`` with ``end_of_turn=false``: the whole turn so far; replace, never append."""

    turn_order: int
    transcript: str
    words: tuple[SttWord, ...]
    speaker_label: str | None = None
    socket_index: int = 0
    audio_offset_ms: int = 0


@dataclass(frozen=True, slots=True)
class FinalTranscript:
    """A ``Turn`` with ``end_of_turn=true``.

    On u3-rt-pro there is one formatted final per turn; Universal-Streaming
    with formatting sends an unformatted final and then a formatted one with
    the same ``turn_order``: both are handed on, the later one wins (upsert).

    Attributes:
        turn_order: 0-based turn number on this socket.
        transcript: the turn's text.
        words: the words, times relative to this socket's offset 0.
        end_of_turn_confidence: the server's confidence, if sent.
        language_code: detected language (only with ``language_detection``).
        language_confidence: confidence of ``language_code``.
        is_formatted: ``turn_is_formatted`` (punctuated and cased).
        speaker_label: with ``speaker_labels`` only.
        socket_index: which socket of the session produced it.
        audio_offset_ms: caller audio position (ms given to ``send()``) of
            this socket's offset 0.
    """

    turn_order: int
    transcript: str
    words: tuple[SttWord, ...]
    end_of_turn_confidence: float | None
    language_code: str | None
    language_confidence: float | None
    is_formatted: bool
    speaker_label: str | None = None
    socket_index: int = 0
    audio_offset_ms: int = 0

    @property
    def start_ms(self) -> int | None:
        """Caller audio position of the first word, or None without words."""
        return self.audio_offset_ms + self.words[0].start_ms if self.words else None

    @property
    def end_ms(self) -> int | None:
        """Caller audio position of the end of the last word, or None without words."""
        return self.audio_offset_ms + self.words[-1].end_ms if self.words else None


@dataclass(frozen=True, slots=True)
class SessionTerminated:
    """``Termination``: the server flushed every turn and will close.

    ``session_duration_s`` is the billed figure.
    """

    audio_duration_s: float
    session_duration_s: float
    socket_index: int = 0


@dataclass(frozen=True, slots=True)
class ServerError:
    """``Error`` frame (or the legacy bare ``{"error": ...}``) sent before an error close."""

    message: str
    code: int | None = None
    socket_index: int = 0


@dataclass(frozen=True, slots=True)
class Closed:
    """The socket closed; ``disposition`` says what to do next.

    ``code`` is None when no close code is known; ``hint`` says what the user
    should do when the disposition is FATAL.
    """

    code: int | None
    reason: str
    disposition: Disposition
    hint: str = ""
    socket_index: int = 0


@dataclass(frozen=True, slots=True)
class SocketOpened:
    """The session opened socket ``socket_index`` and the server sent ``Begin``.

    Attributes:
        socket_index: 0 for the first socket, +1 per (re)connection.
        provider_id: ``Begin.id``.
        audio_offset_ms: caller audio position of this socket's offset 0;
            earlier than the previous socket's end when audio is resent.
        expires_at: Unix seconds at which the server caps the session.
    """

    socket_index: int
    provider_id: str
    audio_offset_ms: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class SocketClosed:
    """Socket ``socket_index`` closed (the stream session / cost record ends).

    Attributes:
        socket_index: as in :class:`SocketOpened`.
        audio_seconds: audio sent on this socket.
        open_seconds: wall-clock seconds from upgrade to close (billing).
        close_code: the close code (1006 for a drop), None if never known.
        reason: the close reason text.
        billed_seconds: ``Termination.session_duration_seconds`` when received.
    """

    socket_index: int
    audio_seconds: float
    open_seconds: float
    close_code: int | None
    reason: str
    billed_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class AudioDropped:
    """Unsent audio was discarded: more than ``backlog_max_s`` waited for a socket.

    Counted and logged by the pipeline, never silent.
    """

    audio_offset_ms: int
    duration_ms: int


Event = (
    SessionStarted
    | SpeechStarted
    | PartialTranscript
    | FinalTranscript
    | SessionTerminated
    | ServerError
    | Closed
    | SocketOpened
    | SocketClosed
    | AudioDropped
)
