"""The asyncio driver of one participant's streaming STT: sockets, pacing, reconnects.

:class:`SttStream` feeds :class:`~recorder.stt.protocol.SttProtocol` over a
websockets connection, sends audio in 50-1000 ms chunks no faster than real
time, and on a retryable close reconnects with backoff and resends the audio
not yet covered by a final turn (docs/providers.md, "Streaming: close codes").

The stream is the one owner of held audio: its :class:`ResendBuffer` holds
what is unsent (given to :meth:`SttStream.send` before :meth:`SttStream.start`,
while a socket opens, during an outage, or held back by pacing) under one cap,
``BufferSettings.backlog_max_s``, and what was sent but is not final yet, for
resending. The pipeline hands every chunk over as soon as it wants it
transcribed and keeps only its pre-roll. :func:`stream_factory` makes the
streams a recording opens, one per participant.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from recorder.audio import SPEECH_DBFS, level_dbfs
from recorder.errors import RecorderError, SttConnectionError, SttRejected
from recorder.stt.backoff import RetryBudget
from recorder.stt.chunker import Chunker
from recorder.stt.connect import open_socket, redact_url
from recorder.stt.connection import SttConnection
from recorder.stt.events import (
    AudioDropped,
    Closed,
    Disposition,
    Event,
    FinalTranscript,
    PartialTranscript,
)
from recorder.stt.pacer import MONOTONIC_CLOCK, Pacer, PacingClock
from recorder.stt.protocol import (
    MAX_CHUNK_MS,
    MIN_CHUNK_MS,
    SttProtocol,
    auth_headers,
    bytes_per_second,
    is_rate_refusal,
)
from recorder.stt.resend import ResendBuffer, SocketMap
from recorder.stt.settings import (
    DEFAULT_BUFFERS,
    DEFAULT_PACING,
    DEFAULT_RETRY,
    BufferSettings,
    ConnectSettings,
    PacingSettings,
    RetrySettings,
)
from recorder.stt.wire import WireSocket

__all__ = ["LIVE_PACING", "SessionGate", "SttStream", "stream_factory"]

logger = logging.getLogger(__name__)

# How long to wait for the server's close frame after ours before dropping TCP.
_CLOSE_TIMEOUT_S = 1.0

#: Pacing of a live recording's streams. A socket opens with the pipeline's 400 ms
#: pre-roll and the audio that arrived while it connected (a few hundred ms on the
#: real service), which go out at once; without a lead every later chunk would queue
#: behind them for the socket's whole life (latency, billed seconds, since the socket
#: closes only once a final covers the speech, and a timer per chunk). One second is
#: far below any lead known to trip the limit (docs/architecture.md, "Decisions and
#: measurements").
LIVE_PACING = PacingSettings(max_lead_s=1.0)


class SessionGate(Protocol):
    """The meeting's new-session budget, as a stream sees it (``recorder.limiter.SessionBudget``).

    The caller spends a session for a stream's first socket; the stream spends one
    for every later attempt (a reconnect, a retry after a refusal) and reports how
    each went, so the budget learns the account's rate.
    """

    async def acquire(self) -> None:
        """Wait for a session, then spend it."""

    def opened(self) -> None:
        """A socket opened cleanly (``Begin``)."""

    def refused(self) -> None:
        """A socket was refused for the new-session rate (3009)."""


class SttStream:
    """One participant's transcription, over as many sockets as it takes.

    :meth:`send` audio (any sizes; it is re-chunked), :meth:`start` (audio sent
    before it is held and goes out first), read :meth:`events`, and finish with
    :meth:`stop`. Event timestamps are relative to their socket; each carries
    ``socket_index`` and ``audio_offset_ms``, the caller audio position (ms of
    audio given to :meth:`send` since the stream began) of that socket's offset 0.

    Pacing is per socket: the audio on a socket never runs ahead of the time
    since its ``Begin`` (plus one chunk, plus ``pacing.max_lead_s``). So after a
    reconnect the resent audio and the backlog from the outage are not
    caught up: turns arrive that much later for the rest of that socket.
    Read :meth:`events` from one task; finals are never dropped, so a
    reader that stops reading lets them pile up (partials are capped).

    Args:
        connect: where to connect and how to recognise.
        pacing: chunk size and pacing.
        retry: timeouts and the reconnect policy.
        buffers: how much audio is held, unsent and for resending.
        name: a label for logs, e.g. ``"uid 1234"``.
        clock: the pacer's clock (tests may drive it by hand).
        gate: the meeting's session budget; every socket after the first waits for it.
    """

    def __init__(
        self,
        connect: ConnectSettings,
        *,
        pacing: PacingSettings = DEFAULT_PACING,
        retry: RetrySettings = DEFAULT_RETRY,
        buffers: BufferSettings = DEFAULT_BUFFERS,
        name: str = "stt",
        clock: PacingClock = MONOTONIC_CLOCK,
        gate: SessionGate | None = None,
    ) -> None:
        self._gate = gate
        self._url = connect.socket_url()
        self._headers = auth_headers(connect.api_key) if connect.api_key is not None else {}
        self._has_token = connect.token is not None
        self.speech_model = connect.speech_model
        self.name = name
        self._sample_rate_hz = connect.sample_rate_hz
        self._encoding = connect.encoding
        self._inactivity_timeout_set = connect.inactivity_timeout_s is not None
        self._bps = bytes_per_second(connect.sample_rate_hz, connect.encoding)
        sample_bytes = 2 if connect.encoding == "pcm_s16le" else 1
        self._chunker = Chunker(
            chunk_bytes=self._bps * pacing.chunk_ms // 1000,
            min_bytes=self._bps * MIN_CHUNK_MS // 1000,
            max_bytes=self._bps * MAX_CHUNK_MS // 1000,
            sample_bytes=sample_bytes,
            silence=0 if connect.encoding == "pcm_s16le" else 0xFF,
        )
        self._pacing = pacing
        self._clock = clock
        self._retry_settings = retry
        self._finals_emitted = 0
        self._retry = RetryBudget(
            initial_s=retry.backoff_initial_s,
            max_s=retry.backoff_max_s,
            give_up_s=retry.give_up_s,
            quick_failure_s=retry.quick_failure_s,
            quick_failure_limit=retry.quick_failure_limit,
        )

        # Audio bookkeeping, in caller byte positions (bytes given to send()).
        self._chunked_pos = 0  # caller position after the last chunk made
        self._buffer = ResendBuffer(
            sample_bytes=sample_bytes,
            min_bytes=self._chunker.min_bytes,
            max_bytes=self._chunker.max_bytes,
            silence=self._chunker.silence,
            resend_max_bytes=int(buffers.resend_max_s * self._bps),
            backlog_max_bytes=int(buffers.backlog_max_s * self._bps),
        )
        self._pending = self._buffer.pending  # the sender's queue, shared for speed
        self._catch_up_max_bytes = (
            None if buffers.catch_up_max_s is None else int(buffers.catch_up_max_s * self._bps)
        )
        self._config_updates: dict[str, Any] = {}  # re-applied on every new socket
        self.dropped_bytes = 0

        # One socket at a time.
        self._link: SttConnection | None = None
        self._sockets_opened = 0
        self._quick_reopens = 0  # 3008s in a row that came at once (see _run_sockets)

        self._wake = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._events: collections.deque[Event] = collections.deque()
        self._events_ready = asyncio.Event()
        self._max_partials_queued = 200
        self._runner: asyncio.Task[None] | None = None
        self._opened: asyncio.Future[None] | None = None
        self._stopping = False
        self._finished = False
        self.error: RecorderError | None = None

    def __repr__(self) -> str:
        return (
            f"SttStream(url={redact_url(self._url)!r}, "
            f"speech_model={self.speech_model!r}, name={self.name!r})"
        )

    # -- public API ----------------------------------------------------------

    async def start(self) -> None:
        """Open the first socket and wait for ``Begin``.

        Raises:
            SttRejected: the server refused us for good (bad key, bad URL).
            SttConnectionError: no socket could be opened within ``retry.give_up_s``.
        """
        if self._runner is not None:
            raise RuntimeError("stt stream already started")
        loop = asyncio.get_running_loop()
        self._opened = loop.create_future()
        self._runner = asyncio.create_task(self._run(), name=f"stt {self.name}")
        try:
            await self._opened  # resolved at Begin, or as the runner ends without one
        except asyncio.CancelledError:
            await self.aclose()
            raise
        if self._sockets_opened == 0:
            self._raise_error()

    def send(self, pcm: bytes) -> None:
        """Queue audio (any size; re-chunked). Never blocks; sending is paced to real time.

        Call it on the event loop's thread (a transport hands chunks over with
        ``call_soon_threadsafe``), before :meth:`start` too: that audio is held
        and is the first a socket gets. A live chunk is written to the socket at
        once when nothing is queued before it; otherwise the sender task sends
        it. Unsent audio beyond ``backlog_max_s`` is dropped, oldest first, and
        reported as :class:`~recorder.stt.events.AudioDropped`.

        Raises:
            SttRejected: the stream failed for good earlier.
            SttConnectionError: the stream gave up reconnecting earlier.
        """
        if self.error is not None:
            self._raise_error()
        if self._stopping:
            raise RuntimeError("stt stream is stopping; no more audio")
        chunks = self._chunker.push(pcm)
        if not chunks:
            return
        link, pending = self._link, self._pending
        pos = self._chunked_pos
        for chunk in chunks:
            if pending or link is None or not link.write_now(pos, chunk):
                dropped = self._buffer.queue(pos, chunk)
                if dropped is not None:
                    self._report_dropped(*dropped)
            pos += len(chunk)
        self._chunked_pos = pos
        if pending:
            if link is None:
                self._wake.set()
            else:
                link.kick()

    def force_endpoint(self) -> None:
        """End the current turn now (``ForceEndpoint``); ignored while no socket is open."""
        if self._link is not None:
            self._link.queue_force_endpoint()

    def update_configuration(self, **fields: Any) -> None:
        """Change settings mid-stream with wire names, e.g. ``keyterms_prompt=[...]``.

        Sent as ``UpdateConfiguration`` (docs/providers.md, "Streaming: messages"),
        and again on every later socket of this stream.
        """
        self._config_updates.update(fields)
        if self._link is not None:
            self._link.queue_update(fields)

    async def events(self) -> AsyncIterator[Event]:
        """Yield events until the stream ends.

        Raises:
            SttRejected: the stream failed for good (after the events before it).
            SttConnectionError: reconnecting was given up.
        """
        while True:
            if self._events:
                yield self._events.popleft()
                continue
            if self._finished:
                break
            self._events_ready.clear()
            await self._events_ready.wait()
        if self.error is not None:
            self._raise_error()

    async def stop(self) -> None:
        """Send the tail and ``Terminate``, wait (bounded) for ``Termination``, close.

        Failures are not raised here; :meth:`events` (or :attr:`error`) reports them.
        """
        if self._runner is None:
            self._finish()
            return
        if not self._stopping:
            self._stopping = True
            self._stop_requested.set()
            tail = self._chunker.flush()
            if tail is not None:
                self._buffer.queue(self._chunked_pos, tail)
                self._chunked_pos += len(tail)
            self._wake.set()
            if self._link is not None:
                self._link.kick()
        try:
            await asyncio.shield(self._runner)
        except RecorderError:
            pass

    async def aclose(self) -> None:
        """Abort at once without flushing (cancellation path)."""
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            try:
                await self._runner
            except (asyncio.CancelledError, RecorderError):
                pass
        self._finish()

    # -- internals: caller side ----------------------------------------------

    def _raise_error(self) -> None:
        assert self.error is not None
        raise self.error

    def _report_dropped(self, pos: int, size: int) -> None:
        # Unsent audio beyond backlog_max_s is lost: say so, once per gap, never silently.
        self.dropped_bytes += size
        start_ms, ms = pos * 1000 // self._bps, size * 1000 // self._bps
        last = self._events[-1] if self._events else None
        if isinstance(last, AudioDropped) and last.audio_offset_ms + last.duration_ms == start_ms:
            self._events[-1] = AudioDropped(last.audio_offset_ms, last.duration_ms + ms)
            return
        logger.warning("! %s: stt backlog full, dropping audio from %d ms", self.name, start_ms)
        self._emit(AudioDropped(start_ms, ms))

    def _emit(self, event: Event) -> None:
        if isinstance(event, FinalTranscript):
            self._finals_emitted += 1
        if isinstance(event, PartialTranscript) and len(self._events) >= self._max_partials_queued:
            return  # partials are live-only; a slow reader loses some, never finals
        self._events.append(event)
        self._events_ready.set()

    def _finish(self) -> None:
        self._finished = True
        self._events_ready.set()

    # -- internals: the runner -----------------------------------------------

    async def _run(self) -> None:
        try:
            await self._run_sockets()
        except RecorderError as exc:
            self.error = exc
            # Raised to the stream's reader, which reports it once; this is for -v.
            logger.info("= %s: stt stream failed: %s", self.name, exc)
        finally:
            self._finish()
            if self._opened is not None and not self._opened.done():
                self._opened.set_result(None)  # start() raises the error

    async def _run_sockets(self) -> None:
        loop = asyncio.get_running_loop()
        problem = ""
        first = True
        while True:
            if not first and self._stopping and not self._buffer.has_unfinalised:
                return
            if not first and self._gate is not None:
                await self._gate.acquire()
            first = False
            if self._has_token and self._sockets_opened > 0:
                raise SttRejected(
                    "a temporary token opens one session only and this one was used",
                    hint="give the recorder an api key so it can reconnect",
                )
            try:
                conn = await open_socket(
                    self._url,
                    self._headers,
                    open_timeout_s=self._retry_settings.connect_timeout_s,
                    close_timeout_s=_CLOSE_TIMEOUT_S,
                    ping_interval_s=self._retry_settings.ping_interval_s,
                    ping_timeout_s=self._retry_settings.ping_timeout_s,
                )
            except SttConnectionError as exc:
                problem = str(exc)
                logger.info("! %s: %s", self.name, exc)
            else:
                finals_before = self._finals_emitted
                closed, lifetime, terminate_sent, last_error = await self._run_socket(conn)
                made_progress = self._finals_emitted > finals_before
                disposition = closed.disposition
                problem = f"close code {closed.code}: {closed.reason or 'no reason'}"
                if (
                    lifetime is None
                    and self._gate is not None
                    and is_rate_refusal(closed.code, closed.reason)
                ):
                    self._gate.refused()
                if self._stopping and (disposition is Disposition.DONE or terminate_sent):
                    return
                if disposition is Disposition.FATAL:
                    message = last_error or closed.reason or "no reason given"
                    raise SttRejected(message, code=closed.code, hint=closed.hint)
                if disposition is Disposition.DONE:
                    # Termination we did not ask for (Termination comes only in reply to
                    # Terminate, docs/providers.md, "Streaming: messages"): the caller
                    # is still talking, so treat it as a drop.
                    logger.warning("! %s: the server ended the socket unasked", self.name)
                    disposition = Disposition.RETRY
                if disposition is Disposition.REOPEN:
                    # 3008 caps a session at hours: sockets that end at once with nothing
                    # transcribed, again and again, are failing, and reopening them at once
                    # forever would spend a session each time; the quick-failure guard
                    # decides after the first.
                    is_quick = lifetime is not None and (
                        lifetime < self._retry_settings.quick_failure_s and not made_progress
                    )
                    self._quick_reopens = self._quick_reopens + 1 if is_quick else 0
                    if self._quick_reopens > 1:
                        disposition = Disposition.RETRY
                if lifetime is not None:
                    if disposition is Disposition.RETRY:
                        self._retry.socket_closed(lifetime, problem, made_progress=made_progress)
                    else:
                        self._retry.socket_opened()
                if disposition is Disposition.REOPEN:
                    continue  # 3008: the socket's duration cap; a new one at once
                if disposition is Disposition.REOPEN_ON_AUDIO:
                    # The server saw no audio for inactivity_timeout: nothing is in flight.
                    self._buffer.forget_sent()
                    while not self._pending and not self._stopping:
                        self._wake.clear()
                        await self._wake.wait()
                    continue
            delay = self._retry.next_delay(loop.time(), problem)
            logger.info("= %s: reconnecting in %.2f s (%s)", self.name, delay, problem)
            # stop() cuts the wait short: with nothing left to send there is no reconnect.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop_requested.wait()

    async def _run_socket(self, conn: WireSocket) -> tuple[Closed, float | None, bool, str | None]:
        """Drive one socket until it closes.

        Returns:
            Its Closed event, its lifetime after Begin (None without Begin), whether
            Terminate was sent, and the last ``Error`` frame's text.
        """
        # Resend: the new socket starts with the oldest audio no final covers yet;
        # what fell out of the resend window unfinalised is lost to this stream.
        for pos, size in self._buffer.take_forgotten():
            self._report_dropped(pos, size)
        self._buffer.rewind()
        if self._catch_up_max_bytes is not None and not self._stopping:
            # Live resumes at the present; what is older goes to the caller as dropped.
            for pos, size in self._buffer.trim_backlog(
                self._catch_up_max_bytes,
                starts_quiet=self._starts_quiet if self._encoding == "pcm_s16le" else None,
                extra_max_bytes=self._bps * 2,
            ):
                self._report_dropped(pos, size)
        start_pos = self._pending[0][0] if self._pending else self._chunked_pos
        proto = SttProtocol(
            sample_rate_hz=self._sample_rate_hz,
            encoding=self._encoding,
            inactivity_timeout_set=self._inactivity_timeout_set,
            socket_index=self._sockets_opened,
            audio_offset_ms=start_pos * 1000 // self._bps,
        )
        link = SttConnection(
            conn,
            proto,
            buffer=self._buffer,
            socket_map=SocketMap(start_pos),
            pacer=Pacer(
                bytes_per_second=self._bps,
                realtime_factor=self._pacing.realtime_factor,
                max_lead_s=self._pacing.max_lead_s,
                clock=self._clock,
            ),
            wake=self._wake,
            is_stopping=lambda: self._stopping,
            emit=self._emit,
            on_begin=self._on_begin,
            bytes_per_second=self._bps,
            retry=self._retry_settings,
            speech_model=self.speech_model,
            name=self.name,
        )
        self._link = link
        try:
            closed, lifetime = await link.run(self._config_updates)
        finally:
            self._link = None
        return closed, lifetime, link.terminate_sent, link.last_server_error

    def _starts_quiet(self, chunk: bytes) -> bool:
        """Whether audio starts below speech level (its first 20 ms), i.e. between words."""
        return level_dbfs(chunk[: self._bps // 50]) < SPEECH_DBFS

    def _on_begin(self) -> None:
        self._sockets_opened += 1
        if self._gate is not None:
            self._gate.opened()
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(None)


def stream_factory(
    connect: ConnectSettings,
    *,
    realtime_factor: float = 1.0,
    retry: RetrySettings = DEFAULT_RETRY,
    buffers: BufferSettings = DEFAULT_BUFFERS,
    gate: SessionGate | None = None,
) -> Callable[[int], SttStream]:
    """Make the function a recording calls to open a new stream for a participant (by uid).

    The streams pace as :data:`LIVE_PACING` says, at ``realtime_factor``.

    Args:
        connect: where to connect and how to recognise, for every participant.
        realtime_factor: audio clock speed; 1.0 in production, higher in tests.
        retry: timeouts and the reconnect policy.
        buffers: how much audio each stream holds.
        gate: the meeting's session budget, for every socket after a stream's first.

    Raises:
        ConfigError: a realtime factor that is not positive.
    """
    pacing = dataclasses.replace(LIVE_PACING, realtime_factor=realtime_factor)

    def open_stream(uid: int) -> SttStream:
        return SttStream(
            connect, pacing=pacing, retry=retry, buffers=buffers, name=f"uid {uid}", gate=gate
        )

    return open_stream
