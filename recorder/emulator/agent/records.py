"""What the Voice Agent emulator records about each socket and each reply, for tests to read."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from recorder.emulator.agent.config import LiveConfig

__all__ = ["AgentSessionRecord", "ReplyRecord"]


@dataclass(slots=True)
class ReplyRecord:
    """One reply the emulator spoke.

    Attributes:
        reply_id: its ``reply_id``.
        text: the full reply text.
        is_greeting: whether it was the greeting.
        chunks_sent: ``reply.audio`` frames sent.
        audio_ms_sent: audio sent, in ms.
        status: ``completed`` or ``interrupted`` (None while speaking).
        heard_text: the ``transcript.agent`` text sent.
    """

    reply_id: str
    text: str
    is_greeting: bool = False
    chunks_sent: int = 0
    audio_ms_sent: float = 0.0
    status: str | None = None
    heard_text: str | None = None


@dataclass(slots=True)
class AgentSessionRecord:
    """What happened on one socket.

    Attributes:
        index: connection index (0 for the first upgrade).
        session_id: the ``session_id`` sent in ``session.ready``, or None.
        config: the configuration as last applied.
        received: client frames, decoded; ``input.audio`` keeps ``audio_ms``, not the audio.
        sent: server frames, decoded; ``reply.audio`` keeps ``data_bytes``, not the data.
        replies: the replies spoken.
        input_audio_ms: accepted ``input.audio``, in ms.
        is_end_received: whether the client sent ``session.end``.
        close_code: the close code (1006 for a drop), None while open.
        closed: set once the socket closed and the record is final.
    """

    index: int
    session_id: str | None = None
    config: LiveConfig | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    replies: list[ReplyRecord] = field(default_factory=list)
    input_audio_ms: float = 0.0
    is_end_received: bool = False
    close_code: int | None = None
    close_reason: str = ""
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def sent_types(self) -> list[str]:
        """The ``type`` of every frame sent, in order."""
        return [str(message.get("type")) for message in self.sent]

    def received_types(self) -> list[str]:
        """The ``type`` of every frame received, in order."""
        return [str(message.get("type")) for message in self.received]
