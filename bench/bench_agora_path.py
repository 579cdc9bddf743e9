"""CPU per participant-second through Agora's real Python wrapper, at 50/200/500 speakers.

The SDK's Python wrapper (agora-python-server-sdk 2.4.10, fetched and pinned by
tests/agora_standin) runs unmodified on the native stand-in, whose native
thread delivers a 10 ms frame per speaker on an absolute 10 ms clock, as
Agora's library would. Three runs per size, each ``BENCH_SECONDS`` (default
10) of speech from every speaker:

* native alone: no frame observer registered (the stand-in's own cost);
* wrapper: a frame observer that does nothing (the wrapper's own per-frame
  path: thunk, struct decode, copy, dataclass, dispatch);
* recorder: the real AgoraTransport, AudioBridge and pipeline (STT client,
  turns, SQLite) against the streaming emulator, which runs in its own
  process (its CPU is not counted).

Prints, per size: process CPU ms per participant-second of each run, the
recorder's own share (recorder minus wrapper), and the native thread's tick
lateness p50/p99/max in the recorder run (how far behind real time the
audio thread fell). Run: ``python bench/bench_agora_path.py``
(``BENCH_SIZES=50,200`` to choose sizes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from agora_standin.control import NativeControl  # noqa: E402
from agora_standin.wrapper import Unavailable, prepare_site  # noqa: E402

from recorder.app import RecordingOptions, record  # noqa: E402
from recorder.audio import bytes_for_ms  # noqa: E402
from recorder.config import Config  # noqa: E402
from recorder.tonecode import encode  # noqa: E402
from recorder.transport.agora.preflight import load_agora_sdk  # noqa: E402
from recorder.transport.agora.service import (  # noqa: E402
    connection_configs,
    release_agora_service,
    shared_service,
)
from recorder.transport.agora.transport import AgoraTransport  # noqa: E402
from storage.store import TranscriptStore  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
APP_ID = "0123456789abcdef0123456789abcdef"
CHANNEL = "bench"
FRAME = bytes_for_ms(10)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def speech_for(uids: list[int]) -> dict[int, bytes]:
    """``SECONDS`` of tone-coded speech per speaker, each from a different place."""
    text = " ".join(f"word{i} alpha bravo charlie delta." for i in range(60))
    speech = encode(text)
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
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    for uid in uids:
        channel.speak(uid, speech[uid])
    if not control.wait_idle(SECONDS * 20 + 60):
        raise RuntimeError("the stand-in did not deliver everything")
    return cpu_seconds() - cpu0, time.monotonic() - wall0


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


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "recorder", "emulate", "--port", "0", "--realtime-factor", "1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"ws://\S+/v3/ws", line)
        if match:
            return process, match.group(0)
    raise RuntimeError("the emulator did not print its URL")


async def with_recorder(control: NativeControl, uids: list[int], url: str) -> tuple[float, Any]:
    """CPU ms per participant-second of the whole recorder path, and the transport."""
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        async with await TranscriptStore.open(db, auto_migrate=True) as store:
            transport = AgoraTransport(
                app_id=APP_ID, channel=CHANNEL, bot_uid=9999, log_dir=Path(folder) / "agora"
            )
            stop = asyncio.Event()
            config = Config(database_url=db, assemblyai_api_key="bench", stt_url=url)
            options = RecordingOptions(sessions_per_minute=100_000)
            task = asyncio.create_task(
                record(config, transport, options=options, store=store, stop=stop)
            )
            present = transport.participants.present
            joined = await asyncio.to_thread(
                control.wait_until, lambda: len(present()) >= len(uids), 60
            )
            if not joined:
                raise RuntimeError("the speakers were not all announced")
            cpu, _ = await asyncio.to_thread(speak_and_measure, control, uids)
            stop.set()
            await task
    return cpu * 1000 / (len(uids) * SECONDS), transport


OUT = sys.stdout  # figures go here; the SDK's own prints go nowhere


def say(text: str) -> None:
    print(text, file=OUT, flush=True)


async def main() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "50,200,500").split(",")]
    site_root = Path(tempfile.mkdtemp(prefix="agora-bench-"))
    try:
        site = prepare_site(site_root)
    except Unavailable as exc:
        say(f"cannot run: {exc}")
        return
    sys.path.insert(0, str(site.root))
    sdk = load_agora_sdk()
    control = NativeControl(str(site.library))
    emulator, url = start_emulator()
    say(
        f"{SECONDS:.0f} s of speech per speaker; CPU ms per participant-second "
        "(process CPU over the speaking window, every thread)"
    )
    try:
        for size in sizes:
            uids = list(range(1000, 1000 + size))
            for uid in uids:
                control.channel(CHANNEL).add_user(uid)
            native = await asyncio.to_thread(sdk_only, control, sdk, uids, observe=False)
            release_agora_service()
            wrapper = await asyncio.to_thread(sdk_only, control, sdk, uids, observe=True)
            release_agora_service()
            recorder, transport = await with_recorder(control, uids, url)
            release_agora_service()
            late = [s * 1000 for s in control.lateness_s()]
            dropped = sum(transport.dropped_audio_ms.values())
            say(
                f"{size:4d} speakers: native alone {native:5.3f}; wrapper (observer a no-op) "
                f"{wrapper:5.3f}; wrapper + recorder {recorder:5.3f}; recorder's own "
                f"{recorder - wrapper:5.3f} ms per participant-second"
            )
            say(
                f"      native thread lateness p50 {percentile(late, 0.5):6.1f} ms, "
                f"p99 {percentile(late, 0.99):6.1f} ms, max {max(late, default=0.0):6.1f} ms; "
                f"{dropped / 1000:.1f} s of audio dropped by the bridge"
            )
            control.close()
            control = NativeControl(str(site.library))
    finally:
        control.close()
        emulator.terminate()
        emulator.wait(10)


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    with open(os.devnull, "w") as devnull:  # the SDK prints from its threads
        sys.stdout = devnull
        try:
            asyncio.run(main())
        finally:
            sys.stdout = OUT
