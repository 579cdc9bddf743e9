"""What a streaming STT stream is told, as small frozen values validated on construction.

:class:`ConnectSettings` says where to connect and how to recognise (the URL's
query and the credentials), :class:`PacingSettings` how audio is cut and paced,
:class:`RetrySettings` the timeouts and the reconnect policy, and
:class:`BufferSettings` how much audio the stream holds for later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recorder.config import DEFAULT_SPEECH_MODEL
from recorder.errors import ConfigError
from recorder.stt.protocol import MAX_CHUNK_MS, MIN_CHUNK_MS, build_url, check_keyterms

__all__ = [
    "DEFAULT_BUFFERS",
    "DEFAULT_PACING",
    "DEFAULT_RETRY",
    "BufferSettings",
    "ConnectSettings",
    "PacingSettings",
    "RetrySettings",
]


@dataclass(frozen=True, slots=True)
class ConnectSettings:
    """Where to connect and how to recognise; every field but the credentials goes in the URL.

    Give exactly one of ``api_key`` and ``token``. Keyterms over 50 characters
    are dropped here, once, with a warning (the server ignores them anyway).

    Attributes:
        url: the ``/v3/ws`` endpoint (or an emulator's).
        api_key: the API key, sent as ``Authorization`` (never logged).
        token: a temporary token instead of ``api_key``, sent as ``?token=``.
            A token opens one socket only, so reconnecting needs ``api_key``.
        speech_model: always sent, since the service's default has changed before.
        sample_rate_hz: of the audio given to the stream.
        encoding: ``pcm_s16le`` or ``pcm_mulaw``.
        keyterms: keyterms prompt (at most 100 terms).
        prompt: instruction prompt.
        inactivity_timeout_s: server-side idle close (5-3600 s), or None.
        language_detection: ask for ``language_code`` on finals.
        min_turn_silence_ms: silence before the end-of-turn check (server default).
        max_turn_silence_ms: silence that forces the end of a turn (server default).

    Raises:
        ConfigError: both or neither credential, or a value the server would reject.
    """

    url: str
    api_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    speech_model: str = DEFAULT_SPEECH_MODEL
    sample_rate_hz: int = 16000
    encoding: str = "pcm_s16le"
    keyterms: tuple[str, ...] = ()
    prompt: str | None = None
    inactivity_timeout_s: int | None = None
    language_detection: bool = True
    min_turn_silence_ms: int | None = None
    max_turn_silence_ms: int | None = None

    def __post_init__(self) -> None:
        if (self.api_key is None) == (self.token is None):
            raise ConfigError("give the stt stream exactly one of an api key or a token")
        object.__setattr__(self, "keyterms", tuple(check_keyterms(self.keyterms)))
        self.socket_url()  # validates the rest

    def socket_url(self) -> str:
        """The URL to open, with every setting (and a token) in its query string."""
        return build_url(
            self.url,
            speech_model=self.speech_model,
            sample_rate_hz=self.sample_rate_hz,
            encoding=self.encoding,
            keyterms=self.keyterms,
            prompt=self.prompt,
            inactivity_timeout_s=self.inactivity_timeout_s,
            language_detection=self.language_detection,
            min_turn_silence_ms=self.min_turn_silence_ms,
            max_turn_silence_ms=self.max_turn_silence_ms,
            token=self.token,
        )


@dataclass(frozen=True, slots=True)
class PacingSettings:
    """How audio is cut into messages and paced out on each socket.

    Attributes:
        chunk_ms: size of the audio messages sent (50-1000; 100 is one send per 100 ms).
        realtime_factor: audio clock speed; 1.0 in production, higher in tests.
        max_lead_s: how far a socket's audio may run ahead of the time since its
            ``Begin``, in audio seconds (so the realtime factor does not change it);
            0 means at most one chunk ahead. The service closes a socket that is
            sent audio too fast (docs/providers.md, "Streaming: audio").

    Raises:
        ConfigError: a chunk size outside 50-1000 ms, or a factor or lead out of range.
    """

    chunk_ms: int = 100
    realtime_factor: float = 1.0
    max_lead_s: float = 0.0

    def __post_init__(self) -> None:
        if not MIN_CHUNK_MS <= self.chunk_ms <= MAX_CHUNK_MS:
            raise ConfigError(f"stt chunk of {self.chunk_ms} ms is outside 50-1000 ms")
        if not self.realtime_factor > 0:
            raise ConfigError("stt realtime factor must be positive")
        if not self.max_lead_s >= 0:
            raise ConfigError("stt pacing lead must not be negative")


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Timeouts, and when to reconnect or give up.

    Attributes:
        connect_timeout_s: bound on the upgrade and on waiting for ``Begin``.
        terminate_timeout_s: bound on waiting for ``Termination`` after ``Terminate``.
        backoff_initial_s: first reconnect delay.
        backoff_max_s: largest reconnect delay.
        give_up_s: stop reconnecting after this long without a working socket.
        quick_failure_s: a socket that dies sooner than this after ``Begin`` is a quick failure.
        quick_failure_limit: this many quick failures in a row: give up.
        ping_interval_s: WebSocket ping period; a server that stops answering
            (a stalled socket) is dropped after ``ping_timeout_s`` more and replaced.
        ping_timeout_s: how long a ping may go unanswered.
    """

    connect_timeout_s: float = 10.0
    terminate_timeout_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    give_up_s: float = 60.0
    quick_failure_s: float = 5.0
    quick_failure_limit: int = 3
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class BufferSettings:
    """How much audio a stream holds: the one cap on held audio, and the resend window.

    Attributes:
        backlog_max_s: most unsent audio held (before the first socket, while one
            opens, during an outage, or while pacing holds it back); older audio is
            dropped and reported as ``AudioDropped``.
        resend_max_s: most sent audio kept until a final turn covers it; only
            this much can be sent again after a reconnect.
        catch_up_max_s: after a reconnect, at most this much held audio is sent
            (it is paced at real time, so it stays that far behind live); older held
            audio is dropped and reported as ``AudioDropped``, for the caller to
            transcribe another way (None: send it all).
    """

    backlog_max_s: float = 60.0
    resend_max_s: float = 15.0
    catch_up_max_s: float | None = None


DEFAULT_PACING = PacingSettings()
DEFAULT_RETRY = RetrySettings()
DEFAULT_BUFFERS = BufferSettings()
