"""One participant's path from audio chunks to final turns on the meeting timeline.

A socket opens on the participant's first speech (not on join), with a
pre-roll of the audio just before it so the first word is whole. It closes
at the end of a turn (a final covers the last speech and a short hold of
silence has passed; :mod:`recorder.stt.hold`), or after ``idle_close_ms`` of
silence under the earlier policy, while the session budget can afford a
reopen, and at once when they mute or leave, since streaming bills socket-open time
(docs/providers.md, "Streaming: limits and billing"). Every word is mapped
back to meeting time through a :class:`~recorder.timeline.Timeline` of what
was sent.

Held audio has one owner: the STT stream. Once a stream is wanted (the first
speech, or a close under way) every chunk goes straight to it, before it has
even started, and its buffer holds whatever it cannot send yet under its one
cap, reporting what it drops. Here only the pre-roll is kept: a fixed window of
the last ``preroll_ms`` while no stream is open, never counted as lost.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from recorder.audio import Chunk
from recorder.errors import RecorderError, SttError, SttRejected
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
from recorder.stt.hold import DEFAULT_HOLD_MS, ClosePolicy, CloseSettings, SocketHold
from recorder.timeline import Timeline

__all__ = ["FinalTurn", "ParticipantStream", "PlacedWord", "SpeechStream", "StreamHooks"]

log = logging.getLogger(__name__)

# Speech given to a stream this far past the end of its last final's words is not
# yet transcribed (a speech chunk may run a little past the last word).
_UNCOVERED_SLACK_MS = 300.0
# At the stop, how long a stream still opening may take to open before it is given up
# (its speech goes to repair): a service that answers does so well within it (the
# upgrade and Begin), one that does not answer would hold the stop for its whole bound.
_OPEN_GRACE_S = 1.0


class SpeechStream(Protocol):
    """What the pipeline needs of an STT stream (``recorder.stt.stream.SttStream``)."""

    async def start(self) -> None:
        """Connect; raise a RecorderError if the service refuses."""

    def send(self, pcm: bytes) -> None:
        """Queue audio (never blocks; the stream paces, chunks and holds it).

        Called before :meth:`start` too: that audio is held and sent first.
        """

    def events(self) -> AsyncIterator[Event]:
        """Events until the stream is stopped and drained."""

    async def stop(self) -> None:
        """Flush, end the session cleanly, and close."""


@dataclass(frozen=True, slots=True)
class PlacedWord:
    """One word of a final turn, on the meeting clock (ms)."""

    text: str
    start_ms: int
    end_ms: int
    confidence: float | None


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
    words: tuple[PlacedWord, ...]
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
    # A stretch of this participant's audio live transcription missed:
    # (uid, from_ms, to_ms, cause), meeting time. The stored audio can repair it.
    on_gap: Callable[[int, int, int, str], None] | None = None
    # Live transcription of this participant is in trouble (uid, why), e.g. the
    # service does not answer yet; said once per change by the bot.
    on_trouble: Callable[[int, str], None] | None = None


class _State(enum.Enum):
    CLOSED = "closed"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"


@dataclass(slots=True)
class _Fed:
    """A stream being given audio, with the timeline of what it was given."""

    stream: SpeechStream
    timeline: Timeline = field(default_factory=Timeline)
    speech_ms: float = 0.0  # speech given to it, lost if it never opens
    consumer: asyncio.Task[None] | None = None
    # Stream positions (ms): the end of the last final's words, and of the last speech
    # given; speech past the first is not transcribed yet.
    covered_ms: float = 0.0
    speech_end_ms: float = 0.0
    is_gap_recorded: bool = False


class ParticipantStream:
    """Owns one participant's STT streams across speech, silence, mutes and rejoins.

    Args:
        uid: the participant.
        open_stream: makes a new (not yet started) SpeechStream.
        budget: the meeting's shared new-session budget.
        hooks: where turns and socket records go.
        idle_close_ms: silence after which the socket closes (under either policy).
        preroll_ms: audio kept while no stream is open, and given first to the next one.
        slow_open_s: a stream not open after this long is reported as in trouble.
        close_policy: close at the end of a turn (default) or only after ``idle_close_ms``.
        hold_ms: with the turn-end policy, silence after the last speech before closing.
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
        slow_open_s: float = 3.0,
        close_policy: ClosePolicy = ClosePolicy.TURN_END,
        hold_ms: float = DEFAULT_HOLD_MS,
    ) -> None:
        self.uid = uid
        self._slow_open_s = slow_open_s
        self._open_stream = open_stream
        self._budget = budget
        self._hooks = hooks
        self._hold = SocketHold(
            CloseSettings(policy=close_policy, hold_ms=hold_ms, idle_close_ms=idle_close_ms)
        )
        self._now_ms = 0.0  # the end of the last chunk fed: the meeting time now
        self._preroll_ms = preroll_ms
        self._state = _State.CLOSED
        self._preroll: deque[Chunk] = deque()
        self._preroll_held_ms = 0.0
        self._open: _Fed | None = None  # the stream that is open (or closing)
        self._next: _Fed | None = None  # the stream being fed before it starts
        self._closing: _Fed | None = None  # the stream ending, once no longer open
        self._generation = 0
        self._reopen_after_close = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.dropped_ms = 0.0

    def feed(self, chunk: Chunk) -> None:
        """Take one chunk of this participant's audio (on the loop; never blocks)."""
        if self._stopping:
            return
        end_ms = self._now_ms = chunk.end_ms
        is_speech = chunk.is_speech
        if is_speech:
            self._hold.heard_speech(chunk.start_ms, end_ms)
        opened = self._open
        if self._state is _State.OPEN and opened is not None:
            self._send(opened, chunk)
            if not is_speech:
                self._close_if_idle()
            return
        self._keep_preroll(chunk)
        if self._next is None and self._state is _State.CLOSING:
            # Held by the next stream, which starts if speech comes before the close ends.
            self._next = _Fed(self._open_stream())
        if self._next is not None:
            self._send(self._next, chunk)
        if not is_speech:
            return
        if self._state is _State.CLOSED:
            self._next = self._fed_preroll()
            self._state = _State.OPENING
            self._task = asyncio.create_task(self._start_next(), name=f"open-uid-{self.uid}")
        elif self._state is _State.CLOSING:
            self._reopen_after_close = True

    def pause(self, reason: str) -> None:
        """The participant muted or left: close the socket now (it bills while open)."""
        self._reopen_after_close = False
        if self._state is _State.OPEN:
            self._begin_close(reason=reason)
        elif self._state is _State.CLOSED:
            self._clear_preroll()

    async def aclose(self) -> None:
        """Stop for good: close any socket and wait for its last turns.

        A stream still opening has nothing to close: after a short grace it is
        given up at once and what it was given is a gap (repaired from the kept
        audio), rather than holding the stop while the service does not answer.
        """
        self._stopping = True
        self._reopen_after_close = False
        await self._await_task()
        if self._state is _State.OPEN:
            self._begin_close(reason="shutdown")
            await self._await_task()

    async def _await_task(self) -> None:
        task = self._task
        if task is None:
            return
        if self._state is _State.OPENING:
            await asyncio.wait({task}, timeout=_OPEN_GRACE_S)
        if self._state is _State.OPENING and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if self._next is not None:
                self._record_gap(self._next, "the speech-to-text service could not be reached")
                self._next = None
            self._state = _State.CLOSED
            return
        await asyncio.shield(task)

    # -- internals ---------------------------------------------------------

    def _keep_preroll(self, chunk: Chunk) -> None:
        """Keep the last ``preroll_ms`` of audio (at least; whole chunks)."""
        held = self._preroll
        held.append(chunk)
        held_ms = self._preroll_held_ms + chunk.duration_ms
        while held and held_ms - held[0].duration_ms >= self._preroll_ms:
            held_ms -= held.popleft().duration_ms
        self._preroll_held_ms = held_ms

    def _clear_preroll(self) -> None:
        self._preroll.clear()
        self._preroll_held_ms = 0.0

    def _fed_preroll(self) -> _Fed:
        """A new stream, given the pre-roll."""
        fed = _Fed(self._open_stream())
        for chunk in self._preroll:
            self._send(fed, chunk)
        return fed

    def _send(self, fed: _Fed, chunk: Chunk) -> None:
        duration_ms = chunk.duration_ms
        position = fed.timeline.add(chunk.start_ms, duration_ms)
        if chunk.is_speech:
            fed.speech_ms += duration_ms
            fed.speech_end_ms = position + duration_ms
        try:
            fed.stream.send(chunk.pcm)
        except SttError:
            # The stream failed for good; its consumer reports why, once (and records
            # the gap). Raising here would escape into the transport's hand-off.
            return

    def _record_gap(self, fed: _Fed, cause: str) -> None:
        """Report the speech ``fed`` was given that no final covers, once."""
        if fed.is_gap_recorded or self._hooks.on_gap is None:
            return
        # A speech chunk may run a little past the last word's end.
        if fed.speech_end_ms <= fed.covered_ms + _UNCOVERED_SLACK_MS:
            return
        fed.is_gap_recorded = True
        timeline = fed.timeline
        start = int(timeline.to_meeting_ms(fed.covered_ms))
        end = int(round(timeline.to_meeting_ms(timeline.stream_end_ms, is_end=True)))
        self._hooks.on_gap(self.uid, start, max(start, end), cause)

    def settled_ms(self) -> float:
        """Meeting time up to which this participant's live transcription is settled.

        Every speech before it is in a final turn already handed on, or recorded
        as a gap: a repair of audio before it cannot meet a live word still to come.
        """
        settled = self._now_ms
        for fed in (self._closing, self._open, self._next):
            if fed is None or fed.is_gap_recorded:
                continue
            if fed.speech_end_ms > fed.covered_ms + _UNCOVERED_SLACK_MS:
                settled = min(settled, fed.timeline.to_meeting_ms(fed.covered_ms))
        return settled

    def uncovered(self) -> None:
        """Report as gaps the speech given to streams that did not finish (a stop ran out)."""
        for fed in (self._closing, self._open):
            if fed is not None:
                self._record_gap(
                    fed, "the stop came before the speech-to-text service had finished"
                )
        if self._next is not None:
            self._record_gap(
                self._next,
                "the speech-to-text service could not be reached"
                if self._state is _State.OPENING
                else "the stop came before the speech-to-text service had finished",
            )

    def _slow_open(self) -> None:
        if self._hooks.on_trouble is not None and self._state is _State.OPENING:
            self._hooks.on_trouble(self.uid, "the speech-to-text service does not answer; retrying")

    def _close_if_idle(self) -> None:
        """Close the open socket if its speaker has stopped and a reopen is affordable.

        When the session budget cannot afford the reopen the socket stays open (billed)
        rather than risk a refused reopen holding the next speech back; while sessions
        are scarce it closes only after a long silence, where a session saves the most.
        """
        budget, hold, now_ms = self._budget, self._hold, self._now_ms
        if (
            self._state is _State.OPEN
            and not self._stopping
            # Scarcity only holds a close back: asked (it reads the clock) once the hold
            # would let the socket go, not for every silent chunk.
            and hold.due(now_ms)
            and (not budget.is_scarce or hold.due(now_ms, scarce=True))
            and budget.can_afford_close()
        ):
            reason = "turn end" if self._hold.turn_is_covered else "idle"
            self._begin_close(reason=reason)

    def _begin_close(self, *, reason: str) -> None:
        self._state = _State.CLOSING
        log.debug("= uid=%d closing stream (%s)", self.uid, reason)
        self._task = asyncio.create_task(self._close(), name=f"close-uid-{self.uid}")

    async def _start_next(self) -> None:
        fed = self._next
        assert fed is not None
        await self._budget.acquire()
        self._generation += 1
        notice = asyncio.get_running_loop().call_later(self._slow_open_s, self._slow_open)
        try:
            await fed.stream.start()
        except SttRejected as exc:
            # on_fatal first: a refusal that stops the recording is said once, by the
            # recording's end, not again as a gap (which is still recorded).
            self._hooks.on_fatal(exc)
            self._record_gap(fed, f"the speech-to-text service refused us: {exc}")
            self._next = None
            self._state = _State.CLOSED
            return
        except RecorderError as exc:
            self._record_gap(fed, f"the speech-to-text service is unreachable: {exc}")
            self.dropped_ms += fed.speech_ms
            log.warning(
                "! uid=%d could not open a stream, %.0f ms of speech lost: %s",
                self.uid,
                fed.speech_ms,
                exc,
            )
            self._next = None
            self._clear_preroll()
            self._state = _State.CLOSED
            return
        finally:
            notice.cancel()
        self._next, self._open = None, fed
        self._hold.reset()
        self._clear_preroll()
        fed.consumer = asyncio.create_task(
            self._consume(fed, self._generation),
            name=f"stt-events-uid-{self.uid}",
        )
        self._state = _State.OPEN
        if self._stopping:  # aclose() came while it opened: what it was given still counts
            self._state = _State.CLOSING
            await self._close()

    async def _close(self) -> None:
        fed, self._open = self._open, None
        if fed is not None:
            self._closing = fed  # until its last finals are in (a stop may run out first)
            try:
                await fed.stream.stop()
            except RecorderError as exc:
                log.warning("! uid=%d stream did not close cleanly: %s", self.uid, exc)
            if fed.consumer is not None:
                await fed.consumer
            self._closing = None
        self._state = _State.CLOSED
        if self._reopen_after_close and not self._stopping:
            self._reopen_after_close = False
            self._state = _State.OPENING
            await self._start_next()
        else:
            if self._next is not None and self._stopping and self._next.speech_ms > 0:
                # Speech came while the last socket closed, then the stop: send it
                # rather than drop it (a failure to send it is recorded as a gap).
                self._state = _State.OPENING
                await self._start_next()
                return
            # Not wanted after all (never started): the pre-roll keeps the last of it.
            self._next = None

    async def _consume(self, fed: _Fed, generation: int) -> None:
        hooks = self._hooks
        stream, timeline = fed.stream, fed.timeline
        try:
            async for event in stream.events():
                if isinstance(event, FinalTranscript):
                    key = (generation, event.socket_index)
                    if event.words:
                        fed.covered_ms = max(
                            fed.covered_ms, event.audio_offset_ms + event.words[-1].end_ms
                        )
                    turn = self._place(event, key, timeline)
                    await hooks.on_final(turn)
                    if turn.words and generation == self._generation:
                        self._hold.heard_final(turn.end_ms)
                        self._close_if_idle()
                elif isinstance(event, PartialTranscript):
                    hooks.on_partial(self.uid, event.transcript)
                elif isinstance(event, SpeechStarted):
                    hooks.on_speech_started(self.uid)
                elif isinstance(event, SocketOpened):
                    await hooks.on_socket_opened(self.uid, (generation, event.socket_index), event)
                elif isinstance(event, SocketClosed):
                    await hooks.on_socket_closed(self.uid, (generation, event.socket_index), event)
                elif isinstance(event, AudioDropped):
                    if hooks.on_gap is not None:
                        start = int(timeline.to_meeting_ms(event.audio_offset_ms))
                        end = int(
                            round(
                                timeline.to_meeting_ms(
                                    event.audio_offset_ms + event.duration_ms, is_end=True
                                )
                            )
                        )
                        hooks.on_gap(
                            self.uid,
                            start,
                            max(start, end),
                            "the speech-to-text outage outlasted the reconnect buffer",
                        )
                    self.dropped_ms += event.duration_ms
                    log.warning(
                        "! uid=%d stream dropped %d ms of unsent audio (its buffer was full)",
                        self.uid,
                        event.duration_ms,
                    )
        except SttRejected as exc:
            hooks.on_fatal(exc)  # first, as in _start_next
            self._record_gap(fed, f"the speech-to-text service refused us: {exc}")
        except RecorderError as exc:
            # The gap below says it on the console; this is for -v.
            log.info("= uid=%d stream failed: %s", self.uid, exc)
            self._record_gap(fed, f"the speech-to-text stream gave up: {exc}")
            if self._open is fed and self._state is _State.OPEN:
                # Giving up on a socket is not giving up on the speech: the next
                # speech opens a new stream, the missed stretch is repaired.
                self._open = None
                self._state = _State.CLOSED

    def _place(self, turn: FinalTranscript, key: tuple[int, int], timeline: Timeline) -> FinalTurn:
        offset = turn.audio_offset_ms
        words = tuple(
            PlacedWord(
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
