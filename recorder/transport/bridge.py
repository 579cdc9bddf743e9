"""The one crossing from a transport's native threads into asyncio: :class:`AudioBridge`.

Native threads hand it 10 ms frames and participant events; it gathers each
participant's frames into ~100 ms chunks and wakes the event loop at most once
per chunk, never once per frame (docs/architecture.md, "Threads and the event
loop"). Its queue is bounded in seconds of audio; what a full queue drops is
counted, never silent.

A transport whose native side may send nothing while a participant is silent
(Agora without silent frames: docs/providers.md, "Agora: audio frames") asks
the bridge to fill such gaps: a present, unmuted participant's missing frames
become silence by the wall clock, so end-of-turn, idle close, cost and the
timeline behave as if silent frames had arrived.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable

from recorder.audio import CHUNK_MS, FRAME_MS, Chunk, ChunkAssembler, bytes_for_ms
from recorder.transport.base import (
    ConnectionState,
    ConnectionStateChanged,
    LoopFellBehind,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    TransportEvent,
    TransportSink,
)

__all__ = ["DEFAULT_FILL_GAPS_AFTER_MS", "DEFAULT_MAX_QUEUED_S", "AudioBridge"]

log = logging.getLogger(__name__)

#: Most audio, per participant, waiting for the event loop (seconds). The loop
#: drains the queue every chunk (~100 ms); this rides out a stall of the loop
#: fifty times longer (a long garbage collection, a slow synchronous call) for
#: every participant at once, while bounding memory at 160 KB per participant.
DEFAULT_MAX_QUEUED_S = 5.0
#: A participant's frames missing this long (present, unmuted, connected) are
#: silence. Longer than a native thread's usual jitter; a native thread stalled
#: longer than this shows as a pause before the late audio.
DEFAULT_FILL_GAPS_AFTER_MS = 300.0
# States in which the channel is not delivering audio: an outage is a gap, not silence.
_NOT_DELIVERING = (
    ConnectionState.RECONNECTING,
    ConnectionState.FAILED,
    ConnectionState.DISCONNECTED,
)
# Chunks this close (ms) follow one another: their drops are one stretch.
_CONTIGUOUS_MS = 0.5
# A stalled loop drops every participant's chunks every 100 ms: one warning per
# interval, with the totals, is enough to see it happened and how much was lost.
_DROP_LOG_INTERVAL_S = 10.0


class AudioBridge:
    """Moves audio and events from a transport's threads onto the event loop.

    :meth:`push_frame` runs on a native thread once per 10 ms frame: it only
    appends to that participant's :class:`ChunkAssembler`. Whole chunks and
    events go into one queue, in the order they happened, and the loop is
    woken only when that queue was empty: at most once per chunk, and with
    many participants far less (one wake-up drains every chunk that is
    ready). Losing the loop (it closed while the native side still calls) is
    counted, never raised into the native thread.

    The queue holds at most ``max_queued_s`` of each participant's audio. When
    the loop falls that far behind, further chunks of that participant are
    dropped, counted (:attr:`dropped_chunks`, :attr:`dropped_ms` per uid) and
    logged (rate-limited, from the loop), and each stretch dropped reaches the
    sink as an :class:`LoopFellBehind` event, so the recording can say what it
    lost. Events are never dropped: they are rare and carry state (who is
    present, who is muted, the connection).

    Args:
        loop: the event loop the sink lives on.
        sink: receives events and chunks, on the loop.
        clock_ms: the transport's clock (milliseconds since it started).
        chunk_ms: chunk length handed to the sink.
        max_queued_s: most audio of one participant waiting for the loop.
        fill_gaps_after_ms: if set, a present, unmuted participant whose frames
            have been missing this long (while connected) gets silence for the
            gap, by the clock, checked every ``chunk_ms`` on the loop.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sink: TransportSink,
        *,
        clock_ms: Callable[[], float] | None = None,
        chunk_ms: int = CHUNK_MS,
        max_queued_s: float = DEFAULT_MAX_QUEUED_S,
        fill_gaps_after_ms: float | None = None,
    ) -> None:
        if max_queued_s <= 0:
            raise ValueError("max_queued_s must be positive")
        if fill_gaps_after_ms is not None and fill_gaps_after_ms < chunk_ms:
            raise ValueError("fill_gaps_after_ms must be at least one chunk")
        self._loop = loop
        self._sink = sink
        self._chunk_ms = chunk_ms
        origin = time.monotonic()
        self.clock_ms = clock_ms or (lambda: (time.monotonic() - origin) * 1000.0)
        self.max_queued_ms = max_queued_s * 1000.0
        self._max_queued_bytes = bytes_for_ms(self.max_queued_ms)
        self._assemblers: dict[int, ChunkAssembler] = {}
        self._lock = threading.Lock()
        self._create_lock = threading.Lock()
        # deque.append/popleft are atomic in CPython: the native threads produce,
        # the loop consumes, and _wake_pending only ever causes a spare wake-up.
        self._ready: deque[tuple[int, Chunk] | TransportEvent] = deque()
        self._wake_pending = False
        # Bytes queued per uid = queued - taken. Each dict has one writer (native
        # threads under _lock, the loop), so neither needs a lock on the loop side;
        # a stale read of _taken only overstates the queue for a moment.
        self._queued_bytes: dict[int, int] = {}
        self._taken_bytes: dict[int, int] = {}
        self.wakeups = 0
        self.frames = 0
        self.chunks = 0
        self.lost_after_close = 0
        self.callback_errors = 0
        self.dropped_chunks = 0
        self._dropped_ms: dict[int, float] = {}  # written under _lock
        # Each uid's stretches dropped since the loop last looked: [from, to), under _lock.
        self._drop_runs: dict[int, list[list[float]]] = {}
        self._drops_seen = 0
        self._drops_logged = 0
        self._drop_logged_at: float | None = None
        # Gap filling (loop side, under _lock where the native side writes too).
        self._fill_after_ms = fill_gaps_after_ms
        self._heard_ms: dict[int, float] = {}  # each uid's last frame (or join, unmute)
        self._filled_until: dict[int, float] = {}  # end of the silence given for a gap
        self._audible: dict[int, float] = {}  # present and unmuted uids, since when
        self._delivering = True
        self._fill_timer: asyncio.TimerHandle | None = None
        self.filled_ms = 0.0

    @property
    def dropped_ms(self) -> dict[int, float]:
        """Audio dropped because the loop fell behind, in ms per uid (a snapshot)."""
        with self._lock:
            return dict(self._dropped_ms)

    @property
    def dropped_ms_total(self) -> float:
        """All audio dropped because the loop fell behind, in ms."""
        return sum(self.dropped_ms.values())

    def _assembler(self, uid: int) -> ChunkAssembler:
        with self._create_lock:
            assembler = self._assemblers.get(uid)
            if assembler is None:
                # Stagger chunk boundaries per participant (docs/architecture.md,
                # "Decisions and measurements"): the first chunk is 50-100% of a
                # normal one, derived from the uid.
                half = self._chunk_ms // 2
                first = half + zlib.crc32(uid.to_bytes(8, "little")) % (half + 1)
                assembler = ChunkAssembler(chunk_ms=self._chunk_ms, first_chunk_ms=max(50, first))
                self._assemblers[uid] = assembler
        return assembler

    def push_frame(
        self, uid: int, frame: bytes | bytearray | memoryview, at_ms: float | None = None
    ) -> None:
        """Called on a native thread for every 10 ms frame of ``uid``; never raises."""
        try:
            self.frames += 1
            assembler = self._assemblers.get(uid) or self._assembler(uid)
            # Uncontended (~0.1 us): only end_audio and the gap filler compete.
            with self._lock:
                arrival = self.clock_ms() if at_ms is None else at_ms
                self._heard_ms[uid] = arrival
                chunk = assembler.append(frame, arrival)
                if chunk is not None:
                    self.chunks += 1
                    if not self._admit(uid, chunk):
                        return
            if chunk is not None:
                self._enqueue((uid, chunk))
        except Exception:  # a native thread must never see our exceptions
            self.callback_errors += 1
            if self.callback_errors in (1, 100, 10_000):
                log.exception("! audio callback failed (%d so far)", self.callback_errors)

    def end_audio(self, uid: int) -> None:
        """Deliver what ``uid`` has gathered (they muted or left); native thread."""
        assembler = self._assemblers.get(uid)
        if assembler is None:
            return
        with self._lock:
            chunk = assembler.flush()
            if chunk is None or not self._admit(uid, chunk):
                return
        self._enqueue((uid, chunk))

    def push_event(self, event: TransportEvent) -> None:
        """Hand a participant or connection event to the loop; native thread."""
        if isinstance(event, ParticipantLeft) or (
            isinstance(event, ParticipantMuted) and event.is_muted
        ):
            self.end_audio(event.uid)
        self._enqueue(event)

    def _admit(self, uid: int, chunk: Chunk) -> bool:
        """Count ``chunk`` in, or drop it if ``uid``'s queue is full; under ``_lock``."""
        queued = self._queued_bytes.get(uid, 0)
        size = len(chunk.pcm)
        if queued + size - self._taken_bytes.get(uid, 0) > self._max_queued_bytes:
            self.dropped_chunks += 1
            duration = chunk.duration_ms
            self._dropped_ms[uid] = self._dropped_ms.get(uid, 0.0) + duration
            runs = self._drop_runs.setdefault(uid, [])
            end = chunk.start_ms + duration
            if runs and abs(chunk.start_ms - runs[-1][1]) < _CONTIGUOUS_MS:
                runs[-1][1] = end  # the next chunk dropped too: one stretch
            else:  # a chunk was admitted in between: its own stretch
                runs.append([chunk.start_ms, end])
            return False
        self._queued_bytes[uid] = queued + size
        return True

    def _enqueue(self, item: tuple[int, Chunk] | TransportEvent) -> None:
        self._ready.append(item)
        if self._wake_pending:
            return
        self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
            self.wakeups += 1
        except RuntimeError:  # the loop closed under us: shutting down
            self.lost_after_close += 1

    def _drain(self) -> None:
        """On the loop: hand every queued chunk and event to the sink, in order."""
        # Cleared before draining: an item queued from now on schedules a new drain.
        self._wake_pending = False
        ready, sink, taken = self._ready, self._sink, self._taken_bytes
        while ready:
            item = ready.popleft()
            if isinstance(item, tuple):
                uid, chunk = item
                taken[uid] = taken.get(uid, 0) + len(chunk.pcm)
                sink.on_audio(uid, chunk)
            else:
                if self._fill_after_ms is not None:
                    self._track_audible(item)
                sink.on_event(item)
        if self.dropped_chunks != self._drops_seen:
            self._report_drops()

    def _report_drops(self) -> None:
        """On the loop: hand each stretch dropped so far to the sink, and warn (rate-limited)."""
        self._drops_seen = self.dropped_chunks  # before taking: a later drop reports again
        for uid, from_ms, to_ms in self._take_drop_runs():
            self._sink.on_event(LoopFellBehind(uid, from_ms, to_ms))
        self._log_drops()

    def _take_drop_runs(self) -> list[tuple[int, float, float]]:
        """The stretches dropped since the last call, as (uid, from_ms, to_ms)."""
        with self._lock:
            runs, self._drop_runs = self._drop_runs, {}
        return [(uid, run[0], run[1]) for uid, stretches in runs.items() for run in stretches]

    # -- gaps are silence -----------------------------------------------------------

    def _track_audible(self, event: TransportEvent) -> None:
        """On the loop, in order with the audio: who could be heard now, and since when."""
        with self._lock:
            if isinstance(event, ParticipantJoined) or (
                isinstance(event, ParticipantMuted) and not event.is_muted
            ):
                self._audible[event.uid] = event.at_ms
                self._hear(event.uid, event.at_ms)
            elif isinstance(event, ParticipantLeft | ParticipantMuted):
                self._audible.pop(event.uid, None)
            elif isinstance(event, ConnectionStateChanged):
                was = self._delivering
                self._delivering = event.state not in _NOT_DELIVERING
                if self._delivering and not was:
                    for uid in self._audible:  # the outage itself stays a gap
                        self._hear(uid, event.at_ms)
        if self._audible and self._delivering and self._fill_timer is None:
            self._fill_timer = self._loop.call_later(self._chunk_ms / 1000, self.fill_gaps)
        elif self._fill_timer is not None and (not self._audible or not self._delivering):
            self._fill_timer.cancel()
            self._fill_timer = None

    def fill_gaps(self) -> None:
        """On the loop, every chunk (its timer; tests call it): silence where frames stopped."""
        self._fill_timer = None
        assert self._fill_after_ms is not None
        ready: list[tuple[int, Chunk]] = []
        now = self.clock_ms()
        # Up to one frame before now: a frame arriving now covers the 10 ms before it.
        until = now - FRAME_MS
        with self._lock:
            if not self._delivering:
                return
            for uid, since in self._audible.items():
                heard = self._stale(uid, now, since, ready)
                if heard is None:
                    continue
                start = max(heard, self._filled_until.get(uid, heard))
                while until - start >= FRAME_MS:
                    span = min(float(self._chunk_ms), until - start)
                    span -= span % FRAME_MS
                    chunk = Chunk(bytes(bytes_for_ms(span)), start, False)
                    start += span
                    self.filled_ms += span
                    if self._admit(uid, chunk):
                        ready.append((uid, chunk))
                self._filled_until[uid] = start
        if ready:  # already on the loop: hand them over now, no wake-up needed
            self._deliver_now(ready)
        if self._audible and self._fill_timer is None:
            self._fill_timer = self._loop.call_later(self._chunk_ms / 1000, self.fill_gaps)

    def _hear(self, uid: int, at_ms: float) -> None:
        """Count ``uid`` as heard at ``at_ms`` (joined, unmuted, back); under ``_lock``."""
        self._heard_ms[uid] = max(self._heard_ms.get(uid, 0.0), at_ms)

    def _stale(
        self, uid: int, now: float, since: float, ready: list[tuple[int, Chunk]]
    ) -> float | None:
        """When ``uid`` was last heard, if long enough ago to fill; else None.

        Its partial chunk then goes to ``ready``. Under ``_lock``.
        """
        assert self._fill_after_ms is not None
        heard = max(self._heard_ms.get(uid, since), since)
        if now - heard < self._fill_after_ms:
            return None
        assembler = self._assemblers.get(uid)
        partial = assembler.flush() if assembler is not None else None
        if partial is not None and self._admit(uid, partial):
            ready.append((uid, partial))
        return heard

    def _deliver_now(self, ready: list[tuple[int, Chunk]]) -> None:
        """On the loop: deliver ``ready`` after everything queued before it."""
        self._ready.extend(ready)
        self._drain()

    def _log_drops(self) -> None:
        """Warn that audio was dropped, at most once per interval (on the loop)."""
        now = self._loop.time()
        if self._drop_logged_at is not None and now - self._drop_logged_at < _DROP_LOG_INTERVAL_S:
            return
        self._drop_logged_at = now
        self._drops_logged = self.dropped_chunks
        dropped = self.dropped_ms
        worst = sorted(dropped.items(), key=lambda item: -item[1])[:5]
        log.warning(
            "! the event loop fell more than %.1f s behind the audio: %d chunks (%.0f ms) "
            "dropped so far; most by uid: %s",
            self.max_queued_ms / 1000,
            self.dropped_chunks,
            sum(dropped.values()),
            ", ".join(f"{uid} {ms:.0f} ms" for uid, ms in worst),
        )
