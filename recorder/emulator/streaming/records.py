"""What the streaming emulator is configured with and what it records per session.

:class:`StreamingBehaviour` holds the switches for behaviours that changed or are
not documented (legacy server, short tail frames, pacing allowance, latency model,
...); :class:`SessionRecord` is
what a test or the CLI reads back about one socket.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from recorder.emulator.streaming.engine import EngineOptions
from recorder.emulator.streaming.params import ACCEPTED_MODELS, SessionParams

__all__ = ["ReceivedFrame", "SessionRecord", "StreamingBehaviour"]


@dataclass(frozen=True, slots=True)
class StreamingBehaviour:
    """Switches for the emulated service; the defaults model the Feb-Mar 2026 ``u3-rt-pro``.

    Attributes:
        accepted_models: ``speech_model`` values accepted.
        reject_unknown_model: close 3006 on a missing or unknown model; if False,
            treat it as ``u3-rt-pro`` (the real behaviour is UNCONFIRMED).
        rate_allowance_s: how far audio received may lead wall time * realtime factor
            before 3007 (the real tolerance is not documented). 3 s covers a
            client's pre-roll and the audio it buffered while connecting, and still
            catches any replay of a backlog at full speed.
        session_cap_s: maximum session length (3 h); tokens may lower it.
        processing_delay_s: wall-clock delay before each ``SpeechStarted``/``Turn`` is
            sent (a latency model, so client timing code is exercised).
        allow_short_tail: accept one frame under 50 ms right before ``Terminate``.
        legacy: Feb-Mar 2026 server: no ``Error`` frames, ``SpeechStarted`` without
            ``confidence``, partials only at pauses.
        inactivity_close_code: close code of the inactivity timeout (3006 per the skill;
            UNCONFIRMED).
        max_sessions_per_minute: new-session rate limit (3009), None for none.
        rate_limit_legacy_1008: use 1008 instead of 3009 for the rate limit.
        record_frames: keep every received and sent frame in the session record.
        engine: turn-engine switches (early/continuous partials, final pair).
    """

    accepted_models: frozenset[str] = ACCEPTED_MODELS
    reject_unknown_model: bool = True
    rate_allowance_s: float = 3.0
    session_cap_s: float = 10800.0
    processing_delay_s: float = 0.2
    allow_short_tail: bool = False
    legacy: bool = False
    inactivity_close_code: int = 3006
    max_sessions_per_minute: int | None = None
    rate_limit_legacy_1008: bool = False
    record_frames: bool = True
    engine: EngineOptions = field(default_factory=EngineOptions)


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    """One frame the server received.

    Attributes:
        kind: ``"audio"`` (binary) or ``"text"``.
        size: bytes in the frame.
        audio_ms: duration of an audio frame, else 0.
        text: the text of a text frame, else None.
    """

    kind: str
    size: int
    audio_ms: float = 0.0
    text: str | None = None


@dataclass(slots=True)
class SessionRecord:
    """What happened on one socket.

    Attributes:
        index: the connection index (0 for the first upgrade the emulator saw).
        session_id: ``Begin.id``, or None if ``Begin`` was never sent.
        params: the parsed query parameters, or None if they were invalid.
        audio_bytes: audio bytes accepted.
        audio_seconds: audio seconds accepted.
        opened_at: clock time of the upgrade.
        billed_seconds: seconds the socket was open (what the real service bills).
        close_code: the WebSocket close code (1006 for a drop), None while open.
        close_reason: the close reason.
        received: frames received (if recording is on).
        sent: JSON messages sent, decoded (if recording is on).
        closed: set once the socket has closed and the record is final.
    """

    index: int
    session_id: str | None = None
    params: SessionParams | None = None
    audio_bytes: int = 0
    audio_seconds: float = 0.0
    opened_at: float = 0.0
    billed_seconds: float = 0.0
    close_code: int | None = None
    close_reason: str = ""
    received: list[ReceivedFrame] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _frame_arrived: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def add_received(self, frame: ReceivedFrame) -> None:
        """Record a frame the server has processed."""
        self.received.append(frame)
        self._frame_arrived.set()

    async def wait_received(self, count: int) -> None:
        """Wait until the server has processed ``count`` frames (needs ``record_frames``)."""
        while len(self.received) < count:
            self._frame_arrived.clear()
            await self._frame_arrived.wait()

    def sent_of_type(self, message_type: str) -> list[dict[str, Any]]:
        """The sent messages of one ``type``, in order."""
        return [message for message in self.sent if message.get("type") == message_type]
