"""Every failure the user can expect, as one exception tree with actionable messages.

This is a leaf module: it imports nothing from ``recorder`` or ``storage``.
The CLI turns any :class:`RecorderError` into one line on stderr and its
``exit_code``; anything else is a bug and keeps its traceback.

The tree::

    RecorderError
    ├── ConfigError              bad or missing setting (names the variable or flag)
    ├── UsageError               bad user input to a command (exit code 2)
    ├── ChannelError             the meeting channel
    │   └── JoinError            joining failed (bad token, app id, channel name)
    ├── TransportError           a transport could not start or broke
    │   ├── TransportUnavailable the transport's library is missing
    │   └── ReplayError          a bad replay file or missing audio file
    ├── SttError                 the streaming speech-to-text service
    │   ├── SttConnectionError   could not reach it, or gave up reconnecting
    │   ├── SttProtocolError     it sent something we cannot parse
    │   └── SttRejected          it refused us for good (key, account, params)
    ├── AgentError               the Voice Agent service (recaps)
    │   └── AgentProtocolError   it sent something we cannot parse
    ├── LlmError                 the LLM Gateway (written notes, ask)
    │   ├── LlmRejected          it refused the request for good (key, model, body)
    │   └── LlmAnswerError       its answer was unusable (invalid or truncated), twice
    ├── StorageError             the transcript database
    │   ├── DatabaseUnreachable  cannot connect
    │   ├── MigrationRequired    the schema is behind; run ``recorder db upgrade``
    │   ├── ReadOnlyViolation    a write was attempted through ``recorder sql``
    │   └── NotFoundError        no such meeting (or nothing recorded yet)
    └── RenderError              an export could not be written

Messages are lowercase, without a trailing period, and say what happened,
the value involved, and what to try. They never contain secrets.
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "AgentProtocolError",
    "ChannelError",
    "ConfigError",
    "DatabaseUnreachable",
    "JoinError",
    "LlmAnswerError",
    "LlmError",
    "LlmRejected",
    "MigrationRequired",
    "NotFoundError",
    "ReadOnlyViolation",
    "RecorderError",
    "RenderError",
    "ReplayError",
    "SttConnectionError",
    "SttError",
    "SttProtocolError",
    "SttRejected",
    "StorageError",
    "TransportError",
    "TransportUnavailable",
    "UsageError",
]


class RecorderError(Exception):
    """Root of every expected failure; ``str()`` is the one line shown to the user.

    Attributes:
        exit_code: the process exit code for this failure (1 operational, 2 usage).
    """

    exit_code: int = 1


class ConfigError(RecorderError):
    """A setting is missing or malformed; the message names the variable or flag."""


class UsageError(RecorderError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2


class ChannelError(RecorderError):
    """Something is wrong with the meeting channel itself."""


class JoinError(ChannelError):
    """Joining the channel failed; the message names the reason and the fix."""


class TransportError(RecorderError):
    """A transport (agora, replay) could not start or stopped working."""


class TransportUnavailable(TransportError):
    """The library a transport needs is not installed or cannot load."""


class ReplayError(TransportError):
    """A replay file is malformed or refers to audio that cannot be read."""


class SttError(RecorderError):
    """The streaming speech-to-text service failed."""


class SttConnectionError(SttError):
    """The STT service could not be reached, or reconnecting was given up."""


class SttProtocolError(SttError):
    """A message from the STT service could not be understood.

    Attributes:
        field: the message field that was missing or malformed, if known.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class SttRejected(SttError):
    """The STT service refused the session for a reason retrying will not fix.

    Attributes:
        code: the WebSocket close code or HTTP status, if any.
        reason: the server's reason text, if any.
        hint: what the user should do about it.
    """

    def __init__(self, reason: str, *, code: int | None = None, hint: str = "") -> None:
        self.code = code
        self.reason = reason
        self.hint = hint
        super().__init__(reason)

    def __str__(self) -> str:
        where = f" (code {self.code})" if self.code is not None else ""
        text = f"the speech-to-text service refused the session{where}: {self.reason}"
        return f"{text}; {self.hint}" if self.hint else text


class AgentError(RecorderError):
    """The Voice Agent service failed (a recap could not be made or spoken)."""


class AgentProtocolError(AgentError):
    """A message from the Voice Agent service could not be understood.

    Attributes:
        field: the message field that was missing or malformed, if known.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class LlmError(RecorderError):
    """The LLM Gateway failed (unreachable, rate limited or erroring after retries)."""


class LlmRejected(LlmError):
    """The LLM Gateway refused the request for good (key, entitlement, model, body)."""


class LlmAnswerError(LlmError):
    """The model's answer could not be used (invalid JSON, wrong shape, truncated)."""


class StorageError(RecorderError):
    """The transcript database failed."""


class DatabaseUnreachable(StorageError):
    """The database could not be opened or connected to."""


class MigrationRequired(StorageError):
    """The database schema is older than this version of recorder needs."""


class ReadOnlyViolation(StorageError):
    """A statement given to ``recorder sql`` tried to change the database."""


class NotFoundError(StorageError):
    """The meeting (or other record) asked for does not exist."""


class RenderError(RecorderError):
    """An export could not be rendered or written."""
