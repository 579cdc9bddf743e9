"""The native audio tap: participants' frames gathered in C, never one by one in Python.

The optional C extension ``recorder.transport.agora._tap`` (built by the
package build when a compiler is present; docs/providers.md, "Agora: the
native tap") owns an observer table whose before-mixing slot is a C function.
Registered through the wrapper's raw binding
``agora_local_user_register_audio_frame_observer``, it receives every 10 ms
frame on the SDK's thread without the GIL, gathers each participant's chunks
exactly as :class:`~recorder.audio.ChunkAssembler` does, and queues them with
the participant events in order. The event loop is woken through a file
descriptor when the first item is ready and collects everything in one call.

Without the extension, with a transport clock the tap cannot follow, or with
``RECORDER_AGORA_TAP=python``, the Agora transport keeps its Python frame
observer and :class:`~recorder.transport.bridge.AudioBridge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import logging
import math
import os
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from recorder.audio import CHUNK_MS, Chunk
from recorder.transport.base import ParticipantLeft, ParticipantMuted, TransportEvent, TransportSink
from recorder.transport.bridge import DEFAULT_MAX_QUEUED_S, AudioBridge

__all__ = [
    "TAP_ENV",
    "LinearClock",
    "NativeAudioBridge",
    "TapRegistration",
    "binding_module",
    "load_tap",
    "make_bridge",
    "tap_status",
]

log = logging.getLogger(__name__)

#: ``python`` forces the Python frame observer even when the tap is built.
TAP_ENV = "RECORDER_AGORA_TAP"


def _import_tap() -> tuple[ModuleType | None, str]:
    try:
        module = importlib.import_module("recorder.transport.agora._tap")
    except ImportError as exc:
        return None, f"the native tap is not built ({exc})"
    return module, "built"


def load_tap() -> ModuleType | None:
    """The tap extension, or None when it is not built or the Python observer is forced."""
    if os.environ.get(TAP_ENV, "").strip().lower() in ("python", "off", "0"):
        return None
    return _import_tap()[0]


def tap_status() -> tuple[bool, str]:
    """``(native, one line)``: which Agora frame path this process would use, and why."""
    module, why = _import_tap()
    if module is None:
        return False, (
            f"Python frame observer: {why}; reinstall with a C compiler present "
            "(pip install .) for the native tap"
        )
    if os.environ.get(TAP_ENV, "").strip().lower() in ("python", "off", "0"):
        return False, f"Python frame observer: forced by {TAP_ENV}; the native tap is built"
    return True, f"native tap ({os.path.basename(module.__file__ or '_tap')})"


class LinearClock:
    """A transport clock the tap can follow: ``(monotonic - origin_s) * 1000 * rate`` ms.

    Never negative. A clock whose zero is not known yet (a test meeting that
    starts when the bot connects) starts with ``origin_s=math.inf`` (reads 0)
    and is moved by :meth:`rebase` later; the tap follows.

    Args:
        origin_s: ``time.monotonic()`` at zero (default: now).
        rate: how fast the clock runs against real time (tests speed meetings up).
    """

    __slots__ = ("_listeners", "origin_s", "rate")

    def __init__(self, origin_s: float | None = None, rate: float = 1.0) -> None:
        self.origin_s = time.monotonic() if origin_s is None else origin_s
        self.rate = rate
        self._listeners: list[Callable[[float, float], None]] = []

    def __call__(self) -> float:
        """Milliseconds on this clock now."""
        return max(0.0, (time.monotonic() - self.origin_s) * 1000.0 * self.rate)

    def rebase(self, origin_s: float) -> None:
        """Zero is ``origin_s`` (a ``time.monotonic()``) from now on."""
        self.origin_s = origin_s
        for listener in self._listeners:
            listener(origin_s, self.rate)

    def listen(self, listener: Callable[[float, float], None]) -> None:
        """Call ``listener(origin_s, rate)`` on every :meth:`rebase`."""
        self._listeners.append(listener)


class TapRegistration:
    """One connection's tap, registered in place of the wrapper's frame observer.

    Args:
        bridge: the tap's bridge.
        local_user: the wrapper's ``LocalUser`` (its ``user_handle``).
        binding_module: the wrapper module holding the raw bindings
            (``agora.rtc.local_user``).
    """

    def __init__(self, bridge: NativeAudioBridge, local_user: Any, binding_module: Any) -> None:
        self._tap = bridge.tap
        self._module = binding_module
        handle = local_user.user_handle
        if not isinstance(handle, int):
            handle = ctypes.cast(handle, ctypes.c_void_p).value
        self._handle = int(handle or 0)
        self.registered = False

    def register(self) -> int:
        """Register the tap's table (a blocking SDK call: run it off the loop)."""
        register = self._module.agora_local_user_register_audio_frame_observer
        table = ctypes.cast(ctypes.c_void_p(self._tap_address()), register.argtypes[1])
        self._tap.attach(self._handle)
        result = int(register(self._handle, table))
        if result != 0:
            self._tap.detach()
            return result
        self.registered = True
        return 0

    def unregister(self) -> None:
        """Unregister (the SDK waits for a callback in flight), then detach the tap."""
        if self.registered:
            self.registered = False
            self._module.agora_local_user_unregister_audio_frame_observer(self._handle)
        self._tap.detach()  # returns once no callback is inside the tap

    def _tap_address(self) -> int:
        module = importlib.import_module("recorder.transport.agora._tap")
        return int(module.table_address())


def binding_module(sdk_base: ModuleType) -> Any:
    """The wrapper module with the raw frame-observer bindings, or None (the fake has none)."""
    package = getattr(sdk_base, "__name__", "").rpartition(".")[0]
    if not package:
        return None
    try:
        module = importlib.import_module(f"{package}.local_user")
    except ImportError:
        return None
    needed = (
        "agora_local_user_register_audio_frame_observer",
        "agora_local_user_unregister_audio_frame_observer",
    )
    if not all(hasattr(module, name) for name in needed):
        return None
    return module


class _Counter:
    """A bridge counter read from the tap (the base class's own assignment is ignored).

    ``own``: the tap has it as an attribute of its own (read at every collect, so not
    through ``stats()``, which builds a dict).
    """

    def __init__(self, key: str, *, own: bool = False) -> None:
        self._key = key
        self._own = own

    def __get__(self, bridge: NativeAudioBridge | None, owner: type | None = None) -> Any:
        if bridge is None:
            return self
        if not hasattr(bridge, "tap"):
            return 0
        if self._own:
            return int(getattr(bridge.tap, self._key))
        return int(bridge.tap.stats()[self._key])

    def __set__(self, bridge: NativeAudioBridge, value: int) -> None:
        pass


class NativeAudioBridge(AudioBridge):
    """An :class:`AudioBridge` whose frames, chunks and queue live in the native tap.

    Participant events still come from Python (the wrapper's other observers)
    and enter the tap's queue in order with the audio, after flushing the
    chunk a mute or leave ends. Gap filling and the sink's view are those of
    the base class.

    Args:
        loop: the event loop the sink lives on.
        sink: receives events and chunks, on the loop.
        tap_module: the ``_tap`` extension.
        clock: the transport's clock (the tap stamps frames on it, in C).
        chunk_ms: chunk length.
        max_queued_s: most audio of one participant waiting for the loop.
        fill_gaps_after_ms: as :class:`AudioBridge`.
    """

    frames = _Counter("frames")
    chunks = _Counter("chunks")
    wakeups = _Counter("wakeups")
    dropped_chunks = _Counter("dropped_chunks", own=True)
    callback_errors = _Counter("bad_frames")  # frames the tap could not take (a bad uid)

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sink: TransportSink,
        *,
        tap_module: ModuleType,
        clock: LinearClock,
        chunk_ms: int = CHUNK_MS,
        max_queued_s: float = DEFAULT_MAX_QUEUED_S,
        fill_gaps_after_ms: float | None = None,
    ) -> None:
        super().__init__(
            loop,
            sink,
            clock_ms=clock,
            chunk_ms=chunk_ms,
            max_queued_s=max_queued_s,
            fill_gaps_after_ms=fill_gaps_after_ms,
        )
        origin = clock.origin_s if math.isfinite(clock.origin_s) else time.monotonic()
        self.tap: Any = tap_module.Tap(
            Chunk, origin, clock.rate, chunk_ms=chunk_ms, max_queued_ms=max_queued_s * 1000.0
        )
        clock.listen(self.tap.set_clock)
        self._fd: int | None = self.tap.fileno()
        loop.add_reader(self._fd, self._collect)

    @property
    def dropped_ms(self) -> dict[int, float]:
        """Audio dropped because the loop fell behind, in ms per uid (a snapshot)."""
        return dict(self.tap.dropped_ms())

    @property
    def stats(self) -> dict[str, int]:
        """The tap's counters (frames, chunks, wake-ups, drops, bad frames, ...).

        ``deferred_frames`` counts the frames a callback (Agora's audio thread) found
        the tap's lock held and left for its next holder rather than wait;
        ``most_lock_wait_ns`` is the longest a callback waited for it, which it does
        only once ``max_deferred_ms`` of audio is deferred.
        """
        return dict(self.tap.stats())

    def push_frame(
        self, uid: int, frame: bytes | bytearray | memoryview, at_ms: float | None = None
    ) -> None:
        """One frame from Python (tests): as the C callback would take it."""
        self.tap.push_frame(uid, frame, self.clock_ms() if at_ms is None else at_ms)

    def end_audio(self, uid: int) -> None:
        """Deliver what ``uid`` has gathered (they muted or left); any thread."""
        self.tap.end_audio(uid)
        self._closed_wake()

    def push_event(self, event: TransportEvent) -> None:
        """Queue ``event`` behind the audio before it; a mute or leave flushes that uid first."""
        flush: int | None = None
        if isinstance(event, ParticipantLeft) or (
            isinstance(event, ParticipantMuted) and event.is_muted
        ):
            flush = event.uid
        self.tap.push_event(event, flush)
        self._closed_wake()

    def _collect(self) -> None:
        """On the loop (the descriptor is readable): deliver every ready item, in order."""
        sink, fill = self._sink, self._fill_after_ms is not None
        on_audio = sink.on_audio  # looked up once per collect, not per chunk
        for item in self.tap.collect():
            if type(item) is tuple:
                on_audio(item[0], item[1])
            else:
                if fill:
                    self._track_audible(item)
                sink.on_event(item)
        if self.dropped_chunks != self._drops_seen:
            self._report_drops()

    def _take_drop_runs(self) -> list[tuple[int, float, float]]:
        runs: list[tuple[int, float, float]] = self.tap.drop_runs()
        return runs

    def _hear(self, uid: int, at_ms: float) -> None:
        self.tap.hear(uid, at_ms)

    def _stale(
        self, uid: int, now: float, since: float, ready: list[tuple[int, Chunk]]
    ) -> float | None:
        heard: float | None = self.tap.stale(uid, now, self._fill_after_ms, since)
        return heard

    def _deliver_now(self, ready: list[tuple[int, Chunk]]) -> None:
        self._collect()  # the partial chunks the gaps flushed, and all before them
        for uid, chunk in ready:
            self._sink.on_audio(uid, chunk)

    def _closed_wake(self) -> None:
        """After :meth:`close`, nothing watches the descriptor: collect on the loop."""
        if self._fd is None:
            with contextlib.suppress(RuntimeError):  # the loop closed: shutting down
                self._loop.call_soon_threadsafe(self._collect)

    def close(self) -> None:
        """On the loop: stop watching the descriptor and deliver what is left."""
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        self.tap.detach()
        self._collect()


def make_bridge(
    loop: asyncio.AbstractEventLoop,
    sink: TransportSink,
    *,
    clock: Callable[[], float] | LinearClock,
    fill_gaps_after_ms: float | None,
    tap_module: ModuleType | None,
) -> AudioBridge:
    """The native bridge when the tap is usable with this clock, else the Python one."""
    if tap_module is not None and isinstance(clock, LinearClock):
        return NativeAudioBridge(
            loop, sink, tap_module=tap_module, clock=clock, fill_gaps_after_ms=fill_gaps_after_ms
        )
    return AudioBridge(loop, sink, clock_ms=clock, fill_gaps_after_ms=fill_gaps_after_ms)
