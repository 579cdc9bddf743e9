"""The asyncio driver of one participant's streaming STT: socket, pacing, reconnects.

:class:`SttStream` feeds :class:`~recorder.stt.protocol.SttProtocol`
over a websockets connection, sends audio in 50-1000 ms chunks no faster
than real time, and on a retryable close reconnects with backoff and replays
the audio not yet covered by a final turn (spec assemblyai-streaming-v3.md §6.2).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from websockets.asyncio.client import ClientConnection

from recorder.config import DEFAULT_SPEECH_MODEL
from recorder.errors import ConfigError, RecorderError, SttConnectionError, SttRejected
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
from recorder.stt.protocol import (
    MAX_CHUNK_MS,
    MIN_CHUNK_MS,
    SttProtocol,
    auth_headers,
    build_url,
    bytes_per_second,
)
from recorder.stt.resend import ResendBuffer, SocketMap

__all__ = ["SttStream"]

logger = logging.getLogger(__name__)

# How long to wait for the server's close frame after ours before dropping TCP.
_CLOSE_TIMEOUT_S = 1.0


class SttStream:
    """One participant's transcription, over as many sockets as it takes.

    Call :meth:`start`, then :meth:`send` audio (any sizes; it is re-chunked),
    read :meth:`events`, and finish with :meth:`stop`. Event timestamps are
    relative to their socket; each carries ``socket_index`` and
    ``audio_offset_ms``, the caller audio position (ms of audio given to
    :meth:`send` since the session began) of that socket's offset 0.

    Pacing is per socket: the audio on a socket never runs ahead of the time
    since its ``Begin`` (plus one chunk, plus ``max_lead_s``). So after a
    reconnect the replayed audio and the backlog from the outage are not
    caught up: turns arrive that much later for the rest of that socket.
    Read :meth:`events` from one task; finals are never dropped, so a
    reader that stops reading lets them pile up (partials are capped).

    Args:
        url: the ``/v3/ws`` endpoint (or an emulator's).
        api_key: the API key, sent as ``Authorization`` (hidden from repr, never logged).
        token: a temporary token instead of ``api_key``, sent as ``?token=``.
            A token opens one session only, so reconnecting needs ``api_key``.
        speech_model: always sent (§0).
        sample_rate_hz: of the audio given to :meth:`send`.
        encoding: ``pcm_s16le`` or ``pcm_mulaw``.
        keyterms: keyterms prompt (≤ 100 terms).
        prompt: instruction prompt.
        inactivity_timeout_s: server-side idle close (5-3600 s), or None.
        language_detection: ask for ``language_code`` on finals.
        min_turn_silence_ms: see spec §2.1.
        max_turn_silence_ms: see spec §2.1.
        chunk_ms: size of the audio messages sent (50-1000; 100 is one send per 100 ms).
        connect_timeout_s: bound on the upgrade and on waiting for ``Begin``.
        terminate_timeout_s: bound on waiting for ``Termination`` after ``Terminate`` (§8.4).
        backoff_initial_s: first reconnect delay.
        backoff_max_s: largest reconnect delay.
        give_up_s: stop reconnecting after this long without a working socket.
        quick_failure_s: a socket that dies sooner than this after ``Begin`` is a quick failure.
        quick_failure_limit: this many quick failures in a row: give up.
        replay_max_s: most audio kept for replay since the end of the last final turn.
        backlog_max_s: most unsent audio kept while no socket is up; older audio is dropped
            (reported as :class:`AudioDropped`).
        realtime_factor: audio clock speed; 1.0 in production, higher in tests.
        max_lead_s: how far audio may run ahead of real time on a socket; 0 means
            at most one chunk ahead (the server closes 3007 when sent too fast, §8.2).
        name: a label for logs, e.g. ``"uid 1234"``.
    """

    def __init__(
        self,
        *,
        url: str,
        api_key: str | None = None,
        token: str | None = None,
        speech_model: str = DEFAULT_SPEECH_MODEL,
        sample_rate_hz: int = 16000,
        encoding: str = "pcm_s16le",
        keyterms: Iterable[str] = (),
        prompt: str | None = None,
        inactivity_timeout_s: int | None = None,
        language_detection: bool = True,
        min_turn_silence_ms: int | None = None,
        max_turn_silence_ms: int | None = None,
        chunk_ms: int = 100,
        connect_timeout_s: float = 10.0,
        terminate_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        give_up_s: float = 60.0,
        quick_failure_s: float = 5.0,
        quick_failure_limit: int = 3,
        replay_max_s: float = 15.0,
        backlog_max_s: float = 60.0,
        realtime_factor: float = 1.0,
        max_lead_s: float = 0.0,
        name: str = "stt",
    ) -> None:
        if (api_key is None) == (token is None):
            raise ConfigError("give the stt session exactly one of an api key or a token")
        if not MIN_CHUNK_MS <= chunk_ms <= MAX_CHUNK_MS:
            raise ConfigError(f"stt chunk of {chunk_ms} ms is outside 50-1000 ms")
        if realtime_factor <= 0:
            raise ConfigError("stt realtime factor must be positive")
        self._url = build_url(
            url,
            speech_model=speech_model,
            sample_rate_hz=sample_rate_hz,
            encoding=encoding,
            keyterms=keyterms,
            prompt=prompt,
            inactivity_timeout_s=inactivity_timeout_s,
            language_detection=language_detection,
            min_turn_silence_ms=min_turn_silence_ms,
            max_turn_silence_ms=max_turn_silence_ms,
            token=token,
        )
        self._headers = auth_headers(api_key) if api_key is not None else {}
        self._has_token = token is not None
        self.speech_model = speech_model
        self.name = name
        self._sample_rate_hz = sample_rate_hz
        self._encoding = encoding
        self._inactivity_timeout_set = inactivity_timeout_s is not None
        self._bps = bytes_per_second(sample_rate_hz, encoding)
        sample_bytes = 2 if encoding == "pcm_s16le" else 1
        self._chunker = Chunker(
            chunk_bytes=self._bps * chunk_ms // 1000,
            min_bytes=self._bps * MIN_CHUNK_MS // 1000,
            max_bytes=self._bps * MAX_CHUNK_MS // 1000,
            sample_bytes=sample_bytes,
            silence=0 if encoding == "pcm_s16le" else 0xFF,
        )
        self._connect_timeout_s = connect_timeout_s
        self._terminate_timeout_s = terminate_timeout_s
        self._finals_emitted = 0
        self._retry = RetryBudget(
            initial_s=backoff_initial_s,
            max_s=backoff_max_s,
            give_up_s=give_up_s,
            quick_failure_s=quick_failure_s,
            quick_failure_limit=quick_failure_limit,
        )
        self._factor = realtime_factor
        self._max_lead_s = max_lead_s

        # Audio bookkeeping, in caller byte positions (bytes given to send()).
        self._chunked_pos = 0  # caller position after the last chunk made
        self._buffer = ResendBuffer(
            sample_bytes=sample_bytes,
            min_bytes=self._chunker.min_bytes,
            max_bytes=self._chunker.max_bytes,
            silence=self._chunker.silence,
            replay_max_bytes=int(replay_max_s * self._bps),
            backlog_max_bytes=int(backlog_max_s * self._bps),
        )
        self._pending = self._buffer.pending  # the sender's queue, shared for speed
        self._config_updates: dict[str, Any] = {}  # re-applied on every new socket
        self.dropped_bytes = 0

        # One socket at a time.
        self._link: SttConnection | None = None
        self._socket_count = 0

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

    @property
    def audio_ms(self) -> int:
        """Caller audio position: ms of audio given to :meth:`send` so far (chunked)."""
        return self._chunked_pos * 1000 // self._bps

    @property
    def socket_count(self) -> int:
        """How many sockets have been opened (0 before the first ``Begin``)."""
        return self._socket_count

    async def start(self) -> None:
        """Open the first socket and wait for ``Begin``.

        Raises:
            SttRejected: the server refused us for good (bad key, bad URL).
            SttConnectionError: no socket could be opened within ``give_up_s``.
        """
        if self._runner is not None:
            raise RuntimeError("stt session already started")
        loop = asyncio.get_running_loop()
        self._opened = loop.create_future()
        self._runner = asyncio.create_task(self._run(), name=f"stt {self.name}")
        try:
            await asyncio.wait({self._opened, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self.aclose()
            raise
        if not self._opened.done():
            self._raise_error()

    def send(self, pcm: bytes) -> None:
        """Queue audio (any size; re-chunked). Never blocks; sending is paced to real time.

        Call it on the event loop's thread (a transport hands chunks over with
        ``call_soon_threadsafe``). A live chunk is written to the socket at once
        when nothing is queued before it; otherwise the sender task sends it.

        Raises:
            SttRejected: the session failed for good earlier.
            SttConnectionError: the session gave up reconnecting earlier.
        """
        if self.error is not None:
            self._raise_error()
        if self._stopping:
            raise RuntimeError("stt session is stopping; no more audio")
        chunks = self._chunker.push(pcm)
        if not chunks:
            return
        link = self._link
        for chunk in chunks:
            pos = self._chunked_pos
            self._chunked_pos += len(chunk)
            if self._pending or link is None or not link.write_now(pos, chunk):
                dropped = self._buffer.queue(pos, chunk)
                if dropped is not None:
                    self._report_dropped(*dropped)
        if self._pending:
            self._wake.set()

    def force_endpoint(self) -> None:
        """End the current turn now (§3.3); ignored while no socket is open."""
        if self._link is not None:
            self._link.queue_control("force_endpoint")

    def update_configuration(self, **fields: Any) -> None:
        """Change settings mid-session with wire names, e.g. ``keyterms_prompt=[...]`` (§3.2).

        The update is also applied to every later socket of this session.
        """
        self._config_updates.update(fields)
        if self._link is not None:
            self._link.queue_control("update", fields)

    def keepalive(self) -> None:
        """Reset the server's inactivity timer (§3.4); ignored while no socket is open."""
        if self._link is not None:
            self._link.queue_control("keepalive")

    async def events(self) -> AsyncIterator[Event]:
        """Yield events until the session ends.

        Raises:
            SttRejected: the session failed for good (after the events before it).
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
        # Unsent audio beyond backlog_max_s is lost: say so (STYLE.md §3.2), once per gap.
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
            logger.warning("! %s: stt session failed: %s", self.name, exc)
        finally:
            self._finish()

    async def _run_sockets(self) -> None:
        loop = asyncio.get_running_loop()
        problem = ""
        first = True
        while True:
            if not first and self._stopping and not self._buffer.has_unfinalised:
                return
            first = False
            if self._has_token and self._socket_count > 0:
                raise SttRejected(
                    "a temporary token opens one session only and this one was used",
                    hint="give the recorder an api key so it can reconnect",
                )
            try:
                conn = await open_socket(
                    self._url,
                    self._headers,
                    open_timeout_s=self._connect_timeout_s,
                    close_timeout_s=_CLOSE_TIMEOUT_S,
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
                if self._stopping and (disposition is Disposition.DONE or terminate_sent):
                    return
                if disposition is Disposition.FATAL:
                    message = last_error or closed.reason or "no reason given"
                    raise SttRejected(message, code=closed.code, hint=closed.hint)
                if disposition is Disposition.DONE:
                    # Termination we did not ask for (§5.1 rule 5 says it never happens):
                    # the caller is still talking, so treat it as a drop.
                    logger.warning("! %s: the server ended the session unasked", self.name)
                    disposition = Disposition.RETRY
                if lifetime is not None:
                    if disposition is Disposition.RETRY:
                        self._retry.socket_closed(lifetime, problem, made_progress=made_progress)
                    else:
                        self._retry.socket_opened()
                if disposition is Disposition.REOPEN:
                    continue  # 3008: the session cap; a new one at once (§6.2)
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

    async def _run_socket(
        self, conn: ClientConnection
    ) -> tuple[Closed, float | None, bool, str | None]:
        """Drive one socket until it closes.

        Returns:
            Its Closed event, its lifetime after Begin (None without Begin), whether
            Terminate was sent, and the last ``Error`` frame's text.
        """
        # Replay: the new socket starts with the oldest unfinalised audio (§6.2).
        self._buffer.rewind()
        start_pos = self._pending[0][0] if self._pending else self._chunked_pos
        proto = SttProtocol(
            sample_rate_hz=self._sample_rate_hz,
            encoding=self._encoding,
            inactivity_timeout_set=self._inactivity_timeout_set,
            socket_index=self._socket_count,
            audio_offset_ms=start_pos * 1000 // self._bps,
        )
        link = SttConnection(
            conn,
            proto,
            buffer=self._buffer,
            socket_map=SocketMap(start_pos),
            wake=self._wake,
            is_stopping=lambda: self._stopping,
            emit=self._emit,
            on_begin=self._on_begin,
            bytes_per_second=self._bps,
            realtime_factor=self._factor,
            max_lead_s=self._max_lead_s,
            connect_timeout_s=self._connect_timeout_s,
            terminate_timeout_s=self._terminate_timeout_s,
            speech_model=self.speech_model,
            name=self.name,
        )
        self._link = link
        try:
            closed, lifetime = await link.run(self._config_updates)
        finally:
            self._link = None
        return closed, lifetime, link.terminate_sent, link.last_server_error

    def _on_begin(self) -> None:
        self._socket_count += 1
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(None)
