"""The fake Agora SDK: its surface matches the real wrapper's, and it reproduces its traps."""

from __future__ import annotations

import ast
import copy
import importlib.util
import inspect
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fake_agora import SURFACE_PATH, installed_fake_agora
from fake_agora.generate import render_all
from fake_agora.surface import compare_surface

from recorder.transport.agora.preflight import load_agora_sdk

# The team's shared copy beside the checkout, where there is one (CI has it).
SHARED_SURFACE = Path(__file__).resolve().parents[2] / "shared/specs/agora-sdk-surface.json"
UNRAISABLE = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
APP_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Any]:
    with installed_fake_agora(tmp_path) as world:
        yield world


@pytest.fixture
def sdk(world: Any) -> SimpleNamespace:
    import agora.rtc.agora_base as base
    import agora.rtc.agora_service as service
    import agora.rtc.audio_frame_observer as frame_observer
    import agora.rtc.local_user_observer as user_observer
    import agora.rtc.rtc_connection_observer as conn_observer

    return SimpleNamespace(
        base=base,
        service=service,
        IAudioFrameObserver=frame_observer.IAudioFrameObserver,
        IRTCLocalUserObserver=user_observer.IRTCLocalUserObserver,
        IRTCConnectionObserver=conn_observer.IRTCConnectionObserver,
    )


class Recorder:
    """Records every callback (name, thread, args) and lets tests wait on them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, threading.Thread, tuple[Any, ...]]] = []
        self.cv = threading.Condition()

    def record(self, name: str, args: tuple[Any, ...]) -> None:
        with self.cv:
            self.calls.append((name, threading.current_thread(), args))
            self.cv.notify_all()

    def args(self, name: str) -> list[tuple[Any, ...]]:
        with self.cv:
            return [a for n, _, a in self.calls if n == name]

    def names(self) -> list[str]:
        with self.cv:
            return [n for n, _, _ in self.calls]

    def wait_for(self, predicate: Callable[[Recorder], bool], timeout: float = 5.0) -> None:
        with self.cv:
            assert self.cv.wait_for(lambda: predicate(self), timeout), self.names()[-20:]

    def wait_count(self, name: str, count: int = 1, timeout: float = 5.0) -> None:
        self.wait_for(lambda r: len(r.args(name)) >= count, timeout)


def recording(base: type, rec: Recorder, **overrides: Any) -> Any:
    """An observer whose every on_* method records and then runs the SDK base method.

    Calling the base method with the received arguments fails (TypeError) if the
    fake ever passes a different number of arguments than the SDK declares.
    """
    namespace: dict[str, Any] = {}
    for name, function in inspect.getmembers(base, inspect.isfunction):
        if not name.startswith("on_"):
            continue

        def method(self: Any, *args: Any, _n: str = name, _f: Any = function) -> Any:
            rec.record(_n, args)
            result = _f(self, *args)
            return overrides.get(_n, result)

        namespace[name] = method
    return type("Recording" + base.__name__, (base,), namespace)()


def make_bot(
    sdk: SimpleNamespace,
    *,
    audience: bool = True,
    publish: bool = False,
    scenario: Any = None,
    auto_subscribe: int = 1,
    frame_observer: Any = None,
    conn_overrides: dict[str, Any] | None = None,
) -> tuple[Any, Recorder]:
    b = sdk.base
    scenario = scenario or b.AudioScenarioType.AUDIO_SCENARIO_GAME_STREAMING
    service = sdk.service.AgoraService()
    service.initialize(b.AgoraServiceConfig(appid=APP_ID, audio_scenario=scenario))
    assert service.inited
    role = (
        b.ClientRoleType.CLIENT_ROLE_AUDIENCE
        if audience
        else b.ClientRoleType.CLIENT_ROLE_BROADCASTER
    )
    conn = service.create_rtc_connection(
        b.RTCConnConfig(
            auto_subscribe_audio=auto_subscribe,
            client_role_type=role,
            audio_subs_options=b.AudioSubscriptionOptions(
                pcm_data_only=1, bytes_per_sample=2, number_of_channels=1, sample_rate_hz=16000
            ),
        ),
        b.RtcConnectionPublishConfig(is_publish_audio=publish, audio_scenario=scenario),
    )
    rec = Recorder()
    assert (
        conn.register_observer(recording(sdk.IRTCConnectionObserver, rec, **(conn_overrides or {})))
        == 0
    )
    assert conn.register_local_user_observer(recording(sdk.IRTCLocalUserObserver, rec)) == 0
    assert conn.get_local_user().set_playback_audio_frame_before_mixing_parameters(1, 16000) == 0
    observer = frame_observer or recording(sdk.IAudioFrameObserver, rec)
    assert conn.register_audio_frame_observer(observer, 0, None) == 0
    return conn, rec


def tone(ms: int, value: int = 1000) -> bytes:
    return value.to_bytes(2, "little", signed=True) * (16 * ms)


# --- surface ----------------------------------------------------------------------------


def test_fake_matches_the_sdk_surface(world: Any) -> None:
    surface = json.loads(SURFACE_PATH.read_text(encoding="utf-8"))
    assert compare_surface(surface) == []


@pytest.mark.parametrize(
    ("module", "cls", "mutate", "expected"),
    [
        (
            "agora_base",
            "AudioFrame",
            lambda c: c["dataclass_options"].update(frozen=False),
            "options",
        ),
        ("agora_base", "RTCConnConfig", lambda c: c["dataclass_options"].pop("kw_only"), "options"),
        ("agora_base", "ClientRoleType", lambda c: c["enum_members"][1].update(value=3), "members"),
        ("agora_base", "RTCConnConfig", lambda c: c["fields"][0].update(default="1"), "default"),
        ("agora_base", "RTCConnInfo", lambda c: c["fields"].pop(), "fields"),
        ("rtc_connection", "RTCConnection", lambda c: c["methods"].pop(), "not in the SDK"),
        (
            "rtc_connection",
            "RTCConnection",
            lambda c: next(m for m in c["methods"] if m["name"] == "connect")["params"].reverse(),
            "parameters",
        ),
        (
            "agora_service",
            "AgoraService",
            lambda c: next(m for m in c["methods"] if m["name"] == "set_log_file")["params"][
                2
            ].update(default="1024"),
            "default",
        ),
        ("local_user", "LocalUser", lambda c: c["instance_attributes"].append("x"), "never"),
        (
            "audio_frame_observer",
            "IAudioFrameObserver",
            lambda c: c["methods"].append(
                {"name": "on_new", "params": [{"name": "self", "kind": "positional_or_keyword"}]}
            ),
            "missing",
        ),
    ],
)
def test_surface_comparison_can_fail(
    world: Any, module: str, cls: str, mutate: Callable[[dict], None], expected: str
) -> None:
    surface = copy.deepcopy(json.loads(SURFACE_PATH.read_text(encoding="utf-8")))
    entry = next(m for m in surface["modules"] if m["module"] == f"agora.rtc.{module}")
    mutate(next(c for c in entry["classes"] if c["name"] == cls))
    diffs = compare_surface(surface)
    assert diffs and all(expected in d for d in diffs), diffs


def test_unknown_module_in_surface_is_reported(world: Any) -> None:
    surface = json.loads(SURFACE_PATH.read_text(encoding="utf-8"))
    surface["modules"].append({"module": "agora.rtc.brand_new", "classes": []})
    assert compare_surface(surface) == [
        "agora.rtc.brand_new: neither reproduced nor listed in NOT_REPRODUCED"
    ]


def test_generated_files_are_up_to_date() -> None:
    surface = json.loads(SURFACE_PATH.read_text(encoding="utf-8"))
    for path, text in render_all(surface).items():
        committed = path.read_text(encoding="utf-8")
        assert ast.dump(ast.parse(committed)) == ast.dump(ast.parse(text)), path.name


@pytest.mark.skipif(not SHARED_SURFACE.exists(), reason="shared specs not present")
def test_surface_copy_equals_the_shared_spec() -> None:
    assert SURFACE_PATH.read_bytes() == SHARED_SURFACE.read_bytes()


def _agora_origin() -> str:
    spec = importlib.util.find_spec("agora")
    return "" if spec is None else str(spec.origin)


def test_fake_is_not_importable_as_agora_by_accident(tmp_path: Path) -> None:
    # Either nothing or a real SDK install is found, never the fake's source.
    before = _agora_origin()
    assert "fake_agora" not in before and "fake-agora" not in before
    with installed_fake_agora(tmp_path):
        import agora

        assert "fake-agora-site" in agora.__file__
    assert "agora" not in sys.modules
    assert _agora_origin() == before


def test_preflight_loader_accepts_the_fake(world: Any) -> None:
    loaded = load_agora_sdk(system="linux", machine="x86_64")
    assert loaded.service.AgoraService.__module__ == "agora.rtc.agora_service"
    assert loaded.base.AudioFrame.__dataclass_params__.frozen


# --- service and connection creation ----------------------------------------------------


def test_initialize_return_value_is_not_success(world: Any, sdk: SimpleNamespace) -> None:
    b = sdk.base
    good = sdk.service.AgoraService()
    config = b.AgoraServiceConfig(appid=APP_ID)
    assert good.initialize(config) == -4 and good.inited
    assert config.app_id == APP_ID.encode()  # the wrapper mutates the caller's config
    assert good.initialize(config) == 0  # already initialised
    world.valid_app_ids = {APP_ID}
    bad = sdk.service.AgoraService()
    assert bad.initialize(b.AgoraServiceConfig(appid="f" * 32)) == 0 and not bad.inited
    assert bad.create_rtc_connection(b.RTCConnConfig(), b.RtcConnectionPublishConfig()) is None
    with pytest.raises(AttributeError):
        sdk.service.AgoraService().initialize(b.AgoraServiceConfig(appid=None))
    assert sdk.service.AgoraService().set_log_file("/tmp/x.log") == -1


def test_create_rtc_connection_needs_both_positional_configs(
    world: Any, sdk: SimpleNamespace
) -> None:
    service = sdk.service.AgoraService()
    service.initialize(sdk.base.AgoraServiceConfig(appid=APP_ID))
    with pytest.raises(TypeError, match="publish_config"):
        service.create_rtc_connection(sdk.base.RTCConnConfig())
    world.fail_connection_create = True
    half = service.create_rtc_connection(
        sdk.base.RTCConnConfig(), sdk.base.RtcConnectionPublishConfig()
    )
    assert half is not None and half.conn_handle is None


def test_config_dataclasses_are_kw_only_and_frames_frozen(sdk: SimpleNamespace) -> None:
    import dataclasses

    with pytest.raises(TypeError):
        sdk.base.RTCConnConfig(1)
    names = [f.name for f in dataclasses.fields(sdk.base.AudioFrame)]
    with pytest.raises(TypeError, match="required keyword-only"):
        sdk.base.AudioFrame(buffer=bytearray(2))  # no field has a default
    frame = sdk.base.AudioFrame(**{n: bytearray(2) if n == "buffer" else 0 for n in names})
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.buffer = bytearray()  # type: ignore[misc]
    assert (
        sdk.base.RTCConnConfig().client_role_type == sdk.base.ClientRoleType.CLIENT_ROLE_BROADCASTER
    )
    assert sdk.base.RtcConnectionPublishConfig().is_publish_audio is True


# --- joining ----------------------------------------------------------------------------


def test_connect_events_come_from_another_thread_with_states(
    world: Any, sdk: SimpleNamespace
) -> None:
    world.channel("room").add_user(1001)
    world.channel("room").add_user(1002, host=False)  # audience: invisible
    conn, rec = make_bot(sdk)
    assert conn.connect("token", "room", "0") == 0
    rec.wait_count("on_user_audio_track_state_changed")
    connecting, connected = rec.args("on_connecting")[0], rec.args("on_connected")[0]
    assert (connecting[1].state, connecting[2]) == (2, 0)
    assert (connected[1].state, connected[2]) == (3, 1)
    assert connected[1].local_user_id == world.assigned_uid and connected[1].channel_id == "room"
    assert connected[0] is conn
    assert rec.args("on_user_joined") == [(conn, "1001")]
    subscribed = rec.args("on_user_audio_track_subscribed")[0]
    assert subscribed[1] == "1001" and subscribed[2].user_id == "1001"
    assert rec.args("on_user_audio_track_state_changed")[0][1:4] == ("1001", None, 2)
    bases = (sdk.IRTCConnectionObserver, sdk.IRTCLocalUserObserver, sdk.IAudioFrameObserver)
    for name, _, args in rec.calls:
        base = next(b for b in bases if hasattr(b, name))
        assert len(args) == len(inspect.signature(getattr(base, name)).parameters) - 1, name
    threads = {t for _, t, _ in rec.calls}
    assert threading.main_thread() not in threads
    assert conn.connect("token", "room", "9") == -8  # already connecting/connected
    assert world.stdout_prints == ["**********LocalUser _set_apm_filter_properties: -1001"]


@pytest.mark.parametrize("bad", [(None, "room", "1"), ("t", "room", 1), ("t", b"room", "1")])
def test_connect_requires_three_str(world: Any, sdk: SimpleNamespace, bad: tuple[Any, ...]) -> None:
    conn, _ = make_bot(sdk)
    with pytest.raises(AttributeError):
        conn.connect(*bad)


def test_join_failures(world: Any, sdk: SimpleNamespace) -> None:
    world.token_validator = lambda token, channel, uid: None if token == "good" else 8
    conn, rec = make_bot(sdk)
    assert conn.connect("bad", "room", "9999") == 0
    rec.wait_count("on_connection_failure")
    info, reason = rec.args("on_connection_failure")[0][1:]
    assert (info.state, reason) == (5, 8)
    assert "on_connected" not in rec.names()

    bad_name, rec2 = make_bot(sdk)
    assert bad_name.connect("good", "bad/name", "9999") == 0
    rec2.wait_count("on_connection_failure")
    assert rec2.args("on_connection_failure")[0][2] == 7
    world.invalid_channel_result = "connect"
    third, _ = make_bot(sdk)
    assert third.connect("good", "x" * 64, "9999") == -2


def test_join_failure_knob(world: Any, sdk: SimpleNamespace) -> None:
    world.join_failure = 6
    conn, rec = make_bot(sdk)
    conn.connect("t", "room", "1")
    rec.wait_count("on_connection_failure")
    assert rec.args("on_connection_failure")[0][2] == 6
    assert world.connection().state == 5


def test_presence_roles_and_leave_reasons(world: Any, sdk: SimpleNamespace) -> None:
    room = world.channel("room")
    conn, rec = make_bot(sdk)
    conn.connect("t", "room", "9999")
    rec.wait_count("on_connected")
    room.add_user("7")
    room.add_user("8", host=False)
    room.set_host("8", True)
    room.set_host("7", False)
    room.remove_user("8", reason=1)
    rec.wait_count("on_user_left", 2)
    assert rec.args("on_user_joined") == [(conn, "7"), (conn, "8")]
    assert rec.args("on_user_left") == [(conn, "7", 2), (conn, "8", 1)]


# --- audio frames -----------------------------------------------------------------------


def test_frames_per_uid_every_10ms_from_a_native_thread(world: Any, sdk: SimpleNamespace) -> None:
    arrivals: dict[str, list[float]] = {"1": [], "2": []}
    buffers: list[Any] = []
    done = threading.Event()

    class Frames(sdk.IAudioFrameObserver):
        def on_playback_audio_frame_before_mixing(self, user, channel, uid, frame, state, vad):
            arrivals[uid].append(time.monotonic())
            buffers.append((uid, frame.buffer, bytes(frame.buffer), threading.current_thread()))
            assert (channel, state, vad) == ("room", -1, None)
            if len(arrivals["1"]) == 50 and len(arrivals["2"]) == 50:
                done.set()
            return 1

    room = world.channel("room")
    room.add_user("1")
    room.add_user("2")
    conn, rec = make_bot(sdk, frame_observer=Frames())
    conn.connect("t", "room", "9999")
    rec.wait_count("on_user_audio_track_state_changed", 2)
    room.speak("1", tone(500, 100))
    room.speak("2", tone(500, -200))
    assert done.wait(5)
    for uid in ("1", "2"):
        gaps = [b - a for a, b in zip(arrivals[uid], arrivals[uid][1:], strict=False)]
        assert 0.4 < (arrivals[uid][-1] - arrivals[uid][0]) / 49 / 0.010 < 1.6
        assert max(gaps) < 0.2
    assert all(len(copy) == 320 and isinstance(buf, bytearray) for _, buf, copy, _ in buffers)
    assert {copy for uid, _, copy, _ in buffers if uid == "1"} == {tone(10, 100)}
    assert {t.name for *_, t in buffers} == {"fake-agora-native"}
    # The buffer object is reused per uid: keeping a reference is a bug.
    assert len({id(buf) for uid, buf, _, _ in buffers if uid == "1"}) == 1
    assert world.counts["on_playback_audio_frame_before_mixing"] == 100


def test_fresh_buffers_when_reuse_is_off(world: Any, sdk: SimpleNamespace) -> None:
    world.reuse_frame_buffers = False
    kept: list[bytearray] = []

    class Frames(sdk.IAudioFrameObserver):
        def on_playback_audio_frame_before_mixing(self, user, channel, uid, frame, state, vad):
            kept.append(frame.buffer)
            return 1

    world.channel("room").add_user("1")
    conn, _ = make_bot(sdk, frame_observer=Frames())
    conn.connect("t", "room", "1")
    world.channel("room").speak("1", tone(30))
    assert world.wait_idle()
    assert len(kept) == 3 and len({id(b) for b in kept}) == 3


def test_idle_silence_and_fast_clock_knobs(world: Any, sdk: SimpleNamespace) -> None:
    world.idle_silence = True
    world.tick_s = 0.001  # 10 ms of audio per 1 ms of wall clock
    world.channel("room").add_user("1")
    conn, rec = make_bot(sdk)
    start = time.monotonic()
    conn.connect("t", "room", "1")
    rec.wait_count("on_playback_audio_frame_before_mixing", 200)
    assert time.monotonic() - start < 1.5  # 2 s of audio
    frames = rec.args("on_playback_audio_frame_before_mixing")
    assert frames[0][3].rms == 0 and frames[0][3].voice_prob == 0


def test_mute_pattern_and_no_frames_while_muted(world: Any, sdk: SimpleNamespace) -> None:
    room = world.channel("room")
    room.add_user("5")
    conn, rec = make_bot(sdk)
    conn.connect("t", "room", "1")
    rec.wait_count("on_user_audio_track_state_changed")
    room.mute("5")
    room.speak("5", tone(50))
    assert world.wait_idle()
    room.unmute("5")
    room.speak("5", tone(50))
    assert world.wait_idle()
    states = [a[3:5] for a in rec.args("on_user_audio_track_state_changed")]
    assert states == [(2, 0), (0, 5), (1, 6), (2, 6)]
    assert [a[1:] for a in rec.args("on_user_info_updated")] == [("5", 0, 1), ("5", 0, 0)]
    assert len(rec.args("on_playback_audio_frame_before_mixing")) == 5


def test_no_frames_without_subscription_until_subscribed(world: Any, sdk: SimpleNamespace) -> None:
    room = world.channel("room")
    room.add_user("5")
    conn, rec = make_bot(sdk, auto_subscribe=0)
    conn.connect("t", "room", "1")
    rec.wait_count("on_user_joined")
    room.speak("5", tone(30))
    assert world.wait_idle()
    assert "on_playback_audio_frame_before_mixing" not in rec.names()
    local_user = conn.get_local_user()
    with pytest.raises(AttributeError):
        local_user.subscribe_audio(5)
    assert local_user.subscribe_audio(None) == -1000
    assert local_user.subscribe_audio("5") == 0
    room.speak("5", tone(30))
    assert world.wait_idle()
    assert len(rec.args("on_playback_audio_frame_before_mixing")) == 3


@UNRAISABLE
def test_wrong_arity_observer_loses_every_frame_silently(world: Any, sdk: SimpleNamespace) -> None:
    class OldSignature(sdk.IAudioFrameObserver):  # the pre-2.1.6 four-argument form
        def on_playback_audio_frame_before_mixing(self, user, channel, uid, frame):
            raise AssertionError("never called with four arguments")

    world.channel("room").add_user("1")
    conn, _ = make_bot(sdk, frame_observer=OldSignature())
    conn.connect("t", "room", "1")
    world.channel("room").speak("1", tone(40))
    assert world.wait_idle()
    errors = [e for m, e in world.errors if m == "on_playback_audio_frame_before_mixing"]
    assert len(errors) == 4 and all(isinstance(e, TypeError) for e in errors)


@UNRAISABLE
def test_none_return_and_exceptions_are_swallowed(world: Any, sdk: SimpleNamespace) -> None:
    seen = []

    class Sloppy(sdk.IAudioFrameObserver):
        def on_playback_audio_frame_before_mixing(self, user, channel, uid, frame, state, vad):
            seen.append(uid)
            if len(seen) == 2:
                raise RuntimeError("bug in the adapter")
            return None

    world.channel("room").add_user("1")
    conn, _ = make_bot(sdk, frame_observer=Sloppy())
    conn.connect("t", "room", "1")
    world.channel("room").speak("1", tone(30))
    assert world.wait_idle()
    assert len(seen) == 3
    assert world.bad_returns.count("on_playback_audio_frame_before_mixing") == 2
    assert [type(e) for _, e in world.errors] == [RuntimeError]


@UNRAISABLE
def test_vad_flag_without_config_breaks_frames(world: Any, sdk: SimpleNamespace) -> None:
    rec = Recorder()
    conn, _ = make_bot(sdk)
    conn2 = conn  # keep one connection; re-register after disconnect is allowed
    conn2.disconnect()
    assert (
        conn2.register_audio_frame_observer(recording(sdk.IAudioFrameObserver, rec), 12, None) == 0
    )
    world.channel("room").add_user("1")
    conn2.register_local_user_observer(recording(sdk.IRTCLocalUserObserver, rec))
    conn2.connect("t", "room", "1")
    world.channel("room").speak("1", tone(20))
    assert world.wait_idle()
    assert "on_playback_audio_frame_before_mixing" not in rec.names()
    assert [type(e) for m, e in world.errors] == [AttributeError, AttributeError]


def test_second_frame_observer_registration_raises(world: Any, sdk: SimpleNamespace) -> None:
    conn, _ = make_bot(sdk)
    with pytest.raises(AttributeError, match="unregister_audio_frame_observer"):
        conn.register_audio_frame_observer(sdk.IAudioFrameObserver(), 0, None)
    assert conn.register_observer(sdk.IRTCConnectionObserver()) == 0  # twice is fine
    assert conn.register_audio_encoded_frame_observer(object()) == -1000


# --- connection trouble and tokens ------------------------------------------------------


def test_reconnecting_lost_and_reconnected(world: Any, sdk: SimpleNamespace) -> None:
    room = world.channel("room")
    room.add_user("1")
    conn, rec = make_bot(sdk)
    conn.connect("t", "room", "1")
    rec.wait_count("on_user_audio_track_state_changed")
    world.interrupt()
    world.report_lost()
    room.speak("1", tone(30))
    assert world.wait_idle()
    world.restore()
    room.speak("1", tone(20))
    assert world.wait_idle()
    reconnecting = rec.args("on_reconnecting")[0]
    assert (reconnecting[1].state, reconnecting[2]) == (4, 2)
    assert len(rec.args("on_connection_lost")[0]) == 2  # (conn, conn_info): no reason
    assert (rec.args("on_reconnected")[0][1].state, rec.args("on_reconnected")[0][2]) == (3, 15)
    assert len(rec.args("on_playback_audio_frame_before_mixing")) == 2  # outage audio lost


def test_token_expiry_without_and_with_renewal(world: Any, sdk: SimpleNamespace) -> None:
    conn, rec = make_bot(sdk)
    conn.connect("old-token", "room", "1")
    rec.wait_count("on_connected")
    world.token_will_expire()
    rec.wait_count("on_token_privilege_will_expire")
    assert rec.args("on_token_privilege_will_expire") == [(conn, "old-token")]
    with pytest.raises(AttributeError):
        conn.renew_token(None)
    assert conn.renew_token("new-token") == 0
    world.token_expires()
    assert world.wait_idle()
    assert "on_token_privilege_did_expire" not in rec.names()

    world.token_will_expire()
    world.token_expires()
    rec.wait_count("on_connection_failure")
    assert rec.args("on_token_privilege_did_expire") == [(conn,)]
    info, reason = rec.args("on_connection_failure")[0][1:]
    assert (info.state, reason) == (5, 9)
    conn.renew_token("fresh")
    rec.wait_count("on_connected", 2)
    assert rec.args("on_connected")[1][2] == 12
    assert world.renewed_tokens == ["new-token", "fresh"]


def test_fatal_failure_reason(world: Any, sdk: SimpleNamespace) -> None:
    conn, rec = make_bot(sdk)
    conn.connect("t", "room", "1")
    rec.wait_count("on_connected")
    world.fail(19)
    rec.wait_count("on_connection_failure")
    assert rec.args("on_connection_failure")[0][2] == 19


# --- publishing -------------------------------------------------------------------------


def test_push_return_codes(world: Any, sdk: SimpleNamespace) -> None:
    silent, _ = make_bot(sdk)
    assert silent.push_audio_pcm_data(bytearray(320), 16000, 1) == -1001
    assert silent.publish_audio() == -1000
    talker, _ = make_bot(sdk, publish=True)
    assert talker.push_audio_pcm_data(bytearray(33), 16000, 1) == -1002
    with pytest.raises(TypeError):
        talker.push_audio_pcm_data(bytes(320), 16000, 1)
    assert talker.push_audio_pcm_data(memoryview(bytearray(320)), 16000, 1) == 0
    assert talker.interrupt_audio() == -1000


def test_push_completed_is_a_wall_clock_estimate(world: Any, sdk: SimpleNamespace) -> None:
    conn, _ = make_bot(sdk, publish=True)
    native = world.connection()
    assert conn.is_push_to_rtc_completed()
    conn.push_audio_pcm_data(bytearray(3200), 16000, 1)  # 100 ms
    start = native.round_start
    assert not native.push_completed(start + 0.279)
    assert native.push_completed(start + 0.281)  # pushed ms + 180 ms
    conn.interrupt_audio()
    assert conn.is_push_to_rtc_completed()


def test_audience_publish_is_refused(world: Any, sdk: SimpleNamespace) -> None:
    conn, rec = make_bot(sdk, publish=True, audience=True)
    conn.connect("t", "room", "9999")
    rec.wait_count("on_connected")
    assert conn.publish_audio() == 0
    assert conn.push_audio_pcm_data(bytearray(tone(100)), 16000, 1) == 0
    rec.wait_count("on_audio_track_publication_failure")
    assert world.wait_idle()
    assert world.published == []
    assert [r.reason for r in world.rejected] == ["audience"]
    assert rec.args("on_audio_publish_state_changed")[0][3] == 1


def test_broadcaster_publishes_paced_audio_and_interrupt_flushes(
    world: Any, sdk: SimpleNamespace
) -> None:
    conn, rec = make_bot(sdk, publish=True, audience=True)
    conn.connect("t", "room", "9999")
    rec.wait_count("on_connected")
    local_user = conn.get_local_user()
    assert local_user.set_user_role(sdk.base.ClientRoleType.CLIENT_ROLE_BROADCASTER) == 0
    rec.wait_count("on_change_role_success")
    assert rec.args("on_change_role_success") == [(conn, 2, 1)]
    assert conn.publish_audio() == 0
    rec.wait_count("on_audio_track_publish_success")
    speech = tone(200, 1234)
    start = time.monotonic()
    assert conn.push_audio_pcm_data(bytearray(speech), 16000, 1) == 0
    assert not conn.is_push_to_rtc_completed()
    assert world.wait_idle()
    assert world.published_pcm() == speech
    frames = world.published
    assert len(frames) == 20 and all(len(f.pcm) == 320 for f in frames)
    assert frames[-1].at - frames[0].at > 0.19 * 0.5 and frames[0].at >= start
    # Barge-in: what is queued but not yet played is dropped.
    conn.push_audio_pcm_data(bytearray(tone(2000)), 16000, 1)
    assert conn.interrupt_audio() == -1000
    assert world.wait_idle(2)
    assert len(world.published) < 20 + 20


@UNRAISABLE
def test_aiqos_missing_none_return_is_a_swallowed_type_error(
    world: Any, sdk: SimpleNamespace
) -> None:
    ai = sdk.base.AudioScenarioType.AUDIO_SCENARIO_AI_SERVER
    conn, rec = make_bot(sdk, publish=True, audience=False, scenario=ai)
    conn.connect("t", "room", "1")
    rec.wait_count("on_connected")
    world.channel("room").add_user("legacy", ai_qos=False)
    rec.wait_count("on_aiqos_capability_missing")
    assert world.wait_idle()
    assert rec.args("on_aiqos_capability_missing") == [
        (conn, sdk.base.AudioScenarioType.AUDIO_SCENARIO_GAME_STREAMING)
    ]
    assert [(m, type(e)) for m, e in world.errors] == [("on_aiqos_capability_missing", TypeError)]
    assert "on_audio_track_publish_success" not in rec.names()


def test_aiqos_missing_int_return_republishes(world: Any, sdk: SimpleNamespace) -> None:
    ai = sdk.base.AudioScenarioType.AUDIO_SCENARIO_AI_SERVER
    conn, rec = make_bot(
        sdk,
        publish=True,
        audience=False,
        scenario=ai,
        conn_overrides={"on_aiqos_capability_missing": 3},
    )
    conn.connect("t", "room", "1")
    rec.wait_count("on_connected")
    world.channel("room").add_user("legacy", ai_qos=False)
    rec.wait_count("on_audio_track_publish_success")
    assert (
        conn.publish_config.audio_scenario
        == sdk.base.AudioScenarioType.AUDIO_SCENARIO_GAME_STREAMING
    )
    assert world.errors == []


# --- teardown ---------------------------------------------------------------------------


def test_disconnect_keeps_connection_observer_and_release_ends_everything(
    world: Any, sdk: SimpleNamespace
) -> None:
    room = world.channel("room")
    room.add_user("1")
    conn, rec = make_bot(sdk)
    conn.connect("t", "room", "1")
    rec.wait_count("on_user_audio_track_state_changed")
    assert conn.disconnect() == 0
    rec.wait_count("on_disconnected")
    info, reason = rec.args("on_disconnected")[0][1:]
    assert (info.state, reason) == (1, 5)
    room.mute("1")
    room.speak("1", tone(20))
    assert world.wait_idle()
    assert "on_user_info_updated" not in rec.names()
    conn.release()
    assert conn.get_local_user() is None
    from agora.fake_control import FakeAgoraUseAfterRelease

    for call in (
        lambda: conn.connect("t", "room", "1"),
        conn.disconnect,
        conn.publish_audio,
        lambda: conn.push_audio_pcm_data(bytearray(320), 16000, 1),
        conn.release,
    ):
        with pytest.raises(FakeAgoraUseAfterRelease):
            call()


def test_other_local_user_traps(world: Any, sdk: SimpleNamespace) -> None:
    conn, _ = make_bot(sdk)
    local_user = conn.get_local_user()
    with pytest.raises(AttributeError):
        local_user.get_remote_audio_track("1")
    with pytest.raises(AttributeError):
        local_user.set_audio_scenario(3)
    with pytest.raises(NotImplementedError, match="not reproduced"):
        local_user.subscribe_video("1", None)
    assert conn.get_sid().startswith("fake-sid-")
    assert local_user.get_user_role() == 2
