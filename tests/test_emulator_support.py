"""Helpers for the streaming emulator tests (no tests here): a stand-in recogniser, a raw client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from recorder.emulator.streaming.records import StreamingBehaviour
from recorder.emulator.streaming.server import StreamingEmulator
from tests.support.timing import TIMEOUT

#: The stand-in recogniser's default script (three sentences).
SCRIPT = ["Hello", "there.", "How", "are", "you?", "Fine!"]
RATE = 16000
FRAME = 160  # 10 ms at 16 kHz


@dataclass(frozen=True)
class Word:
    text: str | None
    start_ms: int
    end_ms: int


class StandInRecognizer:
    """Each loud burst ended by 30 ms of silence is the next word of a script.

    Works on 10 ms frames (a frame is loud if any sample is non-zero). Words are
    taken from the script in order; past its end they decode to None (real speech).
    """

    def __init__(self, script: Sequence[str], sample_rate_hz: int = RATE) -> None:
        self._script = list(script)  # a copy: the caller's list is never consumed
        self._frame = sample_rate_hz // 100
        self._buffer = b""
        self._frames = 0
        self._start: int | None = None
        self._last_loud = -1
        self._quiet = 0

    @property
    def position_ms(self) -> int:
        return self._frames * 10

    @property
    def in_speech(self) -> bool:
        return self._start is not None

    @property
    def speech_start_ms(self) -> int | None:
        return None if self._start is None else self._start * 10

    @property
    def trailing_silence_ms(self) -> int:
        return 0 if self._start is not None else (self._frames - self._last_loud - 1) * 10

    def feed(self, pcm: bytes) -> list[Word]:
        data = self._buffer + pcm
        usable = len(data) - len(data) % (self._frame * 2)
        self._buffer = data[usable:]
        samples = np.frombuffer(data[:usable], dtype="<i2").reshape(-1, self._frame)
        loud = np.any(samples != 0, axis=1)
        out: list[Word] = []
        for is_loud in loud.tolist():
            if is_loud:
                if self._start is None:
                    self._start = self._frames
                self._last_loud = self._frames
                self._quiet = 0
            elif self._start is not None:
                self._quiet += 1
                if self._quiet >= 3:
                    out.append(self._word())
            self._frames += 1
        return out

    def flush(self) -> list[Word]:
        return [self._word()] if self._start is not None else []

    def _word(self) -> Word:
        assert self._start is not None
        text = self._script.pop(0) if self._script else None
        word = Word(text, self._start * 10, (self._last_loud + 1) * 10)
        self._start = None
        self._quiet = 0
        return word


def tone(ms: int) -> bytes:
    """A loud burst of ``ms`` milliseconds of PCM16LE at 16 kHz."""
    return (np.full(ms * RATE // 1000, 8000, dtype="<i2")).tobytes()


def silence(ms: int) -> bytes:
    """``ms`` milliseconds of silence."""
    return bytes(ms * RATE // 1000 * 2)


def speech(words: Sequence[str], *, word_ms: int = 200, gap_ms: int = 60) -> bytes:
    """Bursts for ``words`` (stand-in audio; the recogniser gets the texts from its script)."""
    return b"".join(tone(word_ms) + silence(gap_ms) for _ in words)


def chunks(pcm: bytes, ms: int = 100, rate: int = RATE) -> list[bytes]:
    """Cut audio into frames of ``ms`` milliseconds (the last one may be shorter)."""
    size = ms * rate // 1000 * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


class RawClient:
    """A raw websockets client that collects every message until the socket closes."""

    def __init__(self, connection: ClientConnection) -> None:
        self.ws = connection
        self.messages: list[dict[str, Any]] = []
        self.raw: list[str | bytes] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in self.ws:
                self.raw.append(frame)
                try:
                    self.messages.append(json.loads(frame))
                except ValueError:
                    pass
                self._arrived.set()
        self._arrived.set()

    async def next_of(self, kind: str, after: int = 0) -> dict[str, Any]:
        """Wait for the first message of ``type`` ``kind`` at index >= ``after``."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                for message in self.messages[after:]:
                    if message.get("type") == kind:
                        return message
                if self._reader.done():
                    raise AssertionError(f"closed before a {kind}: {self.messages}")
                self._arrived.clear()
                await self._arrived.wait()

    async def closed(self) -> tuple[int | None, str | None]:
        """Wait for the close; return (code, reason) as the client saw them."""
        async with asyncio.timeout(TIMEOUT):
            await self._reader
        return self.ws.close_code, self.ws.close_reason

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    async def send_audio(self, pcm: bytes, ms: int = 100) -> None:
        """Send in frames of ``ms``, the tail padded with silence to a whole frame."""
        size = ms * RATE // 1000 * 2
        pcm += bytes(-len(pcm) % size)
        for chunk in chunks(pcm, ms):
            await self.ws.send(chunk)

    async def terminate(self) -> None:
        await self.ws.send(json.dumps({"type": "Terminate"}))


async def open_client(
    url: str, query: str = "speech_model=u3-rt-pro&sample_rate=16000", key: str | None = "test-key"
) -> RawClient:
    headers = {"Authorization": key} if key is not None else {}
    sep = "&" if "?" in url else "?"
    target = f"{url}{sep}{query}" if query else url
    connection = await connect(target, additional_headers=headers, compression=None)
    return RawClient(connection)


def make_stand_in_emulator(script: Sequence[str] = SCRIPT, **kwargs: Any) -> StreamingEmulator:
    """An emulator hearing the stand-in recogniser, no pacing rule, no processing delay."""
    kwargs.setdefault("realtime_factor", math.inf)
    kwargs.setdefault("behaviour", StreamingBehaviour(processing_delay_s=0.0))
    words = list(script)  # each connection hears the script from its start
    return StreamingEmulator(recognizer=lambda rate: StandInRecognizer(words, rate), **kwargs)
