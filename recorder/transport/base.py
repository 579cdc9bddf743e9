"""What a transport gives the bot (participants, per-uid audio) and takes (recap audio).

A transport's native side calls an :class:`AudioBridge` from its own threads;
the bridge is the one place that crosses into asyncio, once per ~100 ms chunk
and once per participant event, never once per 10 ms frame (STYLE.md §3.2).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from recorder.audio import CHUNK_MS, FRAME_MS, Chunk, ChunkAssembler

__all__ = [
    "AudioBridge",
    "ConnectionState",
    "ConnectionStateChanged",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantMuted",
    "Transport",
    "TransportEvent",
    "TransportSink",
]

log = logging.getLogger(__name__)


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


TransportEvent = ParticipantJoined | ParticipantLeft | ParticipantMuted | ConnectionStateChanged


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
        """Play PCM16 mono 16 kHz audio into the channel, paced to wall-clock time."""
        raise NotImplementedError(f"{type(self).__name__} cannot publish audio")

    def flush_publish(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Drop audio queued for publishing (barge-in)."""

    @property
    def publish_backlog_ms(self) -> float:
        """Audio published and not yet played into the channel, in ms."""
        return 0.0

    async def wait_played(self, backlog_ms: float = 0.0) -> None:
        """Return once at most ``backlog_ms`` of published audio is still to play.

        The default polls :attr:`publish_backlog_ms`; transports that know when
        a frame plays override it. It may never return if the channel stopped
        playing: callers bound it with a timeout.
        """
        while self.publish_backlog_ms > backlog_ms:  # noqa: ASYNC110 - a fallback: no event to wait on
            await asyncio.sleep(FRAME_MS / 1000 / 2)


class AudioBridge:
    """Moves audio and events from a transport's threads onto the event loop.

    :meth:`push_frame` runs on a native thread once per 10 ms frame: it only
    appends to that participant's :class:`ChunkAssembler`. Whole chunks and
    events go into one queue, in the order they happened, and the loop is
    woken only when that queue was empty: at most once per chunk, and with
    many participants far less (one wake-up drains every chunk that is
    ready). Losing the loop (it closed while the native side still calls) is
    counted, never raised into the native thread.

    Args:
        loop: the event loop the sink lives on.
        sink: receives events and chunks, on the loop.
        clock_ms: the transport's clock (milliseconds since it started).
        chunk_ms: chunk length handed to the sink.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sink: TransportSink,
        *,
        clock_ms: Callable[[], float] | None = None,
        chunk_ms: int = CHUNK_MS,
    ) -> None:
        self._loop = loop
        self._sink = sink
        self._chunk_ms = chunk_ms
        origin = time.monotonic()
        self.clock_ms = clock_ms or (lambda: (time.monotonic() - origin) * 1000.0)
        self._assemblers: dict[int, ChunkAssembler] = {}
        self._lock = threading.Lock()
        self._create_lock = threading.Lock()
        # deque.append/popleft are atomic in CPython: the native threads produce,
        # the loop consumes, and _wake_pending only ever causes a spare wake-up.
        self._ready: deque[tuple[int, Chunk] | TransportEvent] = deque()
        self._wake_pending = False
        self.wakeups = 0
        self.frames = 0
        self.chunks = 0
        self.lost_after_close = 0
        self.callback_errors = 0

    def _assembler(self, uid: int) -> ChunkAssembler:
        with self._create_lock:
            assembler = self._assemblers.get(uid)
            if assembler is None:
                # Stagger chunk boundaries per participant (DESIGN.md): the first
                # chunk is 50-100% of a normal one, derived from the uid.
                half = self._chunk_ms // 2
                first = half + zlib.crc32(uid.to_bytes(8, "little")) % (half + 1)
                assembler = ChunkAssembler(chunk_ms=self._chunk_ms, first_chunk_ms=max(50, first))
                self._assemblers[uid] = assembler
        return assembler

    def push_frame(
        self, uid: int, frame: bytes | bytearray | memoryview, at_ms: float | None = None
    ) -> None:
        """Called on a native thread for every 10 ms frame of ``uid``; never raises."""
        try:
            self.frames += 1
            assembler = self._assemblers.get(uid) or self._assembler(uid)
            # Uncontended (~0.1 us): only end_audio, from an event thread, competes.
            with self._lock:
                chunk = assembler.append(frame, self.clock_ms() if at_ms is None else at_ms)
            if chunk is not None:
                self.chunks += 1
                self._enqueue((uid, chunk))
        except Exception:  # a native thread must never see our exceptions
            self.callback_errors += 1
            if self.callback_errors in (1, 100, 10_000):
                log.exception("! audio callback failed (%d so far)", self.callback_errors)

    def end_audio(self, uid: int) -> None:
        """Deliver what ``uid`` has gathered (they muted or left); native thread."""
        assembler = self._assemblers.get(uid)
        if assembler is None:
            return
        with self._lock:
            chunk = assembler.flush()
        if chunk is not None:
            self._enqueue((uid, chunk))

    def push_event(self, event: TransportEvent) -> None:
        """Hand a participant or connection event to the loop; native thread."""
        if isinstance(event, ParticipantLeft) or (
            isinstance(event, ParticipantMuted) and event.is_muted
        ):
            self.end_audio(event.uid)
        self._enqueue(event)

    def _enqueue(self, item: tuple[int, Chunk] | TransportEvent) -> None:
        self._ready.append(item)
        if self._wake_pending:
            return
        self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
            self.wakeups += 1
        except RuntimeError:  # the loop closed under us: shutting down
            self.lost_after_close += 1

    def _drain(self) -> None:
        """On the loop: hand every queued chunk and event to the sink, in order."""
        # Cleared before draining: an item queued from now on schedules a new drain.
        self._wake_pending = False
        ready, sink = self._ready, self._sink
        while ready:
            item = ready.popleft()
            if isinstance(item, tuple):
                sink.on_audio(*item)
            else:
                sink.on_event(item)
