"""The replay transport: plays a scripted meeting through the same path Agora feeds.

A real thread produces each joined, unmuted participant's 10 ms frames at
real-time pace (or ``speed`` times faster) and hands them to the
:class:`~recorder.transport.base.AudioBridge`, exactly as the Agora SDK's
native thread does. Silent participants send low comfort noise; muted or
absent ones send nothing. Published audio (the recap) is captured, paced to
the script clock, so tests can decode what the bot said into the channel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque

import numpy as np

from recorder.audio import FRAME_MS, bytes_for_ms
from recorder.transport.base import (
    AudioBridge,
    ConnectionState,
    ConnectionStateChanged,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    Transport,
    TransportSink,
)
from recorder.transport.script import MeetingScript, ScriptAction, SpeechClip

__all__ = ["ReplayTransport"]

log = logging.getLogger(__name__)

_FRAME_BYTES = bytes_for_ms(FRAME_MS)
# Comfort noise of a quiet room, far below the speech threshold (audio.SPEECH_DBFS).
_NOISE_DBFS = -72.0


def _noise_bank(seconds: float = 3.0) -> bytes:
    rng = np.random.default_rng(1234)
    scale = 32768 * 10 ** (_NOISE_DBFS / 20)
    return (rng.standard_normal(int(16_000 * seconds)) * scale).astype("<i2").tobytes()


class ReplayTransport(Transport):
    """Plays a :class:`MeetingScript` in real time (or faster) on a real thread.

    Args:
        script: the meeting to play.
        speed: script seconds per wall-clock second (1.0 = real time).
    """

    def __init__(self, script: MeetingScript, *, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.script = script
        self.channel = script.channel
        self.speed = speed
        self.bridge: AudioBridge | None = None
        self.published: list[tuple[float, bytes]] = []
        self._publish_queue: deque[bytes] = deque()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._finished: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._noise = _noise_bank()
        self._script_ms = 0.0

    @property
    def names(self) -> dict[int, str]:
        """The script's cast."""
        return dict(self.script.names)

    def clock_ms(self) -> float:
        """The script clock: how far the meeting has played."""
        return self._script_ms

    def linger(self, seconds: float) -> float | None:
        """Play ``seconds`` of silence after the script ends; returns when the script ends."""
        ends_s = self.script.end_ms / 1000.0 / self.speed
        self.script = dataclasses.replace(self.script, end_ms=self.script.end_ms + seconds * 1000)
        return ends_s

    @property
    def script_ms(self) -> float:
        """How far the script has played."""
        return self._script_ms

    async def start(self, sink: TransportSink) -> None:
        """Start the playback thread."""
        self._loop = asyncio.get_running_loop()
        self._finished = asyncio.Event()
        self.bridge = AudioBridge(self._loop, sink, clock_ms=lambda: self._script_ms)
        self.bridge.push_event(ConnectionStateChanged(ConnectionState.CONNECTED, 0.0))
        self._thread = threading.Thread(
            target=self._run, name=f"replay-{self.channel}", daemon=True
        )
        self._thread.start()

    async def wait_finished(self) -> None:
        """Return when the script has played to its end."""
        assert self._finished is not None, "start() first"
        await self._finished.wait()

    async def stop(self) -> None:
        """Stop playing (the thread ends within one tick)."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)

    async def publish(self, pcm: bytes) -> None:
        """Queue recap audio; the playback thread takes one 10 ms frame per tick."""
        for offset in range(0, len(pcm), _FRAME_BYTES):
            self._publish_queue.append(pcm[offset : offset + _FRAME_BYTES])

    def flush_publish(self) -> None:
        """Drop queued recap audio at once (barge-in)."""
        self._publish_queue.clear()

    @property
    def publish_backlog_ms(self) -> float:
        """Recap audio queued and not yet played."""
        return len(self._publish_queue) * FRAME_MS

    def _run(self) -> None:
        assert self.bridge is not None and self._loop is not None and self._finished is not None
        bridge = self.bridge
        actions = list(self.script.actions)
        clips: dict[int, deque[SpeechClip]] = {}
        for clip in sorted(self.script.clips, key=lambda c: c.start_ms):
            clips.setdefault(clip.uid, deque()).append(clip)
        present: dict[int, bool] = {}  # uid -> muted
        noise_at = 0
        tick = 0
        origin = time.monotonic()
        frame_ms = float(FRAME_MS)
        try:
            while not self._stop.is_set():
                now_ms = tick * frame_ms
                if now_ms >= self.script.end_ms:
                    break
                # Pace: frame [now, now+10) is delivered once it has "happened".
                due = origin + (now_ms + frame_ms) / 1000.0 / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                while actions and actions[0].at_ms <= now_ms:
                    self._apply(actions.pop(0), present)
                end_ms = now_ms + frame_ms
                self._script_ms = end_ms
                for uid, muted in present.items():
                    if muted:
                        continue
                    frame = self._frame_for(clips.get(uid), now_ms)
                    if frame is None:
                        frame = self._noise[noise_at : noise_at + _FRAME_BYTES]
                        noise_at = (noise_at + _FRAME_BYTES) % (len(self._noise) - _FRAME_BYTES)
                    bridge.push_frame(uid, frame, end_ms)
                if self._publish_queue:
                    self.published.append((now_ms, self._publish_queue.popleft()))
                tick += 1
            for uid in list(present):
                bridge.end_audio(uid)
        except Exception:  # pragma: no cover - a bug; never kill the thread silently
            log.exception("! replay thread failed")
        finally:
            self._loop.call_soon_threadsafe(self._finished.set)

    def _apply(self, action: ScriptAction, present: dict[int, bool]) -> None:
        assert self.bridge is not None
        uid, at = action.uid, action.at_ms
        if action.action == "join" and uid not in present:
            present[uid] = False
            self.bridge.push_event(ParticipantJoined(uid, at))
        elif action.action == "leave" and uid in present:
            del present[uid]
            self.bridge.push_event(ParticipantLeft(uid, at, "quit"))
        elif action.action in ("mute", "unmute") and uid in present:
            is_muted = action.action == "mute"
            if present[uid] != is_muted:
                present[uid] = is_muted
                self.bridge.push_event(ParticipantMuted(uid, at, is_muted))

    @staticmethod
    def _frame_for(queue: deque[SpeechClip] | None, now_ms: float) -> bytes | None:
        """The participant's speech for [now, now+10 ms), padded with silence, or None."""
        while queue and queue[0].end_ms <= now_ms:
            queue.popleft()
        if not queue or queue[0].start_ms >= now_ms + FRAME_MS:
            return None
        clip = queue[0]
        offset = bytes_for_ms(now_ms - clip.start_ms)
        if offset < 0:  # the clip starts inside this frame
            lead = -offset
            return bytes(lead) + clip.pcm[: _FRAME_BYTES - lead]
        piece = clip.pcm[offset : offset + _FRAME_BYTES]
        return piece + bytes(_FRAME_BYTES - len(piece))
