"""One emulated Voice Agent socket, from upgrade to close.

:class:`AgentConnection` answers the client's events, speaks replies as paced
``reply.audio`` chunks from a single speaker task, handles interruption
(``session.end``, ``reply.create``/``reply.cancel`` switches, barge-in from
decoded input speech) and fires the injected faults. Every frame both ways is
kept in an :class:`~recorder.emulator.agent.records.AgentSessionRecord`. The
protocol is docs/providers.md, "Voice Agent: protocol".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from recorder.emulator.agent.config import (
    AgentBehaviour,
    AgentFaults,
    LiveConfig,
    UpdateError,
    apply_update,
)
from recorder.emulator.agent.records import AgentSessionRecord, ReplyRecord
from recorder.emulator.agent.voice import (
    OUTPUT_FORMATS,
    at_output_rate,
    encode_output,
    heard_prefix,
    synthesize,
)
from recorder.tonecode import StreamDecoder

__all__ = [
    "AgentConnection",
    "AgentSessionRecord",
    "Answer",
    "ReplyRecord",
    "ReplyText",
    "echo_answer",
]

log = logging.getLogger("recorder.emulator")

#: Builds a reply's text from the session's system prompt and the ``reply.create`` instructions.
ReplyText = Callable[[str | None, str | None], str]
#: Builds the answer to a user turn from the system prompt and the user's words.
Answer = Callable[[str | None, str], str]

_INPUT_RATE_HZ = 24_000  # audio/pcm input; the emulator hears tone code at this rate
_BACKCHANNEL = frozenset({"uh-huh", "okay", "mm-hmm", "ok", "yeah", "right"})


def echo_answer(system_prompt: str | None, user_text: str) -> str:
    """The default answer to a user turn: what was heard, so tests can assert it."""
    return f"You said: {user_text}"


@dataclass(slots=True)
class _Reply:
    text: str
    is_greeting: bool
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class _Gone(Exception):
    """The connection ended inside the speaker (a fault fired or the client left)."""


class AgentConnection:
    """Drives one accepted Voice Agent socket.

    Args:
        connection: the upgraded server connection.
        record: where to record what happens.
        refusal: ``(code, message)`` of an auth failure to send instead of serving.
        behaviour: the emulator's switches.
        faults: failures to inject.
        realtime_factor: reply audio goes out this many times faster than real time.
        session_cap_s: the session length limit (a token may lower the behaviour's).
        reply_text: the "LLM" for ``reply.create``.
        answer: the "LLM" for a user turn.
    """

    def __init__(
        self,
        connection: ServerConnection,
        record: AgentSessionRecord,
        *,
        refusal: tuple[str, str] | None,
        behaviour: AgentBehaviour,
        faults: AgentFaults,
        realtime_factor: float,
        session_cap_s: float,
        reply_text: ReplyText,
        answer: Answer,
    ) -> None:
        self._ws = connection
        self._record = record
        self._refusal = refusal
        self._behaviour = behaviour
        self._faults = faults
        self._factor = realtime_factor
        self._cap_s = session_cap_s
        self._reply_text = reply_text
        self._config = LiveConfig()
        self._is_ready = False
        self._replies: asyncio.Queue[_Reply] = asyncio.Queue()
        self._current: _Reply | None = None
        self._chunks_total = 0
        self._opened = time.monotonic()
        self._decoder = StreamDecoder(_INPUT_RATE_HZ)
        self._early_audio: list[bytes] = []
        self._user_words: list[str] = []
        self._answer = answer

    def _code(self, code: str) -> str:
        return code.lower() if self._behaviour.lowercase_codes else code

    async def run(self) -> None:
        """Serve the socket until it closes; fill in the record."""
        try:
            await self._run()
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._ws.wait_closed()
            self._record.close_code = self._ws.close_code or 1006
            self._record.close_reason = self._ws.close_reason or ""
            self._record.config = self._config
            self._record.closed.set()

    async def _run(self) -> None:
        if self._faults.connect_error is not None:
            code, close_code = self._faults.connect_error
            await self._error_and_close(code, "injected failure during setup", close_code)
            return
        if self._refusal is not None:
            code, message = self._refusal
            await self._error_and_close(self._code(code), message, 1008)
            return
        reader = asyncio.create_task(self._read(), name="agent-emulator-read")
        speaker = asyncio.create_task(self._speak_all(), name="agent-emulator-speak")
        capper = asyncio.create_task(self._watch_cap(), name="agent-emulator-cap")
        tasks = {reader, speaker, capper}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is not None and not isinstance(error, ConnectionClosed | _Gone):
                    raise error
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, _Gone):
                    await task
            with contextlib.suppress(ConnectionClosed):
                await self._ws.close()

    # Frames out.

    async def _send(self, message: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(message))
        if message.get("type") == "reply.audio":
            kept = {key: value for key, value in message.items() if key != "data"}
            kept["data_bytes"] = len(base64.b64decode(message["data"]))
            self._record.sent.append(kept)
        else:
            self._record.sent.append(message)

    async def _send_error(self, error: UpdateError) -> None:
        message: dict[str, Any] = {
            "type": "session.error",
            "code": error.code,
            "message": error.message,
        }
        if error.param is not None:
            message["param"] = error.param
        message["timestamp"] = time.time()
        await self._send(message)

    async def _error_and_close(self, code: str, message: str, close_code: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._send_error(UpdateError(code, message))
            await self._ws.close(close_code, message[:120])

    # Frames in.

    async def _read(self) -> None:
        while True:
            timeout = None if self._is_ready or self._faults.never_ready else self._ready_left()
            try:
                async with asyncio.timeout(timeout):
                    frame = await self._ws.recv()
            except TimeoutError:
                # No usable session.update in time (the real trigger is not documented).
                await self._error_and_close(
                    "agent_timeout", "agent was not ready within the time limit", 1011
                )
                return
            except ConnectionClosed:
                return
            if await self._on_frame(frame):
                return

    def _ready_left(self) -> float:
        return max(0.0, self._opened + self._behaviour.ready_timeout_s - time.monotonic())

    async def _on_frame(self, frame: str | bytes) -> bool:
        """Handle one client frame; True when the connection is finished."""
        if isinstance(frame, bytes):
            self._record.received.append({"type": None, "binary_bytes": len(frame)})
            await self._send_error(UpdateError("invalid_format", "binary frames are not accepted"))
            return False
        try:
            message = json.loads(frame)
        except ValueError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self._record.received.append({"type": None, "text": frame[:200]})
            await self._send_error(UpdateError("invalid_format", "message is not JSON with a type"))
            return False
        kind = message["type"]
        if kind == "input.audio":
            return await self._on_audio(message)
        self._record.received.append(message)
        if kind == "session.update":
            return await self._on_update(message)
        if kind == "session.end":
            return await self._on_end()
        if kind == "session.resume":
            return await self._on_resume()
        if not self._is_ready:
            # The first message must be session.update.
            text = f"{kind} before session.update"
            await self._send_error(UpdateError("invalid_format", text))
            return False
        if kind == "reply.create":
            instructions = message.get("instructions")
            text = self._reply_text(
                self._config.system_prompt, instructions if isinstance(instructions, str) else None
            )
            if self._behaviour.create_cancels_reply:
                await self._interrupt_current()
            self._replies.put_nowait(_Reply(text, is_greeting=False))
            return False
        if kind == "tool.result":
            # No tool calls are ever made here, so every call_id is unknown.
            await self._send_error(UpdateError("invalid_format", "unknown call_id", "call_id"))
            return False
        if kind in ("reply.cancel", "conversation.message") and self._behaviour.accept_undocumented:
            if kind == "reply.cancel":
                await self._interrupt_current()
            return False
        await self._send_error(UpdateError("invalid_format", f"unknown type {kind!r}", "type"))
        return False

    async def _on_update(self, message: dict[str, Any]) -> bool:
        is_first = not self._is_ready
        config, errors, is_ok = apply_update(
            message, self._config, self._behaviour, is_first=is_first
        )
        self._config = self._record.config = config
        for error in errors:
            await self._send_error(error)
        if any(error.code == "agent_not_found" for error in errors):
            with contextlib.suppress(ConnectionClosed):
                await self._ws.close(1008, "agent not found")
            return True
        if not is_first:
            if not errors:
                await self._send({"type": "session.updated", "timestamp": time.time()})
            return False
        if not is_ok or self._faults.never_ready:
            return False
        self._is_ready = True
        self._record.session_id = "sess_" + secrets.token_hex(16)
        await self._send({"type": "session.ready", "session_id": self._record.session_id})
        if config.greeting:
            # The greeting goes straight to TTS, verbatim.
            self._replies.put_nowait(_Reply(config.greeting, is_greeting=True))
        if self._behaviour.buffer_early_audio:
            for pcm in self._early_audio:
                await self._hear(pcm)
        self._early_audio.clear()
        return False

    async def _on_resume(self) -> bool:
        if self._is_ready:
            await self._send_error(UpdateError("invalid_format", "session.resume must come first"))
            return False
        # Resume is not modelled: it always fails, as a Sept 2026 field report saw.
        message = "Session not found or grace window has expired"
        await self._error_and_close("session_not_found", message, 1008)
        return True

    async def _on_audio(self, message: dict[str, Any]) -> bool:
        data = message.get("audio")
        try:
            pcm = base64.b64decode(data if isinstance(data, str) else "", validate=True)
        except (binascii.Error, ValueError):
            pcm = b""
        if not isinstance(data, str) or not pcm or len(pcm) % 2:
            self._record.received.append({"type": "input.audio", "audio_ms": None})
            await self._send_error(
                UpdateError("invalid_audio", "audio is not base64 PCM16", "audio")
            )
            return False
        audio_ms = len(pcm) / 2 * 1000 / _INPUT_RATE_HZ
        self._record.received.append({"type": "input.audio", "audio_ms": audio_ms})
        if not self._is_ready:
            if self._behaviour.buffer_early_audio:
                self._early_audio.append(pcm)
            return False  # dropped before session.ready
        await self._hear(pcm)
        return False

    async def _hear(self, pcm: bytes) -> None:
        """Turn detection on decoded input speech: user turns and barge-in."""
        self._record.input_audio_ms += len(pcm) / 2 * 1000 / _INPUT_RATE_HZ
        for word in self._decoder.feed(pcm):
            if word.text is None:
                continue
            is_backchannel = word.text.lower().strip(".,!?") in _BACKCHANNEL
            if is_backchannel and self._current is not None and not self._user_words:
                continue  # "uh-huh" while the agent speaks is not a turn
            if not self._user_words:
                await self._send({"type": "input.speech.started", "timestamp": time.time()})
            self._user_words.append(word.text)
            if self._current is not None and self._config.interrupt_response:
                # Barge-in: a real word during a reply stops it at once.
                await self._interrupt_current()
            text = " ".join(self._user_words)
            await self._send({"type": "transcript.user.delta", "text": text})
        if self._user_words and self._decoder.trailing_silence_ms >= self._config.min_silence_ms:
            text = " ".join(self._user_words)
            self._user_words = []
            await self._send({"type": "input.speech.stopped", "timestamp": time.time()})
            item_id = "item_" + secrets.token_hex(4)
            await self._send({"type": "transcript.user", "text": text, "item_id": item_id})
            self._replies.put_nowait(_Reply(self._answer(self._config.system_prompt, text), False))

    async def _on_end(self) -> bool:
        self._record.is_end_received = True
        if self._faults.never_end:
            return False
        await self._interrupt_current()
        while not self._replies.empty():
            self._replies.get_nowait()
        if self._faults.end_delay_s:
            # Hold session.ended back, unless the client gives up and closes first.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._faults.end_delay_s):
                    await self._ws.wait_closed()
                return True
        await self._send_ended()
        with contextlib.suppress(ConnectionClosed):
            await self._ws.close(1000)
        return True

    async def _send_ended(self) -> None:
        duration = time.monotonic() - self._opened
        audio_s = self._record.input_audio_ms / 1000 or None
        await self._send(
            {
                "type": "session.ended",
                "session_duration_seconds": round(duration, 3),
                "audio_duration_seconds": round(audio_s, 3) if audio_s else None,
                "timestamp": time.time(),
            }
        )

    async def _watch_cap(self) -> None:
        await asyncio.sleep(self._cap_s)
        # No warning before the cap (the exact frames sent at the cap are not documented).
        current = self._current
        if current is not None:
            current.interrupt.set()
        with contextlib.suppress(ConnectionClosed):
            await self._send_error(
                UpdateError("session_expired", "maximum session duration reached")
            )
            if self._behaviour.cap_sends_ended:
                await self._send_ended()
            await self._ws.close(1008, "session expired")

    # Replies.

    async def _interrupt_current(self) -> None:
        current = self._current
        if current is not None:
            current.interrupt.set()
            await current.finished.wait()

    async def _speak_all(self) -> None:
        while True:
            reply = await self._replies.get()
            self._current = reply
            try:
                if self._behaviour.reply_delay_s:
                    # "LLM latency"; an interruption meanwhile cancels the reply unspoken.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._behaviour.reply_delay_s):
                            await reply.interrupt.wait()
                    if reply.interrupt.is_set():
                        continue
                await self._speak(reply)
            finally:
                self._current = None
                reply.finished.set()

    async def _speak(self, reply: _Reply) -> None:
        record = ReplyRecord("reply_" + secrets.token_hex(4), reply.text, reply.is_greeting)
        self._record.replies.append(record)
        await self._send({"type": "reply.started", "reply_id": record.reply_id})
        if self._faults.reply_error is not None and not reply.is_greeting:
            code, message = self._faults.reply_error
            record.status = "failed"
            await self._send(
                {"type": "reply.error", "code": code, "message": message, "retryable": True}
            )
            await self._send(
                {"type": "reply.done", "status": "failed", "reply_id": record.reply_id}
            )
            return
        encoding = self._config.output_encoding
        speech = synthesize(reply.text)
        pcm = at_output_rate(speech, encoding)
        rate = OUTPUT_FORMATS[encoding]
        chunk_bytes = max(2, rate * self._behaviour.chunk_ms // 1000 * 2)
        loop = asyncio.get_running_loop()
        start = loop.time()
        burst = max(1, self._behaviour.burst_chunks)
        for index, offset in enumerate(range(0, len(pcm), chunk_bytes)):
            if not math.isinf(self._factor):
                due = (
                    start
                    + (index // burst) * burst * self._behaviour.chunk_ms / 1000 / self._factor
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, due - loop.time())):
                        await reply.interrupt.wait()
            if reply.interrupt.is_set():
                break
            chunk = pcm[offset : offset + chunk_bytes]
            data = encode_output(chunk, encoding, self._config.volume)
            await self._send(
                {
                    "type": "reply.audio",
                    "data": base64.b64encode(data).decode("ascii"),
                    "reply_id": record.reply_id,
                }
            )
            record.chunks_sent += 1
            record.audio_ms_sent += len(chunk) / 2 * 1000 / rate
            self._chunks_total += 1
            await self._fire_chunk_faults()
        if reply.interrupt.is_set():
            record.status = "interrupted"
            record.heard_text = heard_prefix(speech, record.audio_ms_sent)
            done: dict[str, Any] = {
                "type": "reply.done",
                "status": "interrupted",
                "reply_id": record.reply_id,
            }
            heard: dict[str, Any] = {
                "type": "transcript.agent",
                "text": record.heard_text,
                "reply_id": record.reply_id,
                "item_id": "item_" + record.reply_id[6:],
                "interrupted": True,
            }
            first, second = (done, heard) if self._behaviour.interrupt_done_first else (heard, done)
            for frame in (first, second):
                if frame is done or not self._faults.omit_agent_transcript:
                    await self._send(frame)
            return
        record.status = "completed"
        record.heard_text = reply.text
        if not self._faults.omit_agent_transcript:
            await self._send(
                {
                    "type": "transcript.agent",
                    "text": reply.text,
                    "reply_id": record.reply_id,
                    "item_id": "item_" + record.reply_id[6:],
                    "interrupted": False,
                }
            )
        await self._send({"type": "reply.done", "status": "completed", "reply_id": record.reply_id})

    async def _fire_chunk_faults(self) -> None:
        faults = self._faults
        if faults.drop_after_chunks is not None and self._chunks_total >= faults.drop_after_chunks:
            # Abrupt TCP drop: the client sees 1006 and no session.ended.
            self._ws.transport.abort()
            raise _Gone
        injected = faults.error_after_chunks
        if injected is not None and self._chunks_total == faults.error_at_chunk:
            code, message, close_code = injected
            if close_code is None:
                await self._send_error(UpdateError(code, message))
            else:
                await self._error_and_close(code, message, close_code)
                raise _Gone
