"""The replay transport: plays a scripted meeting through the same path Agora feeds.

A real thread produces each joined, unmuted participant's 10 ms frames at
real-time pace (or ``speed`` times faster) and hands them to the
:class:`~recorder.transport.bridge.AudioBridge`, exactly as the Agora SDK's
native thread does. Silent participants send low comfort noise; muted or
absent ones send nothing. Published audio (the recap) is paced to the script
clock as Agora's is to the wall clock, and captured, so tests can decode what
the bot said into the channel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

import numpy as np

from recorder.audio import FRAME_MS, bytes_for_ms
from recorder.transport.base import (
    ConnectionState,
    ConnectionStateChanged,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    Transport,
    TransportSink,
)
from recorder.transport.bridge import DEFAULT_MAX_QUEUED_S, AudioBridge
from recorder.transport.pacing import DEFAULT_LEAD_MS, PublishPacer
from recorder.transport.script import MeetingScript, ScriptAction, SpeechClip

__all__ = ["ReplayTransport"]

log = logging.getLogger(__name__)

_FRAME_BYTES = bytes_for_ms(FRAME_MS)
# Comfort noise of a quiet room, far below the speech threshold (audio.SPEECH_DBFS).
_NOISE_DBFS = -72.0
# Most audio a replay's bridge queues per participant, however fast it plays (s).
_MOST_QUEUED_S = 120.0


def _noise_bank(seconds: float = 3.0) -> bytes:
    rng = np.random.default_rng(1234)
    scale = 32768 * 10 ** (_NOISE_DBFS / 20)
    return (rng.standard_normal(int(16_000 * seconds)) * scale).astype("<i2").tobytes()


def _queue_bound_s(speed: float) -> float:
    """Audio the bridge may queue per participant at ``speed``: the same wall-clock slack.

    The bound exists for a stalled loop, which is measured in wall time: at 20x,
    5 s of audio is 250 ms of wall time, which a busy machine's loop can lose
    without being stalled. Capped so memory stays bounded (4 MB per participant).
    """
    return min(DEFAULT_MAX_QUEUED_S * max(speed, 1.0), _MOST_QUEUED_S)


class ReplayTransport(Transport):
    """Plays a :class:`MeetingScript` in real time (or faster) on a real thread.

    Args:
        script: the meeting to play.
        speed: script seconds per wall-clock second (1.0 = real time).
        publish_lead_ms: most published audio queued ahead of the script clock.
        clock: wall-clock seconds, monotonic, that the playback thread paces
            itself by (tests may pass another).
        start_ms: script time to start playing at, as a rejoin of a live channel
            joins a meeting already under way: what was said before is not played,
            and who joined before is present from the first frame.
    """

    def __init__(
        self,
        script: MeetingScript,
        *,
        speed: float = 1.0,
        publish_lead_ms: float = DEFAULT_LEAD_MS,
        clock: Callable[[], float] = time.monotonic,
        start_ms: float = 0.0,
    ) -> None:
        if not 0 < speed < math.inf:  # also refuses nan
            raise ValueError(f"speed must be a positive, finite number, got {speed!r}")
        if start_ms < 0:
            raise ValueError("start_ms must not be negative")
        self.script = script
        self.channel = script.channel
        self.speed = speed
        self.bridge: AudioBridge | None = None
        self.published: list[tuple[float, bytes]] = []
        self._clock = clock
        # The playback thread pops a frame and advances the script clock under
        # this lock, so the pacer's idea of what has played is exact.
        self._publish_lock = threading.Lock()
        self._publish_queue: deque[bytes] = deque()
        self._pacer = PublishPacer(
            clock_ms=self.clock_ms,
            lead_ms=publish_lead_ms,
            ticked=True,
            channel_lock=self._publish_lock,
        )
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._finished: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._noise = _noise_bank()
        self._start_tick = int(start_ms // FRAME_MS)
        self._script_ms = float(self._start_tick * FRAME_MS)

    @property
    def names(self) -> dict[int, str]:
        """The script's cast."""
        return dict(self.script.names)

    def clock_ms(self) -> float:
        """The script clock: how far the meeting has played."""
        return self._script_ms

    def linger(self, seconds: float) -> float | None:
        """Play ``seconds`` of silence after the script ends; returns when the script ends."""
        ends_s = (self.script.end_ms - self._start_tick * FRAME_MS) / 1000.0 / self.speed
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
        self.bridge = AudioBridge(
            self._loop,
            sink,
            clock_ms=lambda: self._script_ms,
            max_queued_s=_queue_bound_s(self.speed),
        )
        self.bridge.push_event(ConnectionStateChanged(ConnectionState.CONNECTED, 0.0))
        self._thread = threading.Thread(
            target=self._run, name=f"replay-{self.channel}", daemon=True
        )
        self._pacer.start()
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
        self._pacer.close()

    async def publish(self, pcm: bytes) -> None:
        """Queue recap audio, at most the lead ahead of the script clock (padded to whole frames).

        The playback thread plays one 10 ms frame per tick; this returns once
        the last frame is queued, or at once after a flush. Before :meth:`start`
        and after the script's end nothing plays: the audio queues at once (to
        play from the start, or never) and stays in :attr:`publish_backlog_ms`.
        """
        await self._pacer.publish(pcm, self._publish_queue.append)

    def flush_publish(self) -> None:
        """Drop queued recap audio at once (barge-in)."""
        with self._publish_lock:
            self._publish_queue.clear()
            self._pacer.flush()

    @property
    def publish_backlog_ms(self) -> float:
        """Recap audio queued and not yet played."""
        return self._pacer.backlog_ms

    @property
    def publish_played_ms(self) -> float:
        """Recap audio played so far (``published``'s length in ms)."""
        return self._pacer.played_ms

    async def wait_played(self, backlog_ms: float = 0.0) -> None:
        """Return once at most ``backlog_ms`` of recap audio is still queued.

        The playback thread wakes this when that much has played; a flush,
        :meth:`stop` or the script's end wakes it at once.
        """
        await self._pacer.wait_played(backlog_ms)

    @property
    def dropped_audio_ms(self) -> Mapping[int, float]:
        """Audio the bridge dropped because the loop fell behind, ms per uid."""
        return self.bridge.dropped_ms if self.bridge is not None else {}

    def _run(self) -> None:
        assert self.bridge is not None and self._loop is not None and self._finished is not None
        bridge = self.bridge
        actions = list(self.script.actions)
        clips: dict[int, deque[SpeechClip]] = {}
        for clip in sorted(self.script.clips, key=lambda c: c.start_ms):
            clips.setdefault(clip.uid, deque()).append(clip)
        present: dict[int, bool] = {}  # uid -> muted
        noise_at = 0
        tick = self._start_tick
        clock, pacer, lock = self._clock, self._pacer, self._publish_lock
        queue, published = self._publish_queue, self.published
        frame_ms = float(FRAME_MS)
        origin = clock() - tick * frame_ms / 1000.0 / self.speed
        try:
            while not self._stop.is_set():
                now_ms = tick * frame_ms
                if now_ms >= self.script.end_ms:
                    break
                # Pace: frame [now, now+10) is delivered once it has "happened".
                due = origin + (now_ms + frame_ms) / 1000.0 / self.speed
                delay = due - clock()
                if delay > 0:
                    self._stop.wait(delay)
                while actions and actions[0].at_ms <= now_ms:
                    self._apply(actions.pop(0), present)
                end_ms = now_ms + frame_ms
                with lock:  # the recap's frame plays and the clock moves, together
                    if queue:
                        published.append((now_ms, queue.popleft()))
                    self._script_ms = end_ms
                pacer.tick()
                for uid, muted in present.items():
                    if muted:
                        continue
                    frame = self._frame_for(clips.get(uid), now_ms)
                    if frame is None:
                        frame = self._noise[noise_at : noise_at + _FRAME_BYTES]
                        noise_at = (noise_at + _FRAME_BYTES) % (len(self._noise) - _FRAME_BYTES)
                    bridge.push_frame(uid, frame, end_ms)
                tick += 1
            for uid in list(present):
                bridge.end_audio(uid)
        except Exception:  # pragma: no cover - a bug; never kill the thread silently
            log.exception("! replay thread failed")
        finally:
            # Nothing queued plays any more: waiters on the recap return.
            self._loop.call_soon_threadsafe(pacer.close)
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
