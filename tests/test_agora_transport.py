"""The Agora transport on both backends: join, failures, audio, events, tokens, publishing.

``world`` (tests/agora_standin/plugin.py) is the Python fake or the SDK's real
wrapper on the native stand-in, driven through one control API
(tests/fake_agora/control.py); every test here runs on both with the same
assertions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recorder.audio import Chunk
from recorder.errors import ConfigError, JoinError, TransportError
from recorder.transport.agora.codes import (
    TokenSource,
    connect_result_problem,
    reason_problem,
)
from recorder.transport.agora.tap import LinearClock
from recorder.transport.agora.token import RtcPrivilege, parse_access_token2, verify_access_token2
from recorder.transport.agora.transport import AgoraTransport
from recorder.transport.base import (
    ConnectionState,
    ConnectionStateChanged,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    TransportEvent,
    TransportSink,
)
from tests.support.timing import TIMEOUT

APP_ID = "0123456789abcdef0123456789abcdef"
CERTIFICATE = "fedcba9876543210fedcba9876543210"
CHANNEL = "standup"
BOT_UID = 9999


class Sink(TransportSink):
    """Collects what the transport delivers and lets a test await a condition."""

    def __init__(self) -> None:
        self.events: list[TransportEvent] = []
        self.chunks: dict[int, list[Chunk]] = {}
        self._changed = asyncio.Event()

    def on_event(self, event: TransportEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def on_audio(self, uid: int, chunk: Chunk) -> None:
        self.chunks.setdefault(uid, []).append(chunk)
        self._changed.set()

    def pcm(self, uid: int) -> bytes:
        """``uid``'s audio, without the silence the bridge gives a gap in frames."""
        return b"".join(c.pcm for c in self.chunks.get(uid, []) if any(c.pcm))

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def states(self) -> list[ConnectionState]:
        return [e.state for e in self.of(ConnectionStateChanged)]

    async def wait(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


def make(tmp_path: Path, **overrides: Any) -> AgoraTransport:
    settings: dict[str, Any] = {
        "app_id": APP_ID,
        "channel": CHANNEL,
        "bot_uid": BOT_UID,
        "log_dir": tmp_path / "agora-log",
        "join_timeout_s": 2.0,
        "leave_timeout_s": 1.0,
        "call_timeout_s": 2.0,
    }
    settings.update(overrides)
    return AgoraTransport(**settings)


def tone(ms: int, value: int = 3000) -> bytes:
    return value.to_bytes(2, "little", signed=True) * (16 * ms)


async def idle(world: Any, limit_s: float = TIMEOUT) -> bool:
    """Wait, off the loop, until the fake has delivered everything queued."""
    return bool(await asyncio.to_thread(world.wait_idle, limit_s))


async def fake_until(world: Any, predicate: Callable[[], bool], limit_s: float = TIMEOUT) -> bool:
    """Wait, off the loop, until ``predicate()`` holds in the fake (False on timeout).

    The fake's native thread notifies its condition after every event and 10 ms tick,
    as ``wait_idle`` relies on; the predicate is checked under the fake's lock.
    """

    return bool(await asyncio.to_thread(world.wait_until, predicate, limit_s))


async def joined(tmp_path: Path, **overrides: Any) -> tuple[AgoraTransport, Sink]:
    transport = make(tmp_path, **overrides)
    sink = Sink()
    await transport.start(sink)
    return transport, sink


# --- joining ----------------------------------------------------------------------------


async def test_join_follows_the_spec_and_leaves_in_order(world: Any, tmp_path: Path) -> None:
    transport, sink = await joined(tmp_path, app_certificate=CERTIFICATE)
    native = world.connection()
    assert native.state == 3 and native.channel == CHANNEL and native.local_uid == str(BOT_UID)
    assert native.role == 2  # audience: silent and invisible
    assert native.auto_subscribe and native.frame_format == (1, 16000)
    assert not native.has_track
    assert not native.ai_server_scenario  # no AI-QoS surprise publish
    assert verify_access_token2(native.token, CERTIFICATE)
    token = parse_access_token2(native.token)
    assert token.rtc_channel_and_uid() == (CHANNEL, str(BOT_UID))
    assert set(token.rtc_privileges()) == {RtcPrivilege.JOIN_CHANNEL}
    assert transport.sid == native.sid and transport.sid
    await sink.wait(lambda: ConnectionState.CONNECTED in sink.states())
    await transport.stop()
    await transport.stop()  # idempotent
    assert native.released and native.state == 1
    assert world.counts["on_disconnected"] == 1  # waited for it before release
    await transport.wait_finished()  # returns (no failure) once stopped
    await sink.wait(lambda: sink.states()[-1] is ConnectionState.DISCONNECTED)
    assert world.errors == [] and world.bad_returns == []


async def test_app_id_only_project_joins_with_the_app_id(world: Any, tmp_path: Path) -> None:
    transport, _ = await joined(tmp_path)
    assert world.connection().token == APP_ID
    assert transport.token_source is TokenSource.APP_ID_ONLY
    await transport.stop()


async def test_prebuilt_token_is_used_as_given(world: Any, tmp_path: Path) -> None:
    transport, _ = await joined(tmp_path, token="007prebuilt")
    assert world.connection().token == "007prebuilt"
    await transport.stop()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"channel": ""}, "channel name is empty"),
        ({"channel": "a/b"}, "characters Agora does not allow"),
        ({"channel": "ü"}, "characters Agora does not allow"),
        ({"channel": "x" * 64}, "at most 63"),
        ({"bot_uid": 0}, "AGORA_BOT_UID must be between 1"),
        ({"bot_uid": 2**32}, "AGORA_BOT_UID must be between 1"),
        ({"app_id": ""}, "AGORA_APP_ID is not set"),
        ({"app_id": "not-an-app-id"}, "32 hexadecimal"),
        ({"app_certificate": "short"}, "AGORA_APP_CERTIFICATE must be 32"),
    ],
)
def test_bad_settings_fail_before_the_sdk(
    world: Any, tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make(tmp_path, **overrides)
    assert message in str(info.value)
    assert world.connections() == []


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        (3, ["banned", "AGORA_BOT_UID"]),
        (4, ["could not complete the join", "reach agora"]),
        (6, ["AGORA_APP_ID", "agora console"]),
        (7, ["channel name", "'standup'"]),
        (8, ["rejected the token", "AGORA_APP_CERTIFICATE"]),
        (9, ["expired", "AGORA_TOKEN"]),
        (10, ["refused", "uid 9999"]),
        (19, ["uid 9999", "AGORA_BOT_UID"]),
        (24, ["another app id", "same project"]),
        (99, ["unknown (99)"]),
    ],
)
async def test_join_failure_reasons_name_the_fix(
    world: Any, tmp_path: Path, reason: int, words: list[str]
) -> None:
    world.join_failure = reason
    transport = make(tmp_path)
    with pytest.raises(JoinError) as info:
        await transport.start(Sink())
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), message
    assert f"reason {reason}" in message
    assert message == message.strip() and not message.endswith(".")
    assert APP_ID not in message
    (native,) = world.connections()
    assert native.released  # a failed join still leaves and releases
    await transport.stop()


async def test_bad_token_names_the_token_source(world: Any, tmp_path: Path) -> None:
    world.token_validator = lambda token, channel, uid: (
        None if verify_access_token2(token, CERTIFICATE) else 8
    )
    with pytest.raises(JoinError, match="AGORA_TOKEN for channel 'standup' and uid 9999"):
        await make(tmp_path, token="007stale").start(Sink())
    with pytest.raises(JoinError, match="same Agora project"):
        await make(tmp_path, app_certificate="0" * 32).start(Sink())
    with pytest.raises(JoinError, match="has an App Certificate enabled"):
        await make(tmp_path).start(Sink())
    transport, _ = await joined(tmp_path, app_certificate=CERTIFICATE)
    await transport.stop()
    assert "007stale" not in str(world.errors)


async def test_sdk_that_does_not_start_or_connect(world: Any, tmp_path: Path) -> None:
    world.valid_app_ids = {"f" * 32}
    with pytest.raises(JoinError, match="did not start with this AGORA_APP_ID"):
        await make(tmp_path).start(Sink())
    world.valid_app_ids = None
    world.fail_connection_create = True
    with pytest.raises(JoinError, match="could not create a connection"):
        await make(tmp_path).start(Sink())


async def test_join_without_answer_times_out(world: Any, tmp_path: Path) -> None:
    world.answer_joins = False  # Agora never answers
    transport = make(tmp_path, join_timeout_s=0.2)
    with pytest.raises(JoinError, match="no answer from Agora within"):
        await transport.start(Sink())
    assert world.connections()[0].released


async def test_ctrl_c_during_join_leaves_cleanly(world: Any, tmp_path: Path) -> None:
    world.answer_joins = False
    transport = make(tmp_path, join_timeout_s=30)
    task = asyncio.create_task(transport.start(Sink()))
    assert await fake_until(world, lambda: world.unanswered_joins == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert world.connections()[0].released
    await transport.stop()


def test_connect_results_are_explained() -> None:
    assert "result -2 invalid argument" in connect_result_problem(-2, channel="c")
    assert "channel name" in connect_result_problem(-2, channel="c")
    assert "unknown" in connect_result_problem(-77, channel="c")
    text = reason_problem(8, channel="c", uid=1, token_source=TokenSource.PREBUILT)
    assert "AGORA_TOKEN" in text and "reason 8 invalid token" in text


# --- audio and participant events -------------------------------------------------------


async def test_audio_arrives_whole_in_chunks(world: Any, tmp_path: Path) -> None:
    world.tick_s = 0.002
    transport, sink = await joined(tmp_path)
    channel = world.channel(CHANNEL)
    channel.add_user(101)
    speech = tone(1000) + tone(500, -2000)
    channel.speak(101, speech)
    await sink.wait(lambda: len(sink.pcm(101)) >= len(speech) - 3200)
    assert await idle(world)
    await transport.stop()
    assert sink.pcm(101) == speech
    chunks = sink.chunks[101]
    assert all(c.duration_ms <= 100 for c in chunks)
    assert sink.of(ParticipantJoined) == [
        ParticipantJoined(101, sink.of(ParticipantJoined)[0].at_ms)
    ]
    assert transport.callback_errors == 0 and world.errors == []


async def test_mute_leave_and_rejoin_become_events(world: Any, tmp_path: Path) -> None:
    transport, sink = await joined(tmp_path)
    channel = world.channel(CHANNEL)
    channel.add_user(101)
    channel.add_user(202, muted=True)
    channel.add_user(303, host=False)  # audience: invisible
    await sink.wait(lambda: len(sink.of(ParticipantMuted)) == 1)
    channel.unmute(202)
    channel.mute(101)
    await sink.wait(lambda: len(sink.of(ParticipantMuted)) == 3)
    channel.remove_user(101, reason=1)
    channel.set_host(202, False)
    await sink.wait(lambda: len(sink.of(ParticipantLeft)) == 2)
    channel.add_user(101)
    channel.set_host(303, True)
    await sink.wait(lambda: len(sink.of(ParticipantJoined)) == 4)
    await transport.stop()
    muted = [(e.uid, e.is_muted) for e in sink.of(ParticipantMuted)]
    assert muted == [(202, True), (202, False), (101, True)]  # each change once
    left = [(e.uid, e.reason) for e in sink.of(ParticipantLeft)]
    assert left == [(101, "dropped"), (202, "became audience")]
    assert [e.uid for e in sink.of(ParticipantJoined)] == [101, 202, 101, 303]
    at = [e.at_ms for e in sink.events]
    assert at == sorted(at)


async def test_reconnect_is_a_gap_in_the_audio(world: Any, tmp_path: Path) -> None:
    world.tick_s = 0.002  # 5x real time
    clock_ms = LinearClock(time.monotonic(), 5.0)  # meeting time runs 5x, like the fake's clock

    # A gap in frames becomes silence after a while; here only after 1 s of wall clock
    # (5 s of this clock), so that a loaded machine, slow to report the outage, does not
    # fill its first moments with silence before the transport knows of it.
    transport, sink = await joined(tmp_path, clock_ms=clock_ms, fill_gaps_after_ms=5000.0)
    channel = world.channel(CHANNEL)
    channel.add_user(101)
    channel.speak(101, tone(4000))
    await sink.wait(lambda: len(sink.pcm(101)) >= 32_000)  # 1 s arrived
    world.interrupt()
    await sink.wait(lambda: ConnectionState.RECONNECTING in sink.states())
    received_before = len(sink.pcm(101))
    world.report_lost()
    # The outage lasts while 0.6 s of speech is said (and lost). The fake paces frames at
    # tick_s, catching up at most 10, so that is >= 0.1 s of wall time: 0.5 s of meeting time.
    spoken = channel.frames_spoken(101)
    assert await fake_until(world, lambda: channel.frames_spoken(101) >= spoken + 60)
    world.restore()
    assert await idle(world)
    await sink.wait(lambda: sink.states().count(ConnectionState.CONNECTED) == 2)
    await transport.stop()
    (gap,) = transport.gaps
    assert gap[1] - gap[0] >= 400
    chunks = sink.chunks[101]
    before = [c for c in chunks if c.end_ms <= gap[0] + 20]
    after = [c for c in chunks if c.start_ms >= gap[1] - 20]
    spanning = [(c.start_ms, c.end_ms) for c in chunks if c not in before and c not in after]
    assert spanning == [], (spanning, gap)  # no chunk spans the outage
    assert sum(len(c.pcm) for c in before) == received_before
    assert after and after[0].start_ms - before[-1].end_ms >= 400
    assert len(sink.pcm(101)) < len(tone(4000))  # audio said during the outage is lost


async def test_fatal_failure_mid_meeting_raises_in_wait_finished(
    world: Any, tmp_path: Path
) -> None:
    transport, sink = await joined(tmp_path)
    channel = world.channel(CHANNEL)
    channel.add_user(101)
    channel.speak(101, tone(300))
    assert await idle(world)
    world.fail(3)
    with pytest.raises(TransportError, match="banned") as info:
        await asyncio.wait_for(transport.wait_finished(), TIMEOUT)
    assert "reason 3" in str(info.value)
    await sink.wait(lambda: ConnectionState.FAILED in sink.states())
    assert len(sink.pcm(101)) == len(tone(300))  # flushed what was gathered
    await transport.stop()
    assert world.connections()[0].released


async def test_callback_errors_are_counted_never_raised_into_the_sdk(
    world: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transport, sink = await joined(tmp_path)
    channel = world.channel(CHANNEL)
    channel.add_user("alice")  # a string uid: int() fails in our callbacks
    channel.speak("alice", tone(50))
    channel.add_user(101)
    channel.speak(101, tone(200))
    assert await idle(world)
    await transport.stop()
    assert sink.pcm(101) == tone(200)  # the others' audio is unaffected
    assert transport.callback_errors >= 2
    assert world.errors == []  # nothing escaped to the native side
    assert "agora callback" in caplog.text


async def test_fifty_participants_wake_the_loop_once_per_chunk(world: Any, tmp_path: Path) -> None:
    transport, sink = await joined(tmp_path)
    channel = world.channel(CHANNEL)
    uids = list(range(1000, 1050))
    for uid in uids:
        channel.add_user(uid)
    for uid in uids:
        channel.speak(uid, tone(1000, uid))
    assert await idle(world, 10)
    await transport.stop()
    bridge = transport.bridge
    assert bridge is not None
    assert all(sink.pcm(uid) == tone(1000, uid) for uid in uids)
    assert bridge.frames == 50 * 100
    # ~100 ms chunks (the first one staggered, the last flushed at leave): a tenth.
    assert 50 * 10 <= bridge.chunks <= 50 * 12
    # The loop wakes at most once per chunk or event, never once per frame.
    assert bridge.wakeups <= bridge.chunks + len(sink.events)


# --- tokens -----------------------------------------------------------------------------


async def test_token_renewed_before_expiry(
    world: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    transport, sink = await joined(tmp_path, app_certificate=CERTIFICATE)
    first = world.connection().token
    world.token_will_expire()
    assert await fake_until(world, lambda: len(world.renewed_tokens) == 1)
    (renewed,) = world.renewed_tokens
    assert renewed != first and verify_access_token2(renewed, CERTIFICATE)
    assert parse_access_token2(renewed).rtc_channel_and_uid() == (CHANNEL, str(BOT_UID))
    world.token_expires()  # renewed in time: nothing happens
    assert await idle(world)
    assert world.connection().state == 3 and transport.gaps == []
    await transport.stop()
    assert transport.renewals == 1
    for secret in (first, renewed, CERTIFICATE):
        assert secret not in caplog.text


async def test_expired_token_recovers_by_renewing(world: Any, tmp_path: Path) -> None:
    transport, sink = await joined(tmp_path, app_certificate=CERTIFICATE)
    world.token_expires()  # no warning first: the connection fails with reason 9
    await sink.wait(lambda: sink.states().count(ConnectionState.CONNECTED) == 2)
    assert world.connection().state == 3 and len(world.renewed_tokens) == 1
    assert len(transport.gaps) == 1 and transport.rejoins == 0
    await transport.stop()
    await transport.wait_finished()  # no failure


async def test_expired_token_rejoins_when_renewing_does_not_help(
    world: Any, tmp_path: Path
) -> None:
    transport, sink = await joined(tmp_path, app_certificate=CERTIFICATE, renew_timeout_s=0.2)
    world.renew_effective = False  # accepted, no effect
    world.channel(CHANNEL).add_user(101)
    await sink.wait(lambda: len(sink.of(ParticipantJoined)) == 1)
    world.token_expires()
    await sink.wait(lambda: sink.states().count(ConnectionState.CONNECTED) == 2)
    first, second = world.connections()
    assert first.released and second.state == 3 and transport.rejoins == 1
    await sink.wait(lambda: len(sink.of(ParticipantJoined)) == 2)  # hosts re-announced
    await transport.stop()
    assert second.released


async def test_prebuilt_token_expiry_is_fatal_and_secret(
    world: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transport, _ = await joined(tmp_path, token="007-the-users-token")
    world.token_will_expire()
    world.token_expires()
    with pytest.raises(TransportError, match="AGORA_APP_CERTIFICATE") as info:
        await asyncio.wait_for(transport.wait_finished(), TIMEOUT)
    await transport.stop()
    assert "007-the-users-token" not in str(info.value)
    assert "007-the-users-token" not in caplog.text
    assert "cannot be renewed" in caplog.text


# --- publishing -------------------------------------------------------------------------


async def test_publishing_joins_as_host_and_paces_the_audio(world: Any, tmp_path: Path) -> None:
    transport, _ = await joined(tmp_path, app_certificate=CERTIFICATE, publish=True)
    native = world.connection()
    assert native.role == 1 and native.has_track
    privileges = parse_access_token2(native.token).rtc_privileges()
    assert RtcPrivilege.PUBLISH_AUDIO_STREAM in privileges
    speech = tone(600) + b"\x01"  # odd length: padded to whole frames
    loop = asyncio.get_running_loop()
    started = loop.time()
    queued: list[float] = []
    publishing = asyncio.create_task(transport.publish(speech))
    while not publishing.done():
        # Sampling the backlog while it publishes (a measurement, not a wait for an event).
        queued.append(transport.publish_backlog_ms)
        await asyncio.sleep(0.01)
    await publishing
    assert loop.time() - started >= 0.4  # paced: 600 ms cannot go out at once
    assert max(queued) <= 160  # never more than ~150 ms ahead of the wall clock
    assert await idle(world)
    published = world.published_pcm()
    assert published[: len(tone(600))] == tone(600)
    assert len(published) == len(tone(610))
    await transport.stop()


async def test_wait_played_sleeps_until_the_pushed_audio_has_played(
    world: Any, tmp_path: Path
) -> None:
    transport, _ = await joined(tmp_path, publish=True)
    await transport.publish(tone(300))
    pushed_at = time.monotonic()
    backlog_ms = transport.publish_backlog_ms
    assert 0 < backlog_ms <= 160
    await asyncio.wait_for(transport.wait_played(50.0), TIMEOUT)
    assert transport.publish_backlog_ms <= 50
    await asyncio.wait_for(transport.wait_played(0.0), TIMEOUT)
    # Slept as long as the backlog took to play out on the wall clock, no less.
    assert time.monotonic() - pushed_at >= backlog_ms / 1000 - 0.005
    assert transport.publish_backlog_ms == 0
    assert transport.publish_played_ms == pytest.approx(300)
    await transport.stop()


async def test_flush_wakes_wait_played_at_once(world: Any, tmp_path: Path) -> None:
    transport, _ = await joined(tmp_path, publish=True, publish_lead_ms=5000.0)
    await transport.publish(tone(3000))  # all of it at once: 3 s still to play
    waiting = asyncio.create_task(transport.wait_played(0.0))
    await asyncio.sleep(0)
    assert not waiting.done()
    flushed_at = time.monotonic()
    transport.flush_publish()
    await asyncio.wait_for(waiting, TIMEOUT)
    assert time.monotonic() - flushed_at < 1.0  # not the 3 s the audio would take
    assert transport.publish_backlog_ms == 0
    assert transport.publish_played_ms < 1000  # what was dropped never counts as heard
    await transport.stop()


async def test_flush_stops_publishing_at_once(world: Any, tmp_path: Path) -> None:
    transport, _ = await joined(tmp_path, publish=True)
    publishing = asyncio.create_task(transport.publish(tone(3000)))
    assert await fake_until(world, lambda: len(world.published_pcm()) >= len(tone(100)))
    transport.flush_publish()
    await asyncio.wait_for(publishing, TIMEOUT)
    assert await idle(world)
    assert len(world.published_pcm()) < len(tone(600))
    await transport.stop()
    transport.flush_publish()  # after stop: no SDK call on a released connection


async def test_audience_cannot_publish(world: Any, tmp_path: Path) -> None:
    transport, _ = await joined(tmp_path)
    with pytest.raises(TransportError, match="audience member"):
        await transport.publish(tone(100))
    assert world.published_pcm() == b"" and world.rejected_bytes == 0
    transport.flush_publish()
    await transport.stop()
    with pytest.raises(TransportError):
        await transport.publish(tone(100))


async def test_role_change_is_an_event_and_audience_stops_publishing(
    world: Any, tmp_path: Path
) -> None:
    transport, sink = await joined(tmp_path, publish=True)
    # The SDK reports role changes it was asked for; ask it directly (the SDK's own object).
    await asyncio.to_thread(transport._conn.get_local_user().set_user_role, 2)
    await sink.wait(
        lambda: any("role changed to audience" in e.reason for e in sink.of(ConnectionStateChanged))
    )
    with pytest.raises(TransportError, match="audience member"):
        await transport.publish(tone(100))
    assert world.rejected_bytes == 0
    await transport.stop()


async def test_stop_during_join_gives_up_the_join(world: Any, tmp_path: Path) -> None:
    world.answer_joins = False
    transport = make(tmp_path, join_timeout_s=30)
    starting = asyncio.create_task(transport.start(Sink()))
    assert await fake_until(world, lambda: world.unanswered_joins == 1)
    await transport.stop()  # e.g. Ctrl+C handled by the bot while joining
    with pytest.raises(JoinError, match="stopped while joining"):
        await asyncio.wait_for(starting, TIMEOUT)
    assert world.connections()[0].released


async def test_publishing_stops_when_the_connection_goes(world: Any, tmp_path: Path) -> None:
    transport, _ = await joined(tmp_path, publish=True)
    publishing = asyncio.create_task(transport.publish(tone(3000)))
    assert await fake_until(world, lambda: bool(world.published_pcm()))
    await transport.stop()
    await asyncio.wait_for(publishing, TIMEOUT)  # returns; never pushes into a released one
    assert world.connections()[0].released and world.errors == []


def test_every_observer_method_takes_the_sdks_argument_count(world: Any) -> None:
    # The SDK calls observers positionally: a wrong count is a swallowed TypeError
    # and silently lost events (docs/providers.md, "Agora: audio frames").
    import inspect
    from types import SimpleNamespace

    from recorder.transport.agora.observers import make_observers
    from recorder.transport.agora.preflight import load_agora_sdk

    sdk = load_agora_sdk()
    handler = SimpleNamespace(callback_failed=lambda method, error: None)
    observers = make_observers(sdk, handler, lambda uid, frame: None)  # type: ignore[arg-type]
    checked = 0
    for observer in (observers.connection, observers.local_user, observers.audio_frame):
        base = type(observer).__mro__[1]
        for name, method in vars(type(observer)).items():
            if name.startswith("on_"):
                ours = inspect.signature(method).parameters
                theirs = inspect.signature(getattr(base, name)).parameters
                assert len(ours) == len(theirs), name
                checked += 1
    assert checked >= 20


def test_secrets_stay_out_of_reprs(world: Any, tmp_path: Path) -> None:
    from recorder.transport.agora.credentials import AgoraCredentials

    transport = make(tmp_path, app_certificate=CERTIFICATE, token="007-given")
    credentials = AgoraCredentials(
        app_id=APP_ID, channel=CHANNEL, uid=BOT_UID, app_certificate=CERTIFICATE
    )
    text = repr(transport) + repr(credentials) + repr(vars(transport).get("_credentials"))
    for secret in (CERTIFICATE, "007-given", APP_ID):
        assert secret not in text
    assert credentials.can_renew and credentials.join_token().startswith("007")
    assert not AgoraCredentials(app_id=APP_ID, channel=CHANNEL, uid=BOT_UID).can_renew
