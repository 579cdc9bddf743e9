"""One socket of a streaming STT stream: wait for Begin, pace audio out, read turns in.

:class:`SttConnection` drives a :class:`~recorder.stt.wire.WireSocket` with an
:class:`~recorder.stt.protocol.SttProtocol` until it closes. Server messages
are parsed on the socket's read callback; audio and control messages are
written straight to the transport, one write per message; a task waits only
when a chunk is not due yet or the transport is paused. The
:class:`~recorder.stt.stream.SttStream` around it owns the audio
held audio, the events and the reconnect policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from recorder.stt.events import (
    Closed,
    Event,
    FinalTranscript,
    PartialTranscript,
    ServerError,
    SessionStarted,
    SessionTerminated,
    SocketClosed,
    SocketOpened,
    SpeechStarted,
)
from recorder.stt.pacer import Pacer
from recorder.stt.protocol import State, SttProtocol
from recorder.stt.resend import ResendBuffer, SocketMap
from recorder.stt.settings import RetrySettings
from recorder.stt.wire import WireSocket

__all__ = ["PACING_TICK_S", "SttConnection"]

logger = logging.getLogger("recorder.stt.stream")

#: Audio held back by pacing goes out on this grid of the loop's clock (seconds).
PACING_TICK_S = 0.02


class SttConnection:
    """One open socket: its protocol state, pacer, and a sender task for what must wait.

    Args:
        conn: the upgraded socket.
        proto: a fresh protocol for it (state CONNECTING).
        buffer: the stream's held audio (unsent, and sent but not yet final).
        socket_map: where this socket's audio comes from in the caller's audio.
        pacer: when the next chunk may go; restarted at ``Begin``.
        wake: set by the stream whenever audio or a control frame is queued.
        is_stopping: whether the stream is stopping (send Terminate once drained).
        emit: hands an event to the stream's reader.
        on_begin: called once ``Begin`` arrived.
        bytes_per_second: of the audio.
        retry: the connect and terminate timeouts.
        speech_model: the model asked for (checked against ``Begin``'s configuration).
        name: label for logs.
    """

    def __init__(
        self,
        conn: WireSocket,
        proto: SttProtocol,
        *,
        buffer: ResendBuffer,
        socket_map: SocketMap,
        pacer: Pacer,
        wake: asyncio.Event,
        is_stopping: Callable[[], bool],
        emit: Callable[[Event], None],
        on_begin: Callable[[], None],
        bytes_per_second: int,
        retry: RetrySettings,
        speech_model: str,
        name: str,
    ) -> None:
        self.conn = conn
        self.proto = proto
        self._buffer = buffer
        self._map = socket_map
        self._pacer = pacer
        self._wake = wake
        # On the real clock, audio held back by pacing goes out from a loop timer
        # (pump): no task switch per chunk. A test clock keeps the sender task waiting.
        self._timed = pacer.is_monotonic
        self._timer: asyncio.TimerHandle | None = None
        self._is_stopping = is_stopping
        self._emit = emit
        self._on_begin = on_begin
        self._bps = bytes_per_second
        self._connect_timeout_s = retry.connect_timeout_s
        self._terminate_timeout_s = retry.terminate_timeout_s
        self._speech_model = speech_model
        self._name = name
        self.terminate_sent = False
        self._loop = asyncio.get_running_loop()
        self._began = False
        # What run() waits for, resolved on the socket's own callbacks (Begin, then the
        # close of TCP): one loop iteration per step, no wait() or shield() chain.
        self._step: asyncio.Future[None] = self._loop.create_future()
        self._running = False  # from Begin until run() ends: audio goes out from here
        # Started only when audio must wait (backpressure, a test clock, the tail at a stop).
        self._sender: asyncio.Task[None] | None = None
        self._terminate_timer: asyncio.TimerHandle | None = None
        self._failure: BaseException | None = None
        self.last_server_error: str | None = None
        self._terminated: SessionTerminated | None = None

    def queue_force_endpoint(self) -> None:
        """Queue ``ForceEndpoint`` (ignored unless the socket is open)."""
        if self.proto.state is State.OPEN:
            self.proto.send_force_endpoint()
            self._send_control_frames()

    def queue_update(self, fields: Mapping[str, Any]) -> None:
        """Queue ``UpdateConfiguration`` with wire-named fields (ignored unless open)."""
        if self.proto.state is State.OPEN:
            self.proto.send_update_configuration(**fields)
            self._send_control_frames()

    def _send_control_frames(self) -> None:
        # Written at once: before any audio still queued, as the sender task used to.
        for frame in self.proto.data_to_send():
            if self.conn.is_open:
                self.conn.send_text(str(frame))

    def write_now(self, pos: int, chunk: bytes) -> bool:
        """Write a live chunk straight to the socket when nothing needs waiting for.

        The common case (live audio at real time, nothing queued) then costs no
        task switch, which keeps 200 sockets in one process cheap
        (docs/architecture.md, "Decisions and measurements").
        Anything else (a pacing delay, backpressure, a closing socket) is
        declined and left to the sender task.
        """
        conn, proto = self.conn, self.proto
        if (
            proto.state is not State.OPEN
            or conn.paused
            or not conn.is_open
            or not self._pacer.is_due(proto.audio_bytes_sent)
        ):
            return False
        # _record_sent, inline: this runs for every chunk of every speaker.
        size = len(chunk)
        self._map.add(pos, size)
        proto.audio_written(size)  # the chunk itself is written below
        self._buffer.mark_sent(pos, chunk)
        conn.send_binary(chunk)
        return True

    def kick(self) -> None:
        """Audio was queued, or the stream is stopping: send what is due, or see that it will be.

        On the real clock, due audio goes out at once and a timer sends the
        rest; a stop with nothing queued sends ``Terminate`` at once. Anything
        else (a test clock, backpressure, a closing socket, the queued tail of a
        stop) is left to the sender task, started on first need. Before
        ``Begin`` nothing happens: run() kicks once the socket is open.
        """
        if not self._running:
            self._wake.set()
            return
        if self.pump():
            return
        if (
            self._sender is None
            and self._is_stopping()
            and not self._buffer.pending
            and not self.terminate_sent
            and self.conn.is_open
            and self.proto.state is State.OPEN
        ):
            self._terminate()
            return
        self._wake.set()
        if self._sender is None:
            self._sender = asyncio.create_task(
                self._send_loop(), name=f"stt {self._name} sender {self.proto.socket_index}"
            )

    def pump(self) -> bool:
        """Send the queued audio that is due now; on the real clock, time the rest.

        Returns whether the socket took care of it (sent, or a timer will);
        False leaves it to the sender task (a test clock, backpressure, a
        closing or stopping socket).
        """
        if not self._timed or self._is_stopping() or not self._running:
            return False
        conn, proto, pacer, buffer = self.conn, self.proto, self._pacer, self._buffer
        pending = buffer.pending
        while pending:
            if conn.paused or not conn.is_open or proto.state is not State.OPEN:
                return False
            delay = pacer.delay(proto.audio_bytes_sent)
            if delay > 0:
                if self._timer is None:
                    # On a shared grid: the sockets whose audio waits for pacing are sent
                    # to in one loop iteration per tick, not one wake-up each. Late by
                    # less than a tick is harmless; pacing only forbids early.
                    loop = self._loop
                    when = math.ceil((loop.time() + delay) / PACING_TICK_S) * PACING_TICK_S
                    self._timer = loop.call_at(when, self._on_timer)
                return True
            pos, chunk = buffer.take()
            self._record_sent(pos, chunk)
            conn.send_binary(chunk)
        return True

    def _on_timer(self) -> None:
        self._timer = None
        self.kick()  # sends what is due; else the sender task takes over

    def _record_sent(self, pos: int, chunk: bytes) -> None:
        self._map.add(pos, len(chunk))
        self.proto.audio_written(len(chunk))  # the chunk itself is written by the caller
        self._buffer.mark_sent(pos, chunk)

    async def run(self, config_updates: Mapping[str, Any]) -> tuple[Closed, float | None]:
        """Drive the socket until it closes.

        Args:
            config_updates: ``UpdateConfiguration`` fields to apply right after ``Begin``.

        Returns:
            The ``Closed`` event, and the seconds from ``Begin`` to close (None
            if ``Begin`` never came).
        """
        conn, proto = self.conn, self.proto
        upgraded_at = time.monotonic()
        began_at: float | None = None
        conn.on_close = self._wake_run
        conn.receive(self._on_text)
        if conn.closed.done():
            self._wake_run()
        try:
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    await self._step  # Begin, or the close
            except TimeoutError:
                logger.info("! %s: no begin within %g s", self._name, self._connect_timeout_s)
                conn.abort()
                proto.receive_close(None, "no Begin from the server in time")
                return self._close_events(upgraded_at, None), None
            if self._began:
                began_at = time.monotonic()
                self._pacer.restart()
                if config_updates:
                    self.queue_update(config_updates)
                self._step = self._loop.create_future()  # now the close alone
                if conn.closed.done():
                    self._wake_run()
                self._running = True
                self.kick()  # what was queued while the socket opened
                await self._step
        except asyncio.CancelledError:
            # Aborted (aclose, task group cancelled): still close the cost record.
            conn.abort()
            proto.receive_close(None, "closed by the client")
            self._close_events(upgraded_at, began_at)
            raise
        finally:
            self._running = False
            conn.on_close = None
            for timer in (self._timer, self._terminate_timer):
                if timer is not None:
                    timer.cancel()
            self._timer = self._terminate_timer = None
            sender, self._sender = self._sender, None
            if sender is not None:
                sender.cancel()
                try:
                    await sender
                except asyncio.CancelledError:
                    pass
            if conn.close_code is None:
                conn.abort()  # cancelled: do not linger on the socket
        if self._failure is not None:
            raise self._failure
        proto.receive_close(conn.close_code, conn.close_reason or "")
        lifetime = None if began_at is None else time.monotonic() - began_at
        return self._close_events(upgraded_at, began_at), lifetime

    def _wake_run(self) -> None:
        if not self._step.done():
            self._step.set_result(None)

    def _on_text(self, text: str) -> None:
        """A server message, on the socket's read callback."""
        if self._failure is not None:
            return
        try:
            self.proto.receive_text(text)
            self._dispatch()
        except Exception as exc:  # raised by run(), not lost in the transport's callback
            self._failure = exc
            self.conn.abort()

    def _close_events(self, upgraded_at: float, began_at: float | None) -> Closed:
        proto = self.proto
        closed: Closed | None = None
        for event in proto.events_received():
            if isinstance(event, Closed):
                closed = event
            self._emit(event)
        assert closed is not None
        if began_at is not None:
            terminated = self._terminated
            self._emit(
                SocketClosed(
                    socket_index=proto.socket_index,
                    audio_seconds=proto.audio_seconds_sent,
                    open_seconds=time.monotonic() - upgraded_at,
                    close_code=closed.code,
                    reason=closed.reason,
                    billed_seconds=terminated.session_duration_s if terminated else None,
                )
            )
        logger.info(
            "= %s: socket %d closed, code %s (%s)",
            self._name,
            proto.socket_index,
            closed.code,
            closed.disposition.value,
        )
        return closed

    def _dispatch(self) -> None:
        """Hand on the protocol's events, keeping the resend buffer up to date."""
        proto = self.proto
        for event in proto.events_received():
            if isinstance(event, FinalTranscript):
                if not self._map.is_contiguous:
                    event = self._remap(event)
                if event.end_ms is not None:
                    self._buffer.finalised_up_to(event.end_ms * self._bps // 1000)
            elif isinstance(event, PartialTranscript | SpeechStarted):
                if not self._map.is_contiguous:
                    event = self._remap(event)
            elif isinstance(event, SessionStarted):
                self._emit(event)
                self._emit(
                    SocketOpened(
                        socket_index=proto.socket_index,
                        provider_id=event.id,
                        audio_offset_ms=proto.audio_offset_ms,
                        expires_at=event.expires_at,
                    )
                )
                if event.model is not None and event.model != self._speech_model:
                    logger.warning(
                        "! %s: asked for speech model %s but the server applied %s",
                        self._name,
                        self._speech_model,
                        event.model,
                    )
                self._on_begin()
                self._began = True
                self._wake_run()
                continue
            elif isinstance(event, SessionTerminated):
                self._terminated = event
            elif isinstance(event, ServerError):
                self.last_server_error = event.message
                # The close that follows reports it (once, by the stream's reader).
                logger.info("= %s: stt server error %s: %s", self._name, event.code, event.message)
            self._emit(event)

    def _remap(self, event: Any) -> Any:
        """Correct ``audio_offset_ms`` when this socket's audio has a gap or a pad."""
        start_ms = getattr(event, "timestamp_ms", None)
        if start_ms is None:
            start_ms = event.words[0].start_ms if event.words else 0
        offset = self._map.offset_at(start_ms * self._bps // 1000)
        return dataclasses.replace(event, audio_offset_ms=offset * 1000 // self._bps)

    async def _send_loop(self) -> None:
        """Send the audio that had to wait (pacing, backpressure), then ``Terminate``."""
        conn, proto = self.conn, self.proto
        pending = self._buffer.pending
        while True:
            if not conn.is_open:
                return
            if not pending:
                if self._is_stopping():
                    break
                self._wake.clear()
                await self._wake.wait()
                continue
            if conn.paused:
                await conn.drain()
                continue
            if not self._pacer.is_due(proto.audio_bytes_sent):
                if self._timed and not self._is_stopping() and self.pump():
                    self._wake.clear()  # the timer sends it, or wakes us
                    await self._wake.wait()
                else:
                    await self._pacer.wait(proto.audio_bytes_sent)
                continue
            pos, chunk = self._buffer.take()
            self._record_sent(pos, chunk)
            conn.send_binary(chunk)
        if not self.terminate_sent:
            self._terminate()

    def _terminate(self) -> None:
        """Send ``Terminate``; close ourselves if ``Termination`` does not come in time."""
        self.proto.send_terminate()
        self.terminate_sent = True
        self._send_control_frames()
        # Bounded wait for Termination; the socket closes when the server closes it.
        self._terminate_timer = self._loop.call_later(
            self._terminate_timeout_s, self._terminate_timed_out
        )

    def _terminate_timed_out(self) -> None:
        self._terminate_timer = None
        logger.warning(
            "! %s: no termination within %g s; closing", self._name, self._terminate_timeout_s
        )
        self.conn.close()
