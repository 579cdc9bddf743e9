"""What only the real wrapper on the native stand-in can show.

Frames on a native (non-Python) thread, no SDK call from inside a callback,
unregister waiting for a callback in flight, the wrapper's import never
deleting or downloading its library, strict mode, publishing as audience,
and 200 speakers on one native thread (docs/providers.md, "Agora: the stand-in").
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from agora_standin.control import NativeControl
from agora_standin.plugin import wrapper_harm
from agora_standin.wrapper import WrapperSite

from recorder.transport.agora.preflight import AgoraSdk, load_agora_sdk
from recorder.transport.agora.service import connection_configs, shared_service
from recorder.transport.base import ParticipantJoined
from tests.support.timing import TIMEOUT
from tests.test_agora_transport import APP_ID, CERTIFICATE, joined, tone


def until(world: NativeControl, predicate: Any, limit_s: float = TIMEOUT) -> bool:
    return world.wait_until(predicate, limit_s)


class Session:
    """The SDK's own objects, driven directly (no transport): one connection with observers."""

    def __init__(self, sdk: AgoraSdk, tmp_path: Path, frame: Any = None, user: Any = None) -> None:
        self.sdk = sdk
        service = shared_service(sdk, APP_ID, tmp_path / "agora-log")
        conn_config, publish_config = connection_configs(sdk, publish=False)
        self.conn = service.create_rtc_connection(conn_config, publish_config)
        self.conn.register_observer(sdk.connection_observer.IRTCConnectionObserver())
        self.conn.register_local_user_observer(
            user or sdk.local_user_observer.IRTCLocalUserObserver()
        )
        local_user = self.conn.get_local_user()
        local_user.set_playback_audio_frame_before_mixing_parameters(1, 16000)
        if frame is not None:
            self.conn.register_audio_frame_observer(frame, 0, None)
        assert self.conn.connect(APP_ID, "native", "9999") == 0

    def close(self) -> None:
        self.conn.disconnect()
        self.conn.release()


def test_every_bound_function_is_exported(
    native_world: NativeControl, agora_wrapper_site: WrapperSite
) -> None:
    names = [b["name"] for b in agora_wrapper_site.bindings]
    assert len(names) == len(set(names)) == 146
    assert sum(b["library"] == "rtm" for b in agora_wrapper_site.bindings) == 10
    library = ctypes.CDLL(str(agora_wrapper_site.library))
    for name in names:
        getattr(library, name)  # an AttributeError names a missing export


def test_frames_arrive_on_a_native_thread(native_world: NativeControl, tmp_path: Path) -> None:
    sdk = load_agora_sdk()
    seen: list[tuple[str, int, bool, Any]] = []
    local = threading.local()
    done = threading.Event()

    class Frames(sdk.audio_frame_observer.IAudioFrameObserver):  # type: ignore[misc]
        def on_playback_audio_frame_before_mixing(
            self, user: Any, channel: str, uid: str, frame: Any, state: int, vad: Any
        ) -> int:
            seen.append(
                (
                    threading.current_thread().name,
                    threading.get_native_id(),
                    hasattr(local, "x"),
                    frame,
                )
            )
            local.x = 1  # gone by the next callback: a fresh thread state each time
            if len(seen) == 20:
                done.set()
            return 1

    native_world.channel("native").add_user(7)
    session = Session(sdk, tmp_path, frame=Frames())
    native_world.channel("native").speak(7, tone(200))
    assert done.wait(TIMEOUT)
    session.close()
    python_threads = {t.native_id for t in threading.enumerate() if not t.name.startswith("Dummy")}
    names = {name for name, *_ in seen}
    tids = {tid for _, tid, _, _ in seen}
    assert all(name.startswith("Dummy-") for name in names)  # a thread Python did not start
    assert len(tids) == 1 and not tids & python_threads
    assert tids == set(native_world.stats()["callback_tids"])
    assert not any(kept for _, _, kept, _ in seen)
    frame = seen[0][3]
    assert (frame.samples_per_channel, frame.channels, frame.samples_per_sec) == (160, 1, 16000)
    assert isinstance(frame.buffer, bytearray) and bytes(frame.buffer) == tone(10)


async def test_the_transport_never_calls_the_sdk_from_a_callback(
    native_world: NativeControl, tmp_path: Path
) -> None:
    native_world.tick_s = 0.002
    transport, sink = await joined(tmp_path, app_certificate=CERTIFICATE, publish=True)
    channel = native_world.channel("standup")
    channel.add_user(101)
    channel.add_user(202, muted=True)
    channel.speak(101, tone(300))
    assert await asyncio.to_thread(until, native_world, lambda: native_world.frames_delivered >= 30)
    channel.unmute(202)
    channel.mute(101)
    native_world.token_will_expire()
    assert await asyncio.to_thread(until, native_world, lambda: native_world.renewed_tokens)
    await transport.publish(tone(100))
    native_world.interrupt()
    native_world.restore()
    channel.remove_user(202)
    assert await asyncio.to_thread(native_world.wait_idle, TIMEOUT)
    await transport.stop()
    stats = native_world.stats()
    assert stats["calls_in_callback"] == 0, stats["in_callback_calls"]
    assert stats["callbacks"]["on_user_left"] == 1 and stats["frames_delivered"] >= 30


def test_an_sdk_call_inside_a_callback_is_counted(
    native_world: NativeControl, tmp_path: Path
) -> None:
    sdk = load_agora_sdk()
    called = threading.Event()

    class Rude(sdk.local_user_observer.IRTCLocalUserObserver):  # type: ignore[misc]
        def on_user_audio_track_subscribed(self, local_user: Any, uid: str, track: Any) -> None:
            local_user.get_user_role()  # against the SDK's rule: counted
            called.set()

    native_world.channel("native").add_user(7)
    session = Session(sdk, tmp_path, user=Rude())
    assert called.wait(TIMEOUT)
    session.close()
    stats = native_world.stats()
    assert stats["calls_in_callback"] == 1
    assert stats["in_callback_calls"] == {"agora_local_user_get_user_role": 1}


def test_unregister_waits_for_the_callback_in_flight(
    native_world: NativeControl, tmp_path: Path
) -> None:
    sdk = load_agora_sdk()
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []

    class Slow(sdk.audio_frame_observer.IAudioFrameObserver):  # type: ignore[misc]
        def on_playback_audio_frame_before_mixing(
            self, user: Any, channel: str, uid: str, frame: Any, state: int, vad: Any
        ) -> int:
            if not entered.is_set():
                entered.set()
                release.wait(TIMEOUT)
                order.append("callback returned")
            return 1

    native_world.channel("native").add_user(7)
    session = Session(sdk, tmp_path, frame=Slow())
    native_world.channel("native").speak(7, tone(100))
    assert entered.wait(TIMEOUT)

    def disconnect() -> None:
        session.conn.disconnect()  # unregisters the frame observer first
        order.append("unregister returned")

    leaving = threading.Thread(target=disconnect)
    leaving.start()
    assert until(native_world, lambda: native_world.stats()["unregister_waits"] == 1)
    assert order == []  # still waiting for the callback
    release.set()
    leaving.join(TIMEOUT)
    assert order == ["callback returned", "unregister returned"]
    session.conn.release()


def test_the_import_never_deletes_or_downloads(
    native_world: NativeControl, agora_wrapper_site: WrapperSite
) -> None:
    sentinel = agora_wrapper_site.package / "agora_sdk" / "kept"
    sentinel.write_text("rm -rf would take this")
    try:
        load_agora_sdk()
        assert wrapper_harm(native_world.audit) == []  # no rm -rf, no download from Agora
        assert not [event for event, _ in native_world.audit if event == "os.system"]
        assert sentinel.exists() and agora_wrapper_site.library.is_file()
    finally:
        sentinel.unlink()


def test_strict_mode_names_an_unmodelled_call(native_world: NativeControl, tmp_path: Path) -> None:
    sdk = load_agora_sdk()
    session = Session(sdk, tmp_path)
    session.conn.get_local_user().get_playback_signal_volume()  # not modelled
    problems = native_world.problems()
    session.close()
    assert problems == ["unmodelled call agora_local_user_get_playback_signal_volume x1"]
    native_world.clear_problems()  # the fixture would fail this test otherwise


async def test_publishing_as_audience_is_rejected_and_counted(
    native_world: NativeControl, tmp_path: Path
) -> None:
    transport, _ = await joined(tmp_path, publish=True)
    conn = transport._conn  # the SDK's own connection object
    await asyncio.to_thread(conn.get_local_user().set_user_role, 2)
    assert await asyncio.to_thread(conn.publish_audio) == 0  # accepted, then refused
    assert await asyncio.to_thread(conn.push_audio_pcm_data, bytearray(tone(100)), 16000, 1) == 0
    assert await asyncio.to_thread(
        until, native_world, lambda: native_world.counts.get("on_audio_track_publication_failure")
    )
    await transport.stop()
    stats = native_world.stats()
    assert stats["publish_rejected"] == 1
    assert stats["rejected_bytes"] == len(tone(100)) and native_world.published_pcm() == b""
    assert transport.callback_errors == 0


@pytest.mark.slow
async def test_two_hundred_speakers_on_one_native_thread(
    native_world: NativeControl, tmp_path: Path, record_property: Any
) -> None:
    transport, sink = await joined(tmp_path)
    channel = native_world.channel("standup")
    uids = list(range(1000, 1200))
    for uid in uids:
        channel.add_user(uid)
    await sink.wait(lambda: len(sink.of(ParticipantJoined)) == 200)
    native_world.lib.standin_clear_lateness()
    started = time.monotonic()
    for uid in uids:
        channel.speak(uid, tone(2000, uid))
    assert await asyncio.to_thread(native_world.wait_idle, 60)
    took = time.monotonic() - started
    await transport.stop()
    lateness = sorted(native_world.lateness_s())
    worst = lateness[-1]
    record_property("worst_native_lateness_s", round(worst, 3))
    print(
        f"\n200 speakers, 2 s each: {took:.2f} s, worst native tick lateness {worst * 1000:.0f} ms"
    )
    assert native_world.frames_delivered == 200 * 200
    bridge = transport.bridge
    assert bridge is not None and bridge.frames == 200 * 200
    # Every frame reached the loop, or was counted as dropped (the loop fell behind).
    heard = sum(len(sink.pcm(uid)) for uid in uids)
    dropped = sum(bridge.dropped_ms.values()) * 32
    assert heard <= 200 * len(tone(2000)) <= heard + dropped
