"""CPU per participant-second through Agora's real Python wrapper, at 50/200/500 speakers.

The SDK's Python wrapper (agora-python-server-sdk 2.4.10, fetched and pinned by
tests/agora_standin) runs unmodified on the native stand-in, whose native
thread delivers a 10 ms frame per speaker on an absolute 10 ms clock, as
Agora's library would. Four runs per size, each ``BENCH_SECONDS`` (default
10) of speech from every speaker:

* native alone: no frame observer registered (the stand-in's own cost);
* wrapper: a frame observer that does nothing (the wrapper's own per-frame
  path: thunk, struct decode, copy, dataclass, dispatch);
* (a) Python observer: the real AgoraTransport through the wrapper's frame
  observer, AudioBridge and pipeline (STT client, turns, SQLite) against the
  streaming emulator, which runs in its own process (its CPU is not counted);
* (b) native tap: the same recorder with the frames taken by the C tap
  (docs/providers.md, "Agora: the native tap");
* (c) official SDK: the ``assemblyai`` package's ``StreamingClient`` (a
  websocket, a write thread and a read thread per speaker), fed each 100 ms
  chunk by the wrapper's Python per-frame observer;
* (d) minimal client: the wrapper's Python per-frame observer appending to a
  buffer per speaker and handing each 100 ms chunk to the loop, which sends it
  on that speaker's websockets connection to the same emulator (no turns, no
  SQL, no pacing): the floor for any Python bot on the wrapper's per-frame path;
* (e) tap floor: the native tap handing each chunk to a sink that sends it, one
  write, on that speaker's lean websocket (recorder.stt.wire), kept open: no
  pipeline, no turns, no SQL. The floor of (b)'s own architecture.

Prints, per size and path: process CPU ms per participant-second (every
thread), the ratio a/b, the native thread's tick lateness p50/p99/max, how
many chunks reached the pipeline more than 50 ms after their last sample
(and the worst; the bridge's stall check's chunks, late by design, apart),
the garbage collector's pauses meanwhile (each holds every participant's
audio; full collections the longest), and audio dropped. Run: ``python bench/bench_agora_path.py``
(``BENCH_SIZES=50,200`` to choose sizes, ``BENCH_PATHS=tap`` for one path,
``BENCH_ROUNDS=5`` for the medians of five rounds of every path).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import logging
import math
import os
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from agora_standin.control import NativeControl  # noqa: E402
from agora_standin.wrapper import Unavailable, prepare_site  # noqa: E402

from bench.support import open_bench_wire, start_emulator  # noqa: E402
from recorder.app import RecordingOptions, record  # noqa: E402
from recorder.audio import Chunk, bytes_for_ms  # noqa: E402
from recorder.bot import MeetingRecorder  # noqa: E402
from recorder.config import Config  # noqa: E402
from recorder.tonecode import SENTENCE_GAP_MS as SENTENCE_GAP_MS_CODEC  # noqa: E402
from recorder.tonecode import encode  # noqa: E402
from recorder.transport.agora.preflight import load_agora_sdk  # noqa: E402
from recorder.transport.agora.service import (  # noqa: E402
    connection_configs,
    release_agora_service,
    shared_service,
)
from recorder.transport.agora.tap import TAP_ENV, NativeAudioBridge, load_tap  # noqa: E402
from recorder.transport.agora.transport import AgoraTransport  # noqa: E402
from recorder.transport.bridge import AudioBridge  # noqa: E402
from storage.store import TranscriptStore  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
#: Silence between one speaker's sentences (ms); see speech_for.
SENTENCE_GAP_MS = int(os.environ.get("BENCH_SENTENCE_GAP_MS", str(SENTENCE_GAP_MS_CODEC)))
#: A file name prefix: profile the loop's thread while the speakers speak (cProfile).
PROFILE = os.environ.get("BENCH_PROFILE", "")
#: ``0``: the floor (e) sends nothing (the tap and the loop's hand-over alone).
FLOOR_SENDS = os.environ.get("BENCH_FLOOR_SENDS", "1") != "0"
#: Rounds of every path per size; with more than one, figures and ratios are the medians
#: (this machine's figures move by a third between runs).
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
#: ``0`` skips the native-alone and no-op-observer runs (quicker while iterating).
BASELINES = os.environ.get("BENCH_BASELINES", "1") != "0"
APP_ID = "0123456789abcdef0123456789abcdef"
CHANNEL = "bench"
FRAME = bytes_for_ms(10)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def speech_for(uids: list[int]) -> dict[int, bytes]:
    """``SECONDS`` of tone-coded speech per speaker, each from a different place.

    Sentences are ``SENTENCE_GAP_MS`` apart: by default the codec's 1.2 s, longer than
    the socket's hold after a final (recorder.stt.hold), so every sentence opens a
    socket of its own (the worst case for socket churn); 500 is the median pause
    between one speaker's sentences on bench_cost's meetings.
    """
    pause = bytes(bytes_for_ms(SENTENCE_GAP_MS))
    codec_pause = bytes_for_ms(SENTENCE_GAP_MS_CODEC)
    said = (encode(f"word{i} alpha bravo charlie delta.") for i in range(60))
    speech = b"".join(audio[: len(audio) - codec_pause] + pause for audio in said)
    size = bytes_for_ms(SECONDS * 1000)
    while len(speech) < 2 * size:
        speech += speech
    out = {}
    for i, uid in enumerate(uids):
        at = (i * 7919 * FRAME) % (len(speech) - size) // FRAME * FRAME
        out[uid] = speech[at : at + size]
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def speak_and_measure(control: NativeControl, uids: list[int]) -> tuple[float, float]:
    """Every speaker says its speech; CPU seconds and wall seconds until all is delivered."""
    speech = speech_for(uids)
    channel = control.channel(CHANNEL)
    control.lib.standin_clear_lateness()
    # This thread is the bench's (it hands the stand-in its speech, then waits): its CPU
    # is neither Agora's nor ours, and is left out.
    cpu0, wall0, own0 = cpu_seconds(), time.monotonic(), time.thread_time()
    for uid in uids:
        channel.speak(uid, speech[uid])
    # Polled, not waited on: a waiter on the stand-in's condition wakes on every 10 ms
    # tick and contends for its lock, CPU the process would be charged for (~0.1 ms
    # per participant-second at 200 speakers) that is neither Agora's nor ours.
    deadline = time.monotonic() + SECONDS * 20 + 60
    while not control.wait_idle(0):
        if time.monotonic() > deadline:
            raise RuntimeError("the stand-in did not deliver everything")
        time.sleep(0.02)
    own = time.thread_time() - own0
    return cpu_seconds() - cpu0 - own, time.monotonic() - wall0


def sdk_only(control: NativeControl, sdk: Any, uids: list[int], *, observe: bool) -> float:
    """CPU ms per participant-second with the SDK's own objects and a no-op observer (or none)."""
    log_dir = Path(tempfile.mkdtemp())
    service = shared_service(sdk, APP_ID, log_dir)
    conn_config, publish_config = connection_configs(sdk, publish=False)
    conn = service.create_rtc_connection(conn_config, publish_config)

    class Nothing(sdk.audio_frame_observer.IAudioFrameObserver):  # type: ignore[misc]
        def on_playback_audio_frame_before_mixing(
            self, user: Any, channel: str, uid: str, frame: Any, state: int, vad: Any
        ) -> int:
            return 1

    conn.register_observer(sdk.connection_observer.IRTCConnectionObserver())
    conn.register_local_user_observer(sdk.local_user_observer.IRTCLocalUserObserver())
    conn.get_local_user().set_playback_audio_frame_before_mixing_parameters(1, 16000)
    if observe:
        conn.register_audio_frame_observer(Nothing(), 0, None)
    conn.connect(APP_ID, CHANNEL, "9999")
    control.wait_until(lambda: control.counts.get("on_user_joined", 0) == len(uids), 60)
    cpu, _ = speak_and_measure(control, uids)
    conn.disconnect()
    conn.release()
    return cpu * 1000 / (len(uids) * SECONDS)


LATE_MS = 50.0
FULL_CHUNK_MS = 100.0
CHUNK = bytes_for_ms(FULL_CHUNK_MS)


def official_sdk(control: NativeControl, sdk: Any, uids: list[int], url: str) -> float:
    """CPU ms per participant-second of the official SDK's streaming client (c)."""
    from assemblyai.streaming.v3 import (
        StreamingClient,
        StreamingClientOptions,
        StreamingEvents,
        StreamingParameters,
    )

    from recorder.config import DEFAULT_SPEECH_MODEL

    host = url.removesuffix("/v3/ws")
    clients = {}
    begun: list[int] = []
    turns: list[int] = []
    for uid in uids:
        client = StreamingClient(StreamingClientOptions(api_key="bench", api_host=host))
        client.on(StreamingEvents.Begin, lambda *_: begun.append(1))
        client.on(StreamingEvents.Turn, lambda *_: turns.append(1))
        params = StreamingParameters(sample_rate=16000, speech_model=DEFAULT_SPEECH_MODEL)  # type: ignore[call-arg,arg-type]
        client.connect(params)
        clients[str(uid)] = client
    buffers: dict[str, bytearray] = {}

    class Chunked(sdk.audio_frame_observer.IAudioFrameObserver):  # type: ignore[misc]
        def on_playback_audio_frame_before_mixing(
            self, user: Any, channel: str, uid: str, frame: Any, state: int, vad: Any
        ) -> int:
            buffer = buffers.get(uid)
            if buffer is None:
                buffer = buffers[uid] = bytearray()
            buffer += frame.buffer
            if len(buffer) >= CHUNK:
                clients[uid].stream(bytes(buffer))
                buffer.clear()
            return 1

    deadline = time.monotonic() + 60
    while len(begun) < len(uids) and time.monotonic() < deadline:
        time.sleep(0.05)
    if len(begun) < len(uids):
        raise RuntimeError(f"only {len(begun)} of {len(uids)} SDK sessions began")
    conn = observed_connection(control, sdk, uids, Chunked())
    cpu, _ = speak_and_measure(control, uids)
    if not turns:
        raise RuntimeError("the SDK sessions transcribed nothing")
    conn.disconnect()
    conn.release()
    for client in clients.values():
        client.disconnect(terminate=True)
    return cpu * 1000 / (len(uids) * SECONDS)


def observed_connection(control: NativeControl, sdk: Any, uids: list[int], frames: Any) -> Any:
    """A connection of the SDK's own objects with ``frames`` as its frame observer, all joined."""
    log_dir = Path(tempfile.mkdtemp())
    service = shared_service(sdk, APP_ID, log_dir)
    conn_config, publish_config = connection_configs(sdk, publish=False)
    conn = service.create_rtc_connection(conn_config, publish_config)
    conn.register_observer(sdk.connection_observer.IRTCConnectionObserver())
    conn.register_local_user_observer(sdk.local_user_observer.IRTCLocalUserObserver())
    conn.get_local_user().set_playback_audio_frame_before_mixing_parameters(1, 16000)
    conn.register_audio_frame_observer(frames, 0, None)
    conn.connect(APP_ID, CHANNEL, "9999")
    control.wait_until(lambda: control.counts.get("on_user_joined", 0) == len(uids), 60)
    return conn


async def minimal_client(control: NativeControl, sdk: Any, uids: list[int], url: str) -> float:
    """CPU ms per participant-second of the minimal chunked client (d)."""
    from websockets.asyncio.client import connect

    from recorder.config import DEFAULT_SPEECH_MODEL
    from recorder.stt.protocol import build_url

    loop = asyncio.get_running_loop()
    target = build_url(url, speech_model=DEFAULT_SPEECH_MODEL)
    sockets = {
        uid: await connect(target, additional_headers={"Authorization": "bench"}, compression=None)
        for uid in uids
    }

    async def drain(ws: Any) -> None:
        async for _ in ws:
            pass

    readers = [asyncio.create_task(drain(ws)) for ws in sockets.values()]
    buffers: dict[str, bytearray] = {}
    send = {str(uid): ws.send for uid, ws in sockets.items()}

    def deliver(uid: str, chunk: bytes) -> None:
        task = asyncio.ensure_future(send[uid](chunk))
        task.add_done_callback(lambda t: t.exception())

    class Chunked(sdk.audio_frame_observer.IAudioFrameObserver):  # type: ignore[misc]
        def on_playback_audio_frame_before_mixing(
            self, user: Any, channel: str, uid: str, frame: Any, state: int, vad: Any
        ) -> int:
            buffer = buffers.get(uid)
            if buffer is None:
                buffer = buffers[uid] = bytearray()
            buffer += frame.buffer
            if len(buffer) >= CHUNK:
                loop.call_soon_threadsafe(deliver, uid, bytes(buffer))
                buffer.clear()
            return 1

    log_dir = Path(tempfile.mkdtemp())
    service = shared_service(sdk, APP_ID, log_dir)
    conn_config, publish_config = connection_configs(sdk, publish=False)
    conn = service.create_rtc_connection(conn_config, publish_config)
    conn.register_observer(sdk.connection_observer.IRTCConnectionObserver())
    conn.register_local_user_observer(sdk.local_user_observer.IRTCLocalUserObserver())
    conn.get_local_user().set_playback_audio_frame_before_mixing_parameters(1, 16000)
    conn.register_audio_frame_observer(Chunked(), 0, None)
    conn.connect(APP_ID, CHANNEL, "9999")
    await asyncio.to_thread(
        control.wait_until, lambda: control.counts.get("on_user_joined", 0) == len(uids), 60
    )
    cpu, _ = await asyncio.to_thread(speak_and_measure, control, uids)
    await asyncio.to_thread(conn.disconnect)
    await asyncio.to_thread(conn.release)
    for ws in sockets.values():
        await ws.send('{"type": "Terminate"}')
    for ws in sockets.values():
        await ws.close()
    await asyncio.gather(*readers, return_exceptions=True)
    return cpu * 1000 / (len(uids) * SECONDS)


async def tap_floor(control: NativeControl, uids: list[int], url: str) -> float:
    """CPU ms per participant-second of the native tap and bare wire sends (e)."""
    from recorder.config import DEFAULT_SPEECH_MODEL
    from recorder.stt.protocol import build_url
    from recorder.transport.base import TransportEvent, TransportSink

    os.environ[TAP_ENV] = "native"
    target = build_url(url, speech_model=DEFAULT_SPEECH_MODEL)
    wires = {}
    for uid in uids:
        wire = await open_bench_wire(target, close_timeout_s=1.0)
        wire.receive(lambda text: None)
        wires[uid] = wire

    class Send(TransportSink):
        def on_event(self, event: TransportEvent) -> None:
            pass

        def on_audio(self, uid: int, chunk: Chunk) -> None:
            if FLOOR_SENDS:
                wires[uid].send_binary(chunk.pcm)

    with tempfile.TemporaryDirectory() as folder:
        transport = AgoraTransport(
            app_id=APP_ID, channel=CHANNEL, bot_uid=9999, log_dir=Path(folder) / "agora"
        )
        await transport.start(Send())
        present = transport.participants.present
        if not await asyncio.to_thread(control.wait_until, lambda: len(present()) >= len(uids), 60):
            raise RuntimeError("the speakers were not all announced")
        if not isinstance(transport.bridge, NativeAudioBridge):
            raise RuntimeError(f"asked for the tap, got {type(transport.bridge).__name__}")
        loop0, sys0 = time.thread_time(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
        cpu, _ = await asyncio.to_thread(speak_and_measure, control, uids)
        per = 1000 / (len(uids) * SECONDS)
        SPLIT["floor loop"] = (time.thread_time() - loop0) * per
        SPLIT["floor sys"] = (resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys0) * per
        await transport.stop()
    for wire in wires.values():
        wire.close()
    return cpu * 1000 / (len(uids) * SECONDS)


WRITES_PROFILE = cProfile.Profile(time.thread_time)  # CPU, not wall: it waits for the GIL


def profile_sqlite_writes() -> None:
    """With BENCH_PROFILE: profile the store's writing thread too (its batches); once."""
    from storage.sqlite_thread import SqliteBatches

    transact = SqliteBatches._transact

    def profiled(self: SqliteBatches, work: Any) -> Any:
        WRITES_PROFILE.enable()
        try:
            return transact(self, work)
        finally:
            WRITES_PROFILE.disable()

    SqliteBatches._transact = profiled  # type: ignore[method-assign]


def thread_cpu() -> dict[int, float]:
    """CPU seconds (user and kernel) of each of this process's threads, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def by_thread(before: dict[int, float], after: dict[int, float], per: float) -> str:
    """Where the CPU went, by thread: Python's by name (the loop, the SQLite writer, the
    audio files), every other (the SDK's, the tap's callbacks) as "native"."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    loop_id = threading.get_native_id()
    spent: dict[str, float] = {}
    for tid, seconds in after.items():
        used = seconds - before.get(tid, 0.0)
        name = "loop" if tid == loop_id else names.get(tid, "native")
        name = re.sub(r"[_-]\d+$", "", name.split(" ")[0])
        if name == "asyncio":  # to_thread's: while speaking, only the bench's wait
            name = "bench's wait (left out)"
        spent[name] = spent.get(name, 0.0) + used * per
    top = sorted(spent.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {ms:.3f}" for name, ms in top if ms >= 0.005)


class Arrivals:
    """How late each chunk reaches the pipeline: its last sample to the loop handing it over.

    Chunks the bridge's stall check made are kept apart (:attr:`stall_late_ms`): the
    silence it fills for a participant whose frames stopped, and the partial chunk it
    flushes then. Both exist only once frames have been missing for the check's 300 ms
    (recorder.transport.bridge.DEFAULT_FILL_GAPS_AFTER_MS), so they are that late by
    design, not because the tap or the loop fell behind.
    """

    def __init__(self) -> None:
        self.late_ms: list[float] = []
        self.stall_late_ms: list[float] = []
        self.clock: Any = None
        self._filled: set[int] = set()  # ids of the gap silence being delivered
        self._flushed: set[int] = set()  # uids whose partial chunk the check flushed

    def reset(self) -> None:
        self.late_ms, self.stall_late_ms = [], []
        self._filled.clear()
        self._flushed.clear()

    def install(self) -> None:
        original = MeetingRecorder.on_audio
        arrivals = self

        def on_audio(recorder: MeetingRecorder, uid: int, chunk: Chunk) -> None:
            if arrivals.clock is not None:
                late = arrivals.clock() - chunk.end_ms
                if id(chunk) in arrivals._filled or (
                    uid in arrivals._flushed and chunk.duration_ms < FULL_CHUNK_MS
                ):
                    arrivals._flushed.discard(uid)
                    arrivals.stall_late_ms.append(late)
                else:
                    arrivals.late_ms.append(late)
            original(recorder, uid, chunk)

        MeetingRecorder.on_audio = on_audio  # type: ignore[method-assign,assignment]
        for bridge in (AudioBridge, NativeAudioBridge):  # the Python path's and the tap's
            self._watch_stall_check(bridge)

    def _watch_stall_check(self, bridge: Any) -> None:
        """Note what ``bridge``'s stall check flushes (``_stale``) and fills (``_deliver_now``)."""
        stale, deliver_now = bridge._stale, bridge._deliver_now
        arrivals = self

        def checked(instance: AudioBridge, uid: int, *args: Any) -> float | None:
            heard: float | None = stale(instance, uid, *args)
            if heard is not None:
                arrivals._flushed.add(uid)
            return heard

        def filled(instance: AudioBridge, ready: list[tuple[int, Chunk]]) -> None:
            arrivals._filled = {id(chunk) for _, chunk in ready}
            try:
                deliver_now(instance, ready)
            finally:
                arrivals._filled = set()
                arrivals._flushed.clear()

        bridge._stale = checked
        bridge._deliver_now = filled


class Collections:
    """The garbage collector's pauses while the speakers speak.

    Each holds the GIL, so every participant's audio waits behind it: full
    (generation 2) collections are the usual cause of a chunk handed over late at
    500 speakers; the young ones are shown beside them.
    """

    def __init__(self) -> None:
        self.pauses_ms: list[tuple[int, float]] = []  # (generation, ms)
        self.watching = False
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if not self.watching:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append(
                (info["generation"], (time.perf_counter() - self._started) * 1000)
            )

    def line(self) -> str:
        full = [ms for generation, ms in self.pauses_ms if generation == 2]
        young = [ms for generation, ms in self.pauses_ms if generation < 2]
        return (
            f"GC full collections {len(full)} (longest {max(full, default=0.0):.0f} ms), "
            f"young {len(young)} (longest {max(young, default=0.0):.0f} ms), "
            f"{sum(full) + sum(young):.0f} ms in all"
        )


ARRIVALS = Arrivals()
COLLECTIONS = Collections()
#: The last recorder run's CPU split, ms per participant-second: the loop's thread, kernel.
SPLIT: dict[str, float] = {}
#: The last tap run's frames deferred past its held lock, and the longest a frame
#: (Agora's thread) waited for that lock (only past the deferred limit), ms.
TAP_LOCK = {"deferred": 0, "wait_ms": 0.0}
THREADS: dict[str, str] = {}  # where the last recorder run's CPU went, by thread


async def with_recorder(
    control: NativeControl, uids: list[int], url: str, *, tap: bool
) -> tuple[float, Any]:
    """CPU ms per participant-second of the whole recorder path, and the transport."""
    os.environ[TAP_ENV] = "native" if tap else "python"
    ARRIVALS.reset()
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        async with await TranscriptStore.open(db, auto_migrate=True) as store:
            transport = AgoraTransport(
                app_id=APP_ID, channel=CHANNEL, bot_uid=9999, log_dir=Path(folder) / "agora"
            )
            stop = asyncio.Event()
            # Repairs go to the same emulator (it serves the async API on its port).
            base = url.replace("ws://", "http://", 1).removesuffix("/v3/ws")
            config = Config(
                database_url=db, assemblyai_api_key="bench", stt_url=url, async_url=base
            )
            options = RecordingOptions(sessions_per_minute=100_000)
            task = asyncio.create_task(
                record(config, transport, options=options, store=store, stop=stop)
            )
            ARRIVALS.clock = transport.clock_ms
            present = transport.participants.present
            joined = await asyncio.to_thread(
                control.wait_until, lambda: len(present()) >= len(uids), 60
            )
            if not joined:
                raise RuntimeError("the speakers were not all announced")
            if isinstance(transport.bridge, NativeAudioBridge) != tap:
                raise RuntimeError(f"asked for tap={tap}, got {type(transport.bridge).__name__}")
            profiler = cProfile.Profile(time.thread_time) if PROFILE else None
            if profiler is not None:
                profiler.enable()  # the loop's thread only: where the Python time goes
            loop0, sys0 = time.thread_time(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
            threads0 = thread_cpu()
            COLLECTIONS.pauses_ms, COLLECTIONS.watching = [], True
            cpu, _ = await asyncio.to_thread(speak_and_measure, control, uids)
            # The speaking window is over: what the recording's end flushes is not counted.
            ARRIVALS.clock = None
            COLLECTIONS.watching = False
            if tap:  # the recording's worst, from its join: Agora's thread waiting on ours
                stats = transport.bridge.stats
                TAP_LOCK.update(
                    deferred=stats["deferred_frames"], wait_ms=stats["most_lock_wait_ns"] / 1e6
                )
            per = 1000 / (len(uids) * SECONDS)
            SPLIT["loop"] = (time.thread_time() - loop0) * per
            THREADS["recorder"] = by_thread(threads0, thread_cpu(), per)
            SPLIT["sys"] = (resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys0) * per
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(f"{PROFILE}.{'tap' if tap else 'python'}.{len(uids)}")
                WRITES_PROFILE.dump_stats(f"{PROFILE}.sqlite.{len(uids)}")
                WRITES_PROFILE.clear()  # the next run starts afresh
            stop.set()
            await task
    return cpu * 1000 / (len(uids) * SECONDS), transport


OUT = sys.stdout  # figures go here; the SDK's own prints go nowhere


def say(text: str) -> None:
    print(text, file=OUT, flush=True)


def targets(
    size: int, cost: dict[str, float], late: tuple[list[float], list[float]] | None
) -> list[str]:
    """Issue 13's targets for the native tap at this size: each with its figure, met or not."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    tap = cost["tap"]
    lines = []
    if size == 200:
        lines.append(f"200 speakers: (b) {tap:.3f} <= 0.5 ms/participant-s: {verdict(tap <= 0.5)}")
        if "python" in cost:
            ratio = cost["python"] / tap
            lines.append(f"200 speakers: (a)/(b) {ratio:.1f}x >= 5x: {verdict(ratio >= 5)}")
        if "sdk" in cost:
            ratio = cost["sdk"] / tap
            lines.append(f"200 speakers: (c)/(b) {ratio:.1f}x >= 4x: {verdict(ratio >= 4)}")
    if size == 500 and late is not None:
        native, arrivals = late
        p99, worst = percentile(native, 0.99), max(native, default=0.0)
        sent_late = sum(1 for ms in arrivals if ms > LATE_MS)
        lines.append(
            f"500 speakers: native lateness p99 {p99:.1f} <= 10 ms and max {worst:.1f} <= 20 ms: "
            f"{verdict(p99 <= 10 and worst <= 20)}"
        )
        lines.append(
            f"500 speakers: chunks more than {LATE_MS:.0f} ms late {sent_late} = 0: "
            f"{verdict(sent_late == 0)}"
        )
    return lines


async def one_round(
    control: NativeControl,
    site: Any,
    sdk: Any,
    uids: list[int],
    url: str,
    paths: list[str],
    tap_late: dict[int, tuple[list[float], list[float]]],
) -> tuple[NativeControl, dict[str, float]]:
    """Every path once at this size (each on a fresh stand-in): its figure and lines."""
    size = len(uids)
    cost: dict[str, float] = {}
    for path in [p for p in paths if p in ("python", "tap")]:
        control.close()
        control = NativeControl(str(site.library))
        for uid in uids:
            control.channel(CHANNEL).add_user(uid)
        cost[path], transport = await with_recorder(control, uids, url, tap=path == "tap")
        release_agora_service()
        late = [s * 1000 for s in control.lateness_s()]
        arrivals, stalled = ARRIVALS.late_ms, ARRIVALS.stall_late_ms
        sent_late = sum(1 for ms in arrivals if ms > LATE_MS)
        dropped = sum(transport.dropped_audio_ms.values())
        name = "(a) Python observer" if path == "python" else "(b) native tap     "
        if path == "tap":
            tap_late[size] = (late, arrivals)
        say(
            f"      {name} {cost[path]:5.3f} ms/participant-s everything included; "
            f"native lateness p50 {percentile(late, 0.5):6.1f} p99 "
            f"{percentile(late, 0.99):6.1f} max {max(late, default=0.0):6.1f} ms"
            + (
                f" (frames deferred past the tap's held lock {TAP_LOCK['deferred']}, the longest"
                f" wait for it {TAP_LOCK['wait_ms']:.1f} ms)"
                if path == "tap"
                else ""
            )
            + f"; chunks >{LATE_MS:.0f} ms late {sent_late}/{len(arrivals)} "
            f"(worst {max(arrivals, default=0.0):.0f} ms), and of the stall check's "
            f"{len(stalled)} (gap silence, flushed tails) "
            f"{sum(1 for ms in stalled if ms > LATE_MS)} (worst "
            f"{max(stalled, default=0.0):.0f} ms); {COLLECTIONS.line()}; "
            f"dropped {dropped / 1000:.1f} s; "
            f"of which the loop's thread {SPLIT['loop']:5.3f}, in the kernel "
            f"{SPLIT['sys']:5.3f} (all threads)"
        )
        say(f"          by thread: {THREADS['recorder']}")
    if "sdk" in paths:
        control.close()
        control = NativeControl(str(site.library))
        for uid in uids:
            control.channel(CHANNEL).add_user(uid)
        try:
            cost["sdk"] = await asyncio.to_thread(official_sdk, control, sdk, uids, url)
        except Exception as exc:  # the official client at this size: say why
            say(f"      (c) official SDK        failed: {exc!r}"[:200])
        else:
            late = [s * 1000 for s in control.lateness_s()]
            say(
                f"      (c) official SDK    {cost['sdk']:5.3f} ms/participant-s (wrapper "
                f"per-frame observer, StreamingClient.stream per chunk); native lateness "
                f"p50 {percentile(late, 0.5):6.1f} p99 {percentile(late, 0.99):6.1f} max "
                f"{max(late, default=0.0):6.1f} ms"
            )
        release_agora_service()
    if "minimal" in paths:
        control.close()
        control = NativeControl(str(site.library))
        for uid in uids:
            control.channel(CHANNEL).add_user(uid)
        cost["minimal"] = await minimal_client(control, sdk, uids, url)
        release_agora_service()
        late = [s * 1000 for s in control.lateness_s()]
        say(
            f"      (d) minimal client  {cost['minimal']:5.3f} ms/participant-s (wrapper "
            f"per-frame observer, one websockets send per chunk); native lateness p50 "
            f"{percentile(late, 0.5):6.1f} p99 {percentile(late, 0.99):6.1f} max "
            f"{max(late, default=0.0):6.1f} ms"
        )
    if "floor" in paths and load_tap() is not None:
        control.close()
        control = NativeControl(str(site.library))
        for uid in uids:
            control.channel(CHANNEL).add_user(uid)
        cost["floor"] = await tap_floor(control, uids, url)
        release_agora_service()
        late = [s * 1000 for s in control.lateness_s()]
        say(
            f"      (e) tap floor       {cost['floor']:5.3f} ms/participant-s (native "
            f"tap, one wire send per chunk, nothing else); native lateness p50 "
            f"{percentile(late, 0.5):6.1f} p99 {percentile(late, 0.99):6.1f} max "
            f"{max(late, default=0.0):6.1f} ms; of which the loop's thread "
            f"{SPLIT['floor loop']:5.3f}, in the kernel {SPLIT['floor sys']:5.3f}"
        )
    return control, cost


async def main() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "50,200,500").split(",")]
    paths = os.environ.get("BENCH_PATHS", "python,tap,sdk,minimal,floor").split(",")
    site_root = Path(tempfile.mkdtemp(prefix="agora-bench-"))
    try:
        site = prepare_site(site_root)
    except Unavailable as exc:
        say(f"cannot run: {exc}")
        return
    if "tap" in paths and load_tap() is None:
        say("the native tap is not built (python hatch_build.py); measuring the Python path only")
        paths = [p for p in paths if p != "tap"]
    sys.path.insert(0, str(site.root))
    sdk = load_agora_sdk()
    ARRIVALS.install()
    if PROFILE:
        profile_sqlite_writes()
    control = NativeControl(str(site.library))
    emulator, url = start_emulator()
    verdicts: list[str] = []
    tap_late: dict[int, tuple[list[float], list[float]]] = {}
    say(
        f"{SECONDS:.0f} s of speech per speaker; CPU ms per participant-second "
        "(process CPU over the speaking window, every thread)"
    )
    try:
        for size in sizes:
            uids = list(range(1000, 1000 + size))
            for uid in uids:
                control.channel(CHANNEL).add_user(uid)
            native = wrapper = math.nan
            if BASELINES:
                native = await asyncio.to_thread(sdk_only, control, sdk, uids, observe=False)
                release_agora_service()
                wrapper = await asyncio.to_thread(sdk_only, control, sdk, uids, observe=True)
                release_agora_service()
            say(
                f"{size:4d} speakers: native alone {native:5.3f}; wrapper (observer a no-op) "
                f"{wrapper:5.3f} ms per participant-second"
            )
            rounds = []
            for index in range(ROUNDS):
                if ROUNDS > 1:
                    say(f"    round {index + 1} of {ROUNDS}")
                control, figures = await one_round(control, site, sdk, uids, url, paths, tap_late)
                rounds.append(figures)
            measured = list(dict.fromkeys(p for r in rounds for p in r))
            cost = {
                path: statistics.median([r[path] for r in rounds if path in r]) for path in measured
            }
            if ROUNDS > 1:
                say(
                    f"    median of {ROUNDS} rounds: "
                    + ", ".join(f"{path} {figure:5.3f}" for path, figure in cost.items())
                )
            if "python" in cost and "tap" in cost:
                say(
                    f"      ratio (a)/(b) {cost['python'] / cost['tap']:4.1f}x; tap's own share "
                    f"over the native thread alone {cost['tap'] - native:5.3f} ms"
                )
            if "sdk" in cost and "tap" in cost:
                say(f"      ratio (c)/(b) {cost['sdk'] / cost['tap']:4.1f}x")
            if "minimal" in cost and "tap" in cost:
                say(f"      ratio (d)/(b) {cost['minimal'] / cost['tap']:4.1f}x")
            if "tap" in cost:
                verdicts.extend(targets(size, cost, tap_late.get(size)))
            control.close()
            control = NativeControl(str(site.library))
    finally:
        control.close()
        emulator.terminate()
        emulator.wait(10)
    if verdicts:
        say("issue 13's targets:")
        for line in verdicts:
            say(f"  {line}")


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    with open(os.devnull, "w") as devnull:  # the SDK prints from its threads
        sys.stdout = devnull
        try:
            asyncio.run(main())
        finally:
            sys.stdout = OUT
