"""What a transport gives the bot (participants, per-uid audio) and takes (recap audio).

:class:`Transport` is everything a caller may use; :class:`TransportSink` is what
the bot hands it. A transport's native threads reach the sink only through
:class:`~recorder.transport.bridge.AudioBridge`.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

from recorder.audio import Chunk

__all__ = [
    "ConnectionState",
    "ConnectionStateChanged",
    "LoopFellBehind",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantMuted",
    "Transport",
    "TransportEvent",
    "TransportSink",
]


class ConnectionState(enum.Enum):
    """The bot's own connection to the channel."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    """A remote participant joined the channel."""

    uid: int
    at_ms: float


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    """A remote participant left (``reason`` as the transport reports it)."""

    uid: int
    at_ms: float
    reason: str = "quit"


@dataclass(frozen=True, slots=True)
class ParticipantMuted:
    """A remote participant muted (``is_muted``) or unmuted their microphone."""

    uid: int
    at_ms: float
    is_muted: bool


@dataclass(frozen=True, slots=True)
class ConnectionStateChanged:
    """The bot's connection changed state; ``reason`` is for the log and the gap record."""

    state: ConnectionState
    at_ms: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LoopFellBehind:
    """The recorder fell behind and dropped ``uid``'s audio from ``at_ms`` to ``to_ms``.

    The bridge drops audio only when the event loop is seconds late; what it drops
    never reaches the stored audio, so it is a stretch no repair can recover.
    """

    uid: int
    at_ms: float
    to_ms: float


TransportEvent = (
    ParticipantJoined | ParticipantLeft | ParticipantMuted | ConnectionStateChanged | LoopFellBehind
)


class TransportSink(ABC):
    """What the bot hands a transport; every method runs on the event loop."""

    @abstractmethod
    def on_event(self, event: TransportEvent) -> None:
        """A participant or connection event happened."""

    @abstractmethod
    def on_audio(self, uid: int, chunk: Chunk) -> None:
        """A chunk of one participant's audio arrived. Must not block."""


class Transport(ABC):
    """A source of per-participant audio for one meeting, and a sink for recap audio.

    Everything a caller needs from a transport is declared here: callers never
    look at a concrete transport's attributes or type.
    """

    channel: str

    @property
    def names(self) -> Mapping[int, str]:
        """Display names the channel itself knows, by uid (a scripted meeting's cast)."""
        return {}

    @abstractmethod
    def clock_ms(self) -> float:
        """Meeting time now: milliseconds since the transport started (its own clock)."""

    def linger(self, seconds: float) -> float | None:
        """Keep the channel open ``seconds`` past the meeting's own end; call before start.

        A live channel has no end of its own; a scripted one does, and after it
        nothing could play the bot's recap on end.

        Returns:
            Wall-clock seconds after the start at which the meeting itself ends
            (where the recording should stop, as Ctrl+C would), or None if the
            meeting has no end of its own.
        """
        return None

    @abstractmethod
    async def start(self, sink: TransportSink) -> None:
        """Join the channel and start delivering events and audio to ``sink``."""

    @abstractmethod
    async def wait_finished(self) -> None:
        """Return when the transport has nothing more to deliver (replay end); never for live."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop delivering and leave the channel; safe to call more than once."""

    async def publish(self, pcm: bytes) -> None:
        """Play PCM16 mono 16 kHz audio into the channel, paced to the channel's clock.

        Returns once the last of it is queued, never more than a short lead
        (about 150 ms) ahead of what the channel has played, so a flush takes
        back little; returns early after :meth:`flush_publish`. A channel that
        is not playing takes it at once, and it stays in :attr:`publish_backlog_ms`.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot publish audio")

    def flush_publish(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Drop audio queued for publishing (barge-in)."""

    @property
    def publish_backlog_ms(self) -> float:
        """Audio published and not yet played into the channel, in ms."""
        return 0.0

    @property
    def publish_played_ms(self) -> float:
        """Published audio that has played into the channel so far, in ms.

        Counts from the transport's start; audio a flush dropped never counts.
        Exact while a :meth:`publish` is still pushing, which its caller cannot
        tell from how much it handed over.
        """
        return 0.0

    async def wait_played(self, backlog_ms: float = 0.0) -> None:
        """Return once at most ``backlog_ms`` of published audio is still to play.

        Also returns at once after :meth:`flush_publish` and once the channel
        stops playing for good (:meth:`stop`, a replay's end): read
        :attr:`publish_backlog_ms` afterwards to tell. It may never return if
        the channel never plays (not started): callers bound it with a timeout.

        The default serves transports that never publish: nothing is queued,
        so it returns at once. A transport that publishes overrides it.

        Raises:
            NotImplementedError: audio is queued and this transport cannot say when it plays.
        """
        if self.publish_backlog_ms > backlog_ms:
            raise NotImplementedError(f"{type(self).__name__} cannot wait for its audio to play")

    @property
    def dropped_audio_ms(self) -> Mapping[int, float]:
        """Participants' audio lost before the bot saw it (the loop fell behind), ms per uid."""
        return {}
