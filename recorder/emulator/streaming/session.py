"""One emulated Universal-Streaming v3 socket: the asyncio driver around the turn engine.

It authenticates, sends ``Begin``, enforces the chunk-size, pacing, inactivity
and session-cap rules with their close codes (docs/providers.md, "Streaming: audio"
and "Streaming: close codes"), answers the control messages ("Streaming:
messages") and fires injected faults. Turn decisions live in
:mod:`recorder.emulator.streaming.engine`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from recorder.clock import Clock
from recorder.emulator.faults import Fault, FaultKind
from recorder.emulator.streaming.engine import Recognizer, TurnEngine
from recorder.emulator.streaming.params import (
    DOCUMENTED_REASONS,
    MAX_MESSAGE_BYTES,
    ParameterError,
    SessionParams,
    apply_update,
    close_reason,
)
from recorder.emulator.streaming.records import ReceivedFrame, SessionRecord, StreamingBehaviour

__all__ = ["Admission", "EmulatedSession", "mulaw_to_pcm16"]

log = logging.getLogger("recorder.emulator")

_MIN_CHUNK_MS = 50
_MAX_CHUNK_MS = 1000


def _mulaw_table() -> np.ndarray[Any, np.dtype[np.int16]]:
    # ITU-T G.711 mu-law expansion, as a 256-entry lookup table.
    code = ~np.arange(256, dtype=np.uint8)
    exponent = (code >> 4) & 0x07
    mantissa = (code & 0x0F).astype(np.int32)
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(code & 0x80, -magnitude, magnitude).astype("<i2")


_MULAW = _mulaw_table()


def mulaw_to_pcm16(data: bytes) -> bytes:
    """Expand 8-bit mu-law audio to PCM16LE."""
    return _MULAW[np.frombuffer(data, dtype=np.uint8)].tobytes()


@dataclass(frozen=True, slots=True)
class Admission:
    """The emulator's verdict on a new socket, before ``Begin``.

    Attributes:
        error: the 1008/3009 close text, or None when admitted.
        code: the close code when refused.
        session_cap_s: the session cap (a token may lower it).
    """

    error: str | None = None
    code: int = 1008
    session_cap_s: float = 10800.0


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    text: str
    reason: str | None = None


class _Stall:
    pass


class _Terminated:
    pass


class _ClientGone:
    pass


_Outcome = _Close | _Stall | _Terminated | _ClientGone
_CLOSE_1000 = object()
# Closes that carry no Error frame: normal, size limit (like a protocol-level limit), internal.
_NO_ERROR_FRAME = frozenset({1000, 1009, 1011})
_MALFORMED = '{"type": "Turn", "transcript": '


class EmulatedSession:
    """Drives one accepted WebSocket from upgrade to close.

    Args:
        connection: the accepted server connection.
        record: where to record what happens.
        params: the parsed query parameters.
        admission: the auth and rate-limit verdict.
        faults: faults for this connection.
        behaviour: emulator switches.
        realtime_factor: how much faster than real time audio may arrive.
        clock: the clock for the session cap, inactivity and billing.
        recognizer: the speech decoder for this socket.
    """

    def __init__(
        self,
        connection: ServerConnection,
        record: SessionRecord,
        *,
        params: SessionParams | ParameterError,
        admission: Admission,
        faults: tuple[Fault, ...],
        behaviour: StreamingBehaviour,
        realtime_factor: float,
        clock: Clock,
        recognizer: Callable[[int], Recognizer],
    ) -> None:
        self._ws = connection
        self._record = record
        self._params = params
        self._admission = admission
        self._faults = faults
        self._behaviour = behaviour
        self._factor = realtime_factor
        self._is_paced = not math.isinf(realtime_factor)
        self._loop_time = asyncio.get_running_loop().time
        self._clock = clock
        self._recognizer = recognizer
        self._outbox: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self._last_activity = clock.monotonic()
        self._begin_loop_time = 0.0
        self._chunks = 0
        self._short_tail: bytes | None = None
        self._odd_byte = b""
        self._engine: TurnEngine | None = None

    async def run(self) -> None:
        """Serve the socket until it closes; fill in the record."""
        try:
            outcome = await self._open()
            if outcome is None:
                outcome = await self._serve()
            await self._finish(outcome)
        finally:
            await self._ws.wait_closed()
            record = self._record
            record.close_code = self._ws.close_code
            record.close_reason = self._ws.close_reason or ""
            record.billed_seconds = self._clock.monotonic() - record.opened_at
            record.closed.set()

    async def _open(self) -> _Outcome | None:
        for fault in self._faults:
            if not fault.is_immediate or fault.kind is FaultKind.REJECT_HTTP:
                continue
            if fault.kind is FaultKind.MALFORMED_JSON:
                await self._ws.send(_MALFORMED)  # before Begin, then carry on
                continue
            return self._fault_outcome(fault)
        if self._admission.error is not None:
            return _Close(self._admission.code, self._admission.error)
        params = self._params
        if isinstance(params, ParameterError):
            return _Close(3006, str(params))
        self._record.params = params
        model = params.speech_model
        if model not in self._behaviour.accepted_models:
            if self._behaviour.reject_unknown_model:
                return _Close(3006, "Invalid Message: speech_model")
        self._engine = TurnEngine(
            params, self._recognizer(params.sample_rate_hz), self._behaviour.engine
        )
        session_id = str(uuid.uuid4())
        self._record.session_id = session_id
        begin = {
            "type": "Begin",
            "id": session_id,
            "expires_at": int(self._clock.time() + self._admission.session_cap_s),
        }
        await self._send(begin)
        self._begin_loop_time = asyncio.get_running_loop().time()
        return None

    async def _serve(self) -> _Outcome:
        reader = asyncio.create_task(self._read(), name="emulator-read")
        watchdog = asyncio.create_task(self._watch(), name="emulator-watchdog")
        sender = asyncio.create_task(self._deliver(), name="emulator-send")
        try:
            done, _ = await asyncio.wait(
                {reader, watchdog, sender}, return_when=asyncio.FIRST_COMPLETED
            )
            if reader in done:
                outcome = reader.result()
                if isinstance(outcome, _Terminated):
                    # Termination goes out through the outbox, after the last turns.
                    with contextlib.suppress(ConnectionClosed):
                        await sender
                return outcome
            if watchdog in done:
                return watchdog.result()
            error = sender.exception()
            if error is not None and not isinstance(error, ConnectionClosed):
                raise error
            return _ClientGone()
        finally:
            for task in (reader, watchdog, sender):
                task.cancel()
            for task in (reader, watchdog, sender):
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task

    async def _finish(self, outcome: _Outcome) -> None:
        if isinstance(outcome, _Close):
            await self._close_with_error(outcome)
        elif isinstance(outcome, _Stall):
            await self._ws.wait_closed()
        elif isinstance(outcome, _ClientGone):
            await self._ws.close()

    def _fault_outcome(self, fault: Fault) -> _Outcome:
        if fault.kind is FaultKind.CLOSE:
            text = fault.reason or DOCUMENTED_REASONS.get(fault.code, "")
            return _Close(fault.code, text)
        if fault.kind is FaultKind.DROP:
            self._ws.transport.abort()
            return _ClientGone()
        return _Stall()

    async def _close_with_error(self, close: _Close) -> None:
        with contextlib.suppress(ConnectionClosed):
            if not self._behaviour.legacy and close.code not in _NO_ERROR_FRAME:
                error = {"type": "Error", "error_code": close.code, "error": close.text}
                await self._send(error)
            reason = close.reason if close.reason is not None else close.text
            await self._ws.close(close.code, close_reason(reason))

    async def _send(self, message: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(message))
        if self._behaviour.record_frames:
            self._record.sent.append(message)

    async def _deliver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, message = await self._outbox.get()
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if message is _CLOSE_1000:
                await self._ws.close(1000)
                return
            if isinstance(message, str):
                await self._ws.send(message)  # a malformed frame (fault)
            else:
                await self._send(message)

    def _post(self, messages: list[dict[str, Any]], delay_s: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + (self._behaviour.processing_delay_s if delay_s is None else delay_s)
        for message in messages:
            self._outbox.put_nowait((due, message))

    async def _watch(self) -> _Outcome:
        cap_deadline = self._record.opened_at + self._admission.session_cap_s
        timeout = self._engine.params.inactivity_timeout_s if self._engine else None
        while True:
            now = self._clock.monotonic()
            if now >= cap_deadline:
                return _Close(3008, DOCUMENTED_REASONS[3008])
            deadline = cap_deadline
            if timeout is not None:
                idle_deadline = self._last_activity + timeout
                if now >= idle_deadline:
                    text = f"Session Timeout: no audio or messages for {timeout} s"
                    return _Close(self._behaviour.inactivity_close_code, text)
                deadline = min(deadline, idle_deadline)
            await self._clock.sleep_until(deadline)

    async def _read(self) -> _Outcome:
        while True:
            try:
                frame = await self._ws.recv()
            except ConnectionClosed:
                return _ClientGone()
            self._last_activity = self._clock.monotonic()
            size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
            if size > MAX_MESSAGE_BYTES:
                return _Close(1009, "Message too big")  # over 128 KB
            if isinstance(frame, bytes):
                outcome = self._on_audio(frame)
            else:
                outcome = self._on_text(frame)
            if outcome is not None:
                return outcome

    def _on_audio(self, data: bytes) -> _Outcome | None:
        assert self._engine is not None
        rate = self._engine.params.bytes_per_second
        size = len(data)
        if self._behaviour.record_frames:
            self._record.add_received(ReceivedFrame("audio", size, size * 1000 / rate))
        if self._short_tail is not None:
            return self._duration_error(len(self._short_tail) * 1000 / rate)
        # Chunk rule; integer form of 50 <= ms <= 1000.
        size_ms = size * 1000
        if size_ms < _MIN_CHUNK_MS * rate:
            if self._behaviour.allow_short_tail:
                self._short_tail = data  # fine only if Terminate comes next
                return None
            return self._duration_error(size_ms / rate)
        if size_ms > _MAX_CHUNK_MS * rate:
            return self._duration_error(size_ms / rate)
        return self._accept_audio(data, rate)

    def _accept_audio(self, data: bytes, rate: int) -> _Outcome | None:
        assert self._engine is not None
        record = self._record
        record.audio_bytes += len(data)
        record.audio_seconds = record.audio_bytes / rate
        self._chunks += 1
        if self._is_paced:
            # Pacing rule: audio may lead wall time * factor by the allowance.
            elapsed = self._loop_time() - self._begin_loop_time
            if record.audio_seconds > elapsed * self._factor + self._behaviour.rate_allowance_s:
                detail = (
                    f"Audio Transmission Rate Exceeded: Received {record.audio_seconds:.1f} sec."
                    f" audio in {elapsed:.6f} sec"
                )
                return _Close(3007, f"Input Duration Error: {detail}", detail)
        for fault in self._faults:
            if not fault.is_immediate and fault.is_due(record.audio_seconds, self._chunks):
                outcome = self._fire(fault)
                if outcome is not None:
                    return outcome
        messages = self._engine.receive_audio(self._to_pcm16(data))
        if messages:
            self._post(messages)
        return None

    def _to_pcm16(self, data: bytes) -> bytes:
        assert self._engine is not None
        if self._engine.params.encoding == "pcm_mulaw":
            return mulaw_to_pcm16(data)
        if not self._odd_byte and not len(data) % 2:
            return data  # the usual frame: whole samples, nothing carried over (no copy)
        # A frame may split a sample; keep the odd byte for the next frame.
        data = self._odd_byte + data
        cut = len(data) - len(data) % 2
        self._odd_byte = data[cut:]
        return data[:cut]

    def _fire(self, fault: Fault) -> _Outcome | None:
        if fault.kind is FaultKind.MALFORMED_JSON:
            self._faults = tuple(f for f in self._faults if f is not fault)
            self._outbox.put_nowait((0.0, _MALFORMED))
            return None
        if fault.kind in (FaultKind.CLOSE, FaultKind.DROP, FaultKind.STALL):
            return self._fault_outcome(fault)
        return None

    def _duration_error(self, duration_ms: float) -> _Close:
        detail = f"Input duration violation: {duration_ms:g} ms. Expected between 50 and 1000 ms"
        return _Close(3007, f"Input Duration Error: {detail}", detail)

    def _on_text(self, text: str) -> _Outcome | None:
        assert self._engine is not None
        if self._behaviour.record_frames:
            self._record.add_received(ReceivedFrame("text", len(text.encode()), text=text))
        try:
            message = json.loads(text)
        except ValueError:
            return _Close(3006, f"Invalid JSON: {text}")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return _Close(3006, f"Invalid Message: {text}")
        kind = message["type"]
        if self._short_tail is not None and kind != "Terminate":
            tail_ms = len(self._short_tail) * 1000 / self._engine.params.bytes_per_second
            return self._duration_error(tail_ms)
        if kind == "KeepAlive":
            return None
        if kind == "UpdateConfiguration":
            try:
                self._engine.update(apply_update(self._engine.params, message))
            except ParameterError as exc:
                return _Close(3006, str(exc))
            self._record.params = self._engine.params
            return None
        if kind == "ForceEndpoint":
            self._post(self._engine.force_endpoint())
            return None
        if kind == "Terminate":
            return self._terminate()
        return _Close(3006, f"Invalid Message Type: {kind}")

    def _terminate(self) -> _Outcome:
        assert self._engine is not None
        if self._short_tail is not None:
            # The tolerated tail (switch allow_short_tail): hear it like any audio.
            tail, self._short_tail = self._short_tail, None
            self._record.audio_bytes += len(tail)
            self._post(self._engine.receive_audio(self._to_pcm16(tail)))
        self._post(self._engine.terminate())
        delay = 0.0
        for fault in self._faults:
            if fault.on_terminate and fault.kind is FaultKind.STALL:
                return _Stall()
            if fault.on_terminate and fault.kind is FaultKind.DELAY_TERMINATION:
                delay = fault.delay_s
        record = self._record
        duration = self._clock.monotonic() - record.opened_at
        termination = {
            "type": "Termination",
            "audio_duration_seconds": round(
                record.audio_bytes / self._engine.params.bytes_per_second
            ),
            "session_duration_seconds": round(duration),
        }
        self._post([termination], delay)
        self._outbox.put_nowait((0.0, _CLOSE_1000))
        return _Terminated()
