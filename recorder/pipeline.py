"""One participant's path from audio chunks to final turns on the meeting timeline.

A socket opens on the participant's first speech (not on join), with a
pre-roll of the audio just before it so the first word is whole. It closes
after ``idle_close_ms`` of silence (while the session budget can afford a
reopen) or when they mute or leave, since streaming bills on open time
(assemblyai-streaming-v3.md §7). Every word is mapped back to meeting time
through a :class:`~recorder.timeline.Timeline` of what was sent.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from recorder.audio import Chunk
from recorder.errors import RecorderError, SttRejected
from recorder.limiter import SessionBudget
from recorder.stt.events import (
    AudioDropped,
    Event,
    FinalTranscript,
    PartialTranscript,
    SocketClosed,
    SocketOpened,
    SpeechStarted,
)
from recorder.timeline import Timeline
from storage.records import Word

__all__ = ["FinalTurn", "ParticipantStream", "SpeechStream", "StreamHooks"]

log = logging.getLogger(__name__)


class SpeechStream(Protocol):
    """What the pipeline needs of an STT session (``recorder.stt.stream.SttStream``)."""

    async def start(self) -> None:
        """Connect; raise a RecorderError if the service refuses."""

    def send(self, pcm: bytes) -> None:
        """Queue audio (never blocks; the stream paces and chunks it)."""

    def events(self) -> AsyncIterator[Event]:
        """Events until the stream is stopped and drained."""

    async def stop(self) -> None:
        """Flush, end the session cleanly, and close."""


@dataclass(frozen=True, slots=True)
class FinalTurn:
    """A final turn placed on the meeting timeline.

    ``socket_key`` is (stream generation, socket index): one STT socket, the
    unit the store keeps as a stream session.
    """

    uid: int
    socket_key: tuple[int, int]
    turn_order: int
    start_ms: int
    end_ms: int
    text: str
    words: tuple[Word, ...]
    end_of_turn_confidence: float | None
    language: str | None


@dataclass(frozen=True, slots=True)
class StreamHooks:
    """Where a participant's stream reports to (the bot)."""

    on_final: Callable[[FinalTurn], Awaitable[None]]
    on_partial: Callable[[int, str], None]
    on_speech_started: Callable[[int], None]
    on_socket_opened: Callable[[int, tuple[int, int], SocketOpened], Awaitable[object]]
    on_socket_closed: Callable[[int, tuple[int, int], SocketClosed], Awaitable[None]]
    on_fatal: Callable[[RecorderError], None]


class _State(enum.Enum):
    CLOSED = "closed"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"


class ParticipantStream:
    """Owns one participant's STT sessions across speech, silence, mutes and rejoins.

    Args:
        uid: the participant.
        open_stream: makes a new (not yet started) SpeechStream.
        budget: the meeting's shared new-session budget.
        hooks: where turns and socket records go.
        idle_close_ms: silence after which the socket closes.
        preroll_ms: audio kept while closed and sent first on reopen.
        max_backlog_ms: audio held while a socket is opening; older audio beyond it is
            dropped and counted (a recorded loss, never a silent one).
    """

    def __init__(
        self,
        uid: int,
        *,
        open_stream: Callable[[], SpeechStream],
        budget: SessionBudget,
        hooks: StreamHooks,
        idle_close_ms: float,
        preroll_ms: float = 400.0,
        max_backlog_ms: float = 60_000.0,
    ) -> None:
        self.uid = uid
        self._open_stream = open_stream
        self._budget = budget
        self._hooks = hooks
        self._idle_close_ms = idle_close_ms
        self._preroll_ms = preroll_ms
        self._max_backlog_ms = max_backlog_ms
        self._state = _State.CLOSED
        self._backlog: deque[Chunk] = deque()
        self._backlog_ms = 0.0
        self._stream: SpeechStream | None = None
        self._timeline = Timeline()
        self._generation = 0
        self._last_speech_end_ms = 0.0
        self._reopen_after_close = False
        self._task: asyncio.Task[None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._stopping = False
        self.dropped_ms = 0.0

    def feed(self, chunk: Chunk) -> None:
        """Take one chunk of this participant's audio (on the loop; never blocks)."""
        if self._stopping:
            return
        if self._state is _State.OPEN:
            assert self._stream is not None
            self._send(chunk)
            if chunk.is_speech:
                self._last_speech_end_ms = chunk.end_ms
            elif (
                chunk.end_ms - self._last_speech_end_ms >= self._idle_close_ms
                and self._budget.can_afford_close()
            ):
                self._begin_close(reason="idle")
            return
        self._hold(chunk)
        if self._state is _State.CLOSED and chunk.is_speech:
            self._begin_open()
        elif self._state is _State.CLOSING and chunk.is_speech:
            self._reopen_after_close = True

    def pause(self, reason: str) -> None:
        """The participant muted or left: close the socket now (it bills while open)."""
        self._reopen_after_close = False
        if self._state is _State.OPEN:
            self._begin_close(reason=reason)
        elif self._state is _State.CLOSED:
            self._clear_backlog()

    async def aclose(self) -> None:
        """Stop for good: close any socket and wait for its last turns."""
        self._stopping = True
        self._reopen_after_close = False
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._state is _State.OPEN:
            self._begin_close(reason="shutdown")
            assert self._task is not None
            await asyncio.shield(self._task)

    # -- internals ---------------------------------------------------------

    def _hold(self, chunk: Chunk) -> None:
        self._backlog.append(chunk)
        self._backlog_ms += chunk.duration_ms
        is_closed = self._state is _State.CLOSED
        self._trim_to(self._preroll_ms if is_closed else self._max_backlog_ms, count=not is_closed)

    def _trim_to(self, limit_ms: float, *, count: bool = False) -> None:
        """Drop the oldest held audio beyond ``limit_ms``; ``count`` speech lost that way."""
        while self._backlog and self._backlog_ms - self._backlog[0].duration_ms >= limit_ms:
            old = self._backlog.popleft()
            self._backlog_ms -= old.duration_ms
            if count and old.is_speech:
                self.dropped_ms += old.duration_ms
                log.warning("! uid=%d backlog full: dropped %.0f ms", self.uid, old.duration_ms)

    def _clear_backlog(self) -> None:
        self._backlog.clear()
        self._backlog_ms = 0.0

    def _send(self, chunk: Chunk) -> None:
        assert self._stream is not None
        self._timeline.add(chunk.start_ms, chunk.duration_ms)
        self._stream.send(chunk.pcm)

    def _begin_open(self) -> None:
        self._state = _State.OPENING
        self._task = asyncio.create_task(self._open(), name=f"open-uid-{self.uid}")

    def _begin_close(self, *, reason: str) -> None:
        self._state = _State.CLOSING
        log.debug("= uid=%d closing stream (%s)", self.uid, reason)
        self._task = asyncio.create_task(self._close(), name=f"close-uid-{self.uid}")

    async def _open(self) -> None:
        await self._budget.acquire()
        if self._stopping and not self._backlog:
            self._state = _State.CLOSED
            return
        self._generation += 1
        self._timeline = Timeline()
        stream = self._open_stream()
        try:
            await stream.start()
        except SttRejected as exc:
            self._state = _State.CLOSED
            self._hooks.on_fatal(exc)
            return
        except RecorderError as exc:
            lost = sum(c.duration_ms for c in self._backlog if c.is_speech)
            self.dropped_ms += lost
            log.warning(
                "! uid=%d could not open a stream, %.0f ms of speech lost: %s", self.uid, lost, exc
            )
            self._clear_backlog()
            self._state = _State.CLOSED
            return
        self._stream = stream
        self._consumer = asyncio.create_task(
            self._consume(stream, self._generation, self._timeline),
            name=f"stt-events-uid-{self.uid}",
        )
        self._state = _State.OPEN
        backlog, self._backlog = self._backlog, deque()
        self._backlog_ms = 0.0
        for chunk in backlog:
            self._send(chunk)
            if chunk.is_speech:
                self._last_speech_end_ms = chunk.end_ms
        if self._stopping:
            self._begin_close(reason="shutdown")
            await self._close()

    async def _close(self) -> None:
        stream, consumer = self._stream, self._consumer
        self._stream = None
        if stream is not None:
            try:
                await stream.stop()
            except RecorderError as exc:
                log.warning("! uid=%d stream did not close cleanly: %s", self.uid, exc)
        if consumer is not None:
            await consumer
        self._state = _State.CLOSED
        if self._reopen_after_close and not self._stopping:
            self._reopen_after_close = False
            self._state = _State.OPENING
            await self._open()
        else:
            # Keep only a pre-roll's worth of what arrived while closing.
            self._trim_to(self._preroll_ms)

    async def _consume(self, stream: SpeechStream, generation: int, timeline: Timeline) -> None:
        hooks = self._hooks
        try:
            async for event in stream.events():
                if isinstance(event, FinalTranscript):
                    key = (generation, event.socket_index)
                    await hooks.on_final(self._place(event, key, timeline))
                elif isinstance(event, PartialTranscript):
                    hooks.on_partial(self.uid, event.transcript)
                elif isinstance(event, SpeechStarted):
                    hooks.on_speech_started(self.uid)
                elif isinstance(event, SocketOpened):
                    await hooks.on_socket_opened(self.uid, (generation, event.socket_index), event)
                elif isinstance(event, SocketClosed):
                    await hooks.on_socket_closed(self.uid, (generation, event.socket_index), event)
                elif isinstance(event, AudioDropped):
                    self.dropped_ms += event.duration_ms
                    log.warning(
                        "! uid=%d stream dropped %d ms of audio during an outage",
                        self.uid,
                        event.duration_ms,
                    )
        except SttRejected as exc:
            hooks.on_fatal(exc)
        except RecorderError as exc:
            log.warning("! uid=%d stream failed: %s", self.uid, exc)

    def _place(self, turn: FinalTranscript, key: tuple[int, int], timeline: Timeline) -> FinalTurn:
        offset = turn.audio_offset_ms
        words = tuple(
            Word(
                w.text,
                int(round(timeline.to_meeting_ms(offset + w.start_ms))),
                int(round(timeline.to_meeting_ms(offset + w.end_ms, is_end=True))),
                w.confidence,
            )
            for w in turn.words
        )
        if words:
            start, end = words[0].start_ms, max(words[0].start_ms, words[-1].end_ms)
        else:
            start = end = int(round(timeline.to_meeting_ms(timeline.stream_end_ms, is_end=True)))
        return FinalTurn(
            uid=self.uid,
            socket_key=key,
            turn_order=turn.turn_order,
            start_ms=start,
            end_ms=end,
            text=turn.transcript,
            words=words,
            end_of_turn_confidence=turn.end_of_turn_confidence,
            language=turn.language_code,
        )
