"""The fake Agora "native library" and its test-control API (NOT part of the SDK surface).

The SDK-shaped classes under ``agora.rtc`` are thin wrappers, as in the real
wrapper; the behaviour lives here: one native thread that fires every callback
through a ctypes thunk (so exceptions and bad return values are swallowed and
reported through ``sys.unraisablehook`` exactly as ctypes does for the real SDK),
a 10 ms pacing clock for per-uid audio frames and for the bot's published PCM,
and a simulated channel that tests drive through :data:`world`.

Tests reach it as ``agora.fake_control.world`` after the fake is put on
``sys.path`` (see ``tests/fake_agora/__init__.py``). Fidelity choices for
behaviour that is unconfirmed for the real SDK are listed on :class:`FakeAgoraWorld`.
"""

from __future__ import annotations

import array
import ctypes
import itertools
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FakeAgoraUseAfterRelease",
    "FakeAgoraWorld",
    "FakeChannel",
    "NativeConnection",
    "PublishedFrame",
    "RejectedPush",
    "RemoteUser",
    "world",
]

_INT_THUNK = ctypes.CFUNCTYPE(ctypes.c_int)
_VOID_THUNK = ctypes.CFUNCTYPE(None)

# CONNECTION_STATE_TYPE (docs/providers.md, "Agora: events and codes").
DISCONNECTED, CONNECTING, CONNECTED, RECONNECTING, FAILED = 1, 2, 3, 4, 5
# CONNECTION_CHANGED_REASON_TYPE values the fake emits.
REASON_CONNECTING, REASON_JOIN_SUCCESS, REASON_INTERRUPTED = 0, 1, 2
REASON_LEAVE_CHANNEL, REASON_INVALID_CHANNEL_NAME, REASON_TOKEN_EXPIRED = 5, 7, 9
REASON_RENEW_TOKEN, REASON_REJOIN_SUCCESS = 12, 15
# REMOTE_AUDIO_STATE / REASON (docs/providers.md, "Agora: events and codes").
AUDIO_STOPPED, AUDIO_STARTING, AUDIO_DECODING = 0, 1, 2
REMOTE_MUTED, REMOTE_UNMUTED, REMOTE_OFFLINE = 5, 6, 7
# USER_OFFLINE_REASON_TYPE (docs/providers.md, "Agora: events and codes").
OFFLINE_QUIT, OFFLINE_DROPPED, OFFLINE_BECOME_AUDIENCE = 0, 1, 2
ROLE_BROADCASTER, ROLE_AUDIENCE = 1, 2
# The 89 allowed characters, fewer than 64 bytes.
_CHANNEL_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$%&()+-:;<=.>?@[]^_{}|~,"
)
# Printed to stdout from a native thread on every remote-track subscription
# (docs/providers.md, "Agora: loading the SDK").
APM_FILTER_PRINT = "**********LocalUser _set_apm_filter_properties: -1001"


class FakeAgoraUseAfterRelease(RuntimeError):
    """A method of a released connection/service was called (a crash in the real SDK)."""


@dataclass
class RemoteUser:
    """A simulated participant. ``host`` users are broadcasters (visible, audible)."""

    uid: str
    host: bool = True
    muted: bool = False
    ai_qos: bool = True
    speech: bytearray = field(default_factory=bytearray)
    frames_spoken: int = 0


@dataclass(frozen=True)
class PublishedFrame:
    """10 ms of the bot's PCM as it went out to the channel."""

    at: float
    pcm: bytes
    sample_rate: int
    channels: int
    uid: str


@dataclass(frozen=True)
class RejectedPush:
    """PCM the bot pushed that reached nobody, and why."""

    at: float
    nbytes: int
    reason: str


class FakeChannel:
    """One simulated channel: remote users, their speech, and what the bot published."""

    def __init__(self, world: FakeAgoraWorld, name: str) -> None:
        self._world = world
        self.name = name
        self.users: dict[str, RemoteUser] = {}

    # --- test control -------------------------------------------------------------

    def add_user(
        self, uid: str | int, *, host: bool = True, muted: bool = False, ai_qos: bool = True
    ) -> RemoteUser:
        """A participant joins. Hosts are announced to connected bots."""
        with self._world._lock:
            user = RemoteUser(str(uid), host=host, muted=muted, ai_qos=ai_qos)
            self.users[user.uid] = user
            for conn in self._world._connected_in(self.name):
                if host:
                    self._world._announce(conn, user)
                if not ai_qos:
                    self._world._aiqos_missing(conn)
            return user

    def remove_user(self, uid: str | int, reason: int = OFFLINE_QUIT) -> None:
        """A participant leaves: on_user_left(conn, uid, reason) for hosts."""
        with self._world._lock:
            user = self.users.pop(str(uid))
            if user.host:
                for conn in self._world._connected_in(self.name):
                    self._world._user_gone(conn, user, reason)

    def set_host(self, uid: str | int, host: bool) -> None:
        """Switch a participant between host and audience (audience is invisible)."""
        with self._world._lock:
            user = self.users[str(uid)]
            if user.host == host:
                return
            user.host = host
            for conn in self._world._connected_in(self.name):
                if host:
                    self._world._announce(conn, user)
                else:
                    self._world._user_gone(conn, user, OFFLINE_BECOME_AUDIENCE)

    def mute(self, uid: str | int) -> None:
        """Remote mute: state (0, 5) and user-info MUTE_AUDIO=1; frames stop."""
        self._set_muted(str(uid), True)

    def unmute(self, uid: str | int) -> None:
        """Remote unmute: states (1, 6) then (2, 6) and user-info MUTE_AUDIO=0."""
        self._set_muted(str(uid), False)

    def _set_muted(self, uid: str, muted: bool) -> None:
        with self._world._lock:
            user = self.users[uid]
            if user.muted == muted:
                return
            user.muted = muted
            if not user.host:
                return
            for conn in self._world._connected_in(self.name):
                if muted:
                    changes = [(AUDIO_STOPPED, REMOTE_MUTED)]
                else:
                    changes = [(AUDIO_STARTING, REMOTE_UNMUTED), (AUDIO_DECODING, REMOTE_UNMUTED)]
                for state, reason in changes:
                    self._world._user_event(
                        conn, "on_user_audio_track_state_changed", uid, None, state, reason, 0
                    )
                self._world._user_event(conn, "on_user_info_updated", uid, 0, int(muted))

    def speak(self, uid: str | int, pcm: bytes | bytearray | memoryview) -> None:
        """Queue PCM16 16 kHz mono for ``uid``; the clock slices it into 10 ms frames.

        A trailing partial frame is padded with silence. Speech advances in real
        time whether or not any bot receives it (outages lose audio, as in life).
        """
        data = bytes(pcm)
        if len(data) % 2:
            raise ValueError("PCM16 needs an even number of bytes")
        with self._world._lock:
            self.users[str(uid)].speech.extend(data)
            self._world._cv.notify_all()


class NativeConnection:
    """Native-side state of one RTCConnection (the SDK object is ``sdk``)."""

    def __init__(self, world: FakeAgoraWorld, sdk: Any, conn_id: int) -> None:
        self.world = world
        self.sdk = sdk
        self.conn_id = conn_id
        self.state = DISCONNECTED
        self.released = False
        self.channel = ""
        self.local_uid = ""
        self.token = ""
        self.role = ROLE_BROADCASTER
        self.conn_observer: Any = None
        self.user_observer: Any = None
        self.frame_observer: Any = None
        self.vad_broken = False
        self.auto_subscribe = False
        self.subscribe_all = False
        self.subscribed: set[str] = set()
        self.announced: set[str] = set()
        self.frame_format = (1, 16000)
        self.has_track = False
        self.is_published = False
        self.ai_server_scenario = False
        self.expiry_pending = False
        self.renewed = False
        self.pending: deque[tuple[int, int, bytearray]] = deque()
        self.round_start: float | None = None
        self.round_ms = 0.0
        self.buffers: dict[str, bytearray] = {}
        self.rtp: Counter[str] = Counter()

    def check_alive(self, what: str) -> None:
        if self.released:
            raise FakeAgoraUseAfterRelease(
                f"fake agora: {what} called on a released connection (a crash in the real SDK)"
            )

    def is_subscribed(self, uid: str) -> bool:
        return self.subscribe_all or self.auto_subscribe or uid in self.subscribed

    def conn_info(self, state: int) -> Any:
        base = self.world._base()
        return base.RTCConnInfo(
            id=self.conn_id,
            channel_id=self.channel,
            state=state,
            local_user_id=self.local_uid,
            internal_uid=int(self.local_uid) if self.local_uid.isdigit() else 0,
        )

    # PcmConsumeStats: a wall-clock estimate, not a playout signal.
    def consume_push(self, nbytes: int, sample_rate: int, channels: int) -> None:
        now = time.monotonic()
        if self.round_start is None or self.push_completed(now):
            self.round_start, self.round_ms = now, 0.0
        self.round_ms += nbytes / (sample_rate / 1000 * 2 * channels)

    def push_completed(self, now: float | None = None) -> bool:
        if self.round_start is None:
            return True
        now = time.monotonic() if now is None else now
        return (now - self.round_start) * 1000 > self.round_ms + 180


class FakeAgoraWorld:
    """The simulated Agora cloud plus the native thread, driven by tests.

    Knobs (set before the behaviour they affect):
        valid_app_ids: App IDs ``initialize`` accepts (None: any non-empty one).
        extension_result: what ``initialize`` returns on success (-4
            was observed; never 0-means-success).
        token_validator: ``(token, channel, uid) -> reason | None``; a reason makes
            the join fail with ``on_connection_failure(reason)`` (e.g. 8 invalid token).
        invalid_channel_result: ``"failure"`` (reason 7 callback) or ``"connect"``
            (``connect`` returns -2); the SDK docs say either may happen.
        assigned_uid: the uid reported in ``on_connected`` when joining with "0".
        reuse_frame_buffers: one bytearray per (connection, uid) refilled for
            every frame, as native buffers are; False gives a fresh one per frame
            (what the 2.4.10 wrapper does). Adapters must copy either way.
        idle_silence: unmuted hosts with nothing queued send silent frames
            (unconfirmed for the real SDK; default off: no frames).
        tick_s: wall-clock seconds per 10 ms frame (lower it to run faster).
        audience_publish_error: the error code in the asynchronous
            ``on_audio_track_publication_failure`` when publishing as audience
            (the real path is unconfirmed: docs/providers.md, "Agora: audio frames").
        role_change_failure: a reason makes ``set_user_role`` fail via
            ``on_change_role_failure`` (co-host authentication refused).
        join_failure: a reason makes every later join fail with
            ``on_connection_failure(state 5, reason)`` (e.g. 6 invalid App ID).
        fail_connection_create: ``create_rtc_connection`` returns a half-built
            connection whose ``conn_handle`` is None.
        sdk_prints: print the SDK's stdout lines, as the real one does; off for benchmarks.
        compute_levels: fill ``rms``/``voice_prob`` from the PCM (costs CPU).

    Observations:
        counts: callbacks delivered to the bot's observers, by method name.
        errors: ``(method, exception)`` raised by the bot's observers (also
            reported through ``sys.unraisablehook`` as ctypes does).
        bad_returns: method names whose return value ctypes could not convert.
        published / rejected: what the bot's PCM became.
        stdout_prints: lines the fake printed to stdout like the SDK does.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._events: deque[Callable[[], None]] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._busy = False
        self._ids = itertools.count(1)
        self.channels: dict[str, FakeChannel] = {}
        self.connections: list[NativeConnection] = []
        self.valid_app_ids: set[str] | None = None
        self.extension_result = -4
        self.token_validator: Callable[[str, str, str], int | None] | None = None
        self.invalid_channel_result = "failure"
        self.assigned_uid = "4096"
        self.reuse_frame_buffers = True
        self.idle_silence = False
        self.tick_s = 0.010
        self.audience_publish_error = 5
        self.role_change_failure: int | None = None
        self.fail_connection_create = False
        self.join_failure: int | None = None
        self.sdk_prints = True
        self.compute_levels = True
        self.counts: Counter[str] = Counter()
        self.errors: list[tuple[str, BaseException]] = []
        self.bad_returns: list[str] = []
        self.published: list[PublishedFrame] = []
        self.rejected: list[RejectedPush] = []
        self.renewed_tokens: list[str] = []
        self.stdout_prints: list[str] = []
        self.stream_messages: list[bytes] = []
        self.callback_threads: set[int] = set()
        self.frames_delivered = 0

    # --- test control: channels and connections --------------------------------

    def channel(self, name: str) -> FakeChannel:
        """The channel called ``name`` (created empty on first use)."""
        with self._lock:
            if name not in self.channels:
                self.channels[name] = FakeChannel(self, name)
            return self.channels[name]

    def _targets(self, conn: NativeConnection | None) -> list[NativeConnection]:
        live = [c for c in self.connections if not c.released]
        return [conn] if conn is not None else live

    def interrupt(
        self, reason: int = REASON_INTERRUPTED, conn: NativeConnection | None = None
    ) -> None:
        """Network trouble: on_reconnecting(state 4, reason); audio stops."""
        with self._lock:
            for c in self._targets(conn):
                if c.state == CONNECTED:
                    c.state = RECONNECTING
                    self._conn_event(c, "on_reconnecting", c.conn_info(RECONNECTING), reason)

    def report_lost(self, conn: NativeConnection | None = None) -> None:
        """on_connection_lost(conn_info) for reconnecting connections (no reason argument)."""
        with self._lock:
            for c in self._targets(conn):
                if c.state == RECONNECTING:
                    self._conn_event(c, "on_connection_lost", c.conn_info(RECONNECTING))

    def restore(self, conn: NativeConnection | None = None) -> None:
        """The network is back: on_reconnected(state 3, reason 15); audio resumes."""
        with self._lock:
            for c in self._targets(conn):
                if c.state == RECONNECTING:
                    c.state = CONNECTED
                    info = c.conn_info(CONNECTED)
                    self._conn_event(c, "on_reconnected", info, REASON_REJOIN_SUCCESS)

    def fail(self, reason: int, conn: NativeConnection | None = None) -> None:
        """A fatal failure (e.g. 3 banned, 19 same uid): on_connection_failure(state 5)."""
        with self._lock:
            for c in self._targets(conn):
                if c.state in (CONNECTING, CONNECTED, RECONNECTING):
                    c.state = FAILED
                    self._conn_event(c, "on_connection_failure", c.conn_info(FAILED), reason)

    def token_will_expire(self, conn: NativeConnection | None = None) -> None:
        """on_token_privilege_will_expire(conn, token), "30 s before"."""
        with self._lock:
            for c in self._targets(conn):
                if c.state == CONNECTED:
                    c.expiry_pending, c.renewed = True, False
                    self._conn_event(c, "on_token_privilege_will_expire", c.token)

    def token_expires(self, conn: NativeConnection | None = None) -> None:
        """The token runs out: unless renewed since the warning, did_expire + failure 9."""
        with self._lock:
            for c in self._targets(conn):
                if c.state not in (CONNECTED, RECONNECTING) or (c.expiry_pending and c.renewed):
                    c.expiry_pending = False
                    continue
                c.expiry_pending = False
                c.state = FAILED
                self._conn_event(c, "on_token_privilege_did_expire")
                self._conn_event(
                    c, "on_connection_failure", c.conn_info(FAILED), REASON_TOKEN_EXPIRED
                )

    def connection(self) -> NativeConnection:
        """The one live connection (for tests that target it explicitly)."""
        with self._lock:
            live = [c for c in self.connections if not c.released]
            if len(live) != 1:
                raise LookupError(f"expected one live connection, found {len(live)}")
            return live[0]

    def published_pcm(self) -> bytes:
        """Everything the bot published, concatenated in playout order."""
        with self._lock:
            return b"".join(f.pcm for f in self.published)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` holds, checked under the lock after every event and tick."""
        with self._cv:
            return bool(self._cv.wait_for(predicate, timeout))

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event, speech and published PCM has been delivered."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._is_idle():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(remaining)
            return True

    def _is_idle(self) -> bool:
        if self._events or self._busy:
            return False
        if any(u.speech for ch in self.channels.values() for u in ch.users.values()):
            return False
        return not any(c.pending and c.is_published for c in self.connections)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the native thread (the test fixture calls this)."""
        with self._lock:
            self._stopping = True
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError("fake agora native thread did not stop")

    # --- native side: called by the agora.rtc wrappers -------------------------------

    def _base(self) -> Any:
        from .rtc import agora_base

        return agora_base

    def new_connection(self, sdk: Any) -> NativeConnection:
        with self._lock:
            conn = NativeConnection(self, sdk, next(self._ids))
            self.connections.append(conn)
            return conn

    def channel_name_ok(self, name: str) -> bool:
        return 0 < len(name.encode()) < 64 and set(name) <= _CHANNEL_CHARS

    def connect(self, conn: NativeConnection, token: str, channel: str, uid: str) -> int:
        with self._lock:
            if conn.state != DISCONNECTED:
                return -8  # "connection state is not 1"
            valid = self.channel_name_ok(channel)
            if not valid and self.invalid_channel_result == "connect":
                return -2
            conn.channel, conn.token = channel, token
            conn.local_uid = self.assigned_uid if uid == "0" else uid
            conn.state = CONNECTING
            self._ensure_thread()
            self._conn_event(conn, "on_connecting", conn.conn_info(CONNECTING), REASON_CONNECTING)
            reason = self.join_failure if valid else REASON_INVALID_CHANNEL_NAME
            if reason is None and self.token_validator is not None:
                reason = self.token_validator(token, channel, conn.local_uid)
            if reason is not None:
                conn.state = FAILED
                self._conn_event(conn, "on_connection_failure", conn.conn_info(FAILED), reason)
                return 0
            self._join(conn, REASON_JOIN_SUCCESS)
            return 0

    def _join(self, conn: NativeConnection, reason: int) -> None:
        conn.state = CONNECTED
        self._conn_event(conn, "on_connected", conn.conn_info(CONNECTED), reason)
        for user in list(self.channel(conn.channel).users.values()):
            if user.host:
                self._announce(conn, user)
            if not user.ai_qos:
                self._aiqos_missing(conn)

    def disconnect(self, conn: NativeConnection) -> int:
        with self._lock:
            was = conn.state
            conn.state = DISCONNECTED
            conn.announced.clear()
            conn.is_published = False
            conn.pending.clear()
            conn.expiry_pending = False
            if was != DISCONNECTED:
                info = conn.conn_info(DISCONNECTED)
                self._conn_event(conn, "on_disconnected", info, REASON_LEAVE_CHANNEL)
            return 0

    def renew_token(self, conn: NativeConnection, token: str) -> int:
        with self._lock:
            conn.token = token
            conn.renewed = True
            self.renewed_tokens.append(token)
            # Renewing in the FAILED state makes it connect again (reason 12).
            if conn.state == FAILED:
                conn.state = CONNECTING
                info = conn.conn_info(CONNECTING)
                self._conn_event(conn, "on_connecting", info, REASON_RENEW_TOKEN)
                self._join(conn, REASON_RENEW_TOKEN)
            return 0

    def set_role(self, conn: NativeConnection, role: int) -> int:
        with self._lock:
            old = conn.role
            if conn.state == CONNECTED and self.role_change_failure is not None:
                reason = self.role_change_failure
                self._conn_event(conn, "on_change_role_failure", reason, old)
                return 0
            conn.role = int(role)
            if conn.state == CONNECTED and old != conn.role:
                self._conn_event(conn, "on_change_role_success", old, conn.role)
            return 0

    def publish(self, conn: NativeConnection) -> int:
        with self._lock:
            if conn.role == ROLE_AUDIENCE:
                # An audience cannot publish; reported asynchronously.
                conn.is_published = False
                self._user_event(conn, "on_audio_publish_state_changed", conn.channel, 0, 1, 0)
                error = self.audience_publish_error
                self._user_event(conn, "on_audio_track_publication_failure", None, error)
                return 0
            if not conn.is_published:
                conn.is_published = True
                self._user_event(conn, "on_audio_publish_state_changed", conn.channel, 1, 2, 0)
                self._user_event(conn, "on_audio_publish_state_changed", conn.channel, 2, 3, 0)
                self._user_event(conn, "on_audio_track_publish_success", None)
            return 0

    def unpublish(self, conn: NativeConnection) -> int:
        with self._lock:
            if conn.is_published:
                conn.is_published = False
                self._user_event(conn, "on_audio_track_unpublished", None)
                self._user_event(conn, "on_audio_publish_state_changed", conn.channel, 3, 1, 0)
            return 0

    def push(self, conn: NativeConnection, data: bytes, sample_rate: int, channels: int) -> int:
        with self._lock:
            now = time.monotonic()
            conn.consume_push(len(data), sample_rate, channels)
            reason = None
            if conn.state != CONNECTED:
                reason = "not connected"
            elif conn.role == ROLE_AUDIENCE:
                reason = "audience"
            elif not conn.is_published:
                reason = "not published"
            if reason is not None:
                self.rejected.append(RejectedPush(now, len(data), reason))
                return 0
            conn.pending.append((sample_rate, channels, bytearray(data)))
            self._ensure_thread()
            self._cv.notify_all()
            return 0

    def clear_pending(self, conn: NativeConnection) -> None:
        with self._lock:
            conn.pending.clear()
            conn.round_start = None
            self._cv.notify_all()

    def frame_observer_registered(self, conn: NativeConnection) -> None:
        with self._lock:
            observer, local_user = conn.frame_observer, conn.sdk.local_user
            method = "on_get_audio_frame_position"
            self._post(lambda: self._invoke(conn, observer, method, True, local_user))

    def subscribe(self, conn: NativeConnection, uid: str | None) -> None:
        with self._lock:
            if uid is None:
                conn.subscribe_all = True
            else:
                conn.subscribed.add(uid)
            users = self.channel(conn.channel).users if conn.channel else {}
            for user in list(users.values()):
                if (
                    conn.state == CONNECTED
                    and user.uid in conn.announced
                    and (uid is None or uid == user.uid)
                ):
                    self._subscribed(conn, user)

    def unsubscribe(self, conn: NativeConnection, uid: str | None) -> None:
        with self._lock:
            if uid is None:
                conn.subscribe_all = conn.auto_subscribe = False
                conn.subscribed.clear()
            else:
                conn.subscribed.discard(uid)

    # --- event plumbing ----------------------------------------------------------

    def _connected_in(self, channel: str) -> list[NativeConnection]:
        return [
            c
            for c in self.connections
            if not c.released and c.channel == channel and c.state == CONNECTED
        ]

    def _announce(self, conn: NativeConnection, user: RemoteUser) -> None:
        conn.announced.add(user.uid)
        self._conn_event(conn, "on_user_joined", user.uid)
        if conn.is_subscribed(user.uid):
            self._subscribed(conn, user)

    def _subscribed(self, conn: NativeConnection, user: RemoteUser) -> None:
        from .rtc.remote_audio_track import RemoteAudioTrack

        track = RemoteAudioTrack(object(), user.uid)
        self._user_event(conn, "on_user_audio_track_subscribed", user.uid, track)
        self._post(lambda: self._print(APM_FILTER_PRINT))
        state, reason = (AUDIO_STOPPED, REMOTE_MUTED) if user.muted else (AUDIO_DECODING, 0)
        self._user_event(
            conn, "on_user_audio_track_state_changed", user.uid, None, state, reason, 0
        )

    def _user_gone(self, conn: NativeConnection, user: RemoteUser, reason: int) -> None:
        if user.uid not in conn.announced:
            return
        conn.announced.discard(user.uid)
        self._user_event(
            conn,
            "on_user_audio_track_state_changed",
            user.uid,
            None,
            AUDIO_STOPPED,
            REMOTE_OFFLINE,
            0,
        )
        self._conn_event(conn, "on_user_left", user.uid, reason)

    def _aiqos_missing(self, conn: NativeConnection) -> None:
        if not conn.ai_server_scenario or conn.conn_observer is None:
            return
        observer = conn.conn_observer
        scenario = self._base().AudioScenarioType.AUDIO_SCENARIO_GAME_STREAMING

        def call() -> None:
            self._note_call("on_aiqos_capability_missing")
            result = observer.on_aiqos_capability_missing(conn.sdk, scenario)
            # The wrapper's own check: None >= 0 raises TypeError here.
            if result >= 0:
                conn.sdk.update_audio_scenario(self._base().AudioScenarioType(result))

        self._post(lambda: self._run_thunk("on_aiqos_capability_missing", False, call))

    def _print(self, line: str) -> None:
        if self.sdk_prints:
            self.stdout_prints.append(line)
            print(line)

    def _conn_event(self, conn: NativeConnection, method: str, *args: Any) -> None:
        observer = conn.conn_observer
        if observer is not None:
            self._post(lambda: self._invoke(conn, observer, method, False, conn.sdk, *args))

    def _user_event(self, conn: NativeConnection, method: str, *args: Any) -> None:
        observer = conn.user_observer
        if observer is not None:
            local_user = conn.sdk.local_user
            self._post(lambda: self._invoke(conn, observer, method, False, local_user, *args))

    def _post(self, event: Callable[[], None]) -> None:
        with self._lock:
            self._events.append(event)
            self._ensure_thread()
            self._cv.notify_all()

    def _note_call(self, method: str) -> None:
        self.counts[method] += 1
        self.callback_threads.add(threading.get_ident())

    def _invoke(
        self, conn: NativeConnection, observer: Any, method: str, returns_int: bool, *args: Any
    ) -> Any:
        def call() -> Any:
            self._note_call(method)
            # Looked up at call time, called positionally, as the real wrapper does.
            return getattr(observer, method)(*args)

        return self._run_thunk(method, returns_int, call)

    def _run_thunk(self, method: str, returns_int: bool, call: Callable[[], Any]) -> Any:
        def guarded() -> Any:
            try:
                result = call()
            except BaseException as exc:
                self.errors.append((method, exc))
                raise
            if returns_int and not isinstance(result, int):
                self.bad_returns.append(method)
            return result

        # ctypes reports exceptions and unconvertible results via sys.unraisablehook
        # ("Exception ignored on calling ctypes callback function") and returns 0.
        thunk = (_INT_THUNK if returns_int else _VOID_THUNK)(guarded)
        return thunk()

    # --- the native thread ---------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="fake-agora-native", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            with self._lock:
                while not self._stopping and not self._events:
                    if not self._has_audio_work():
                        # Nothing to pace: sleep until something is queued.
                        self._cv.wait()
                        next_tick = time.monotonic()
                        continue
                    if time.monotonic() >= next_tick:
                        break
                    self._cv.wait(next_tick - time.monotonic())
                if self._stopping:
                    return
                event = self._events.popleft() if self._events else None
                self._busy = True
            try:
                if event is not None:
                    event()
                else:
                    self._tick()
                    next_tick += self.tick_s
                    # After a long stall, catch up at most 100 ms, then resync.
                    next_tick = max(next_tick, time.monotonic() - 10 * self.tick_s)
            finally:
                with self._lock:
                    self._busy = False
                    self._cv.notify_all()

    def _has_audio_work(self) -> bool:
        users = [u for ch in self.channels.values() for u in ch.users.values()]
        if any(u.speech for u in users) or any(c.pending for c in self.connections):
            return True
        return self.idle_silence and any(u.host and not u.muted for u in users)

    def _tick(self) -> None:
        deliveries: list[tuple[NativeConnection, RemoteUser, bytes]] = []
        with self._lock:
            for channel in self.channels.values():
                for user in channel.users.values():
                    frame = self._next_frame(user)
                    if frame is None:
                        continue
                    for conn in self._connected_in(channel.name):
                        if (
                            user.host
                            and not user.muted
                            and user.uid in conn.announced
                            and conn.is_subscribed(user.uid)
                            and conn.frame_observer is not None
                        ):
                            deliveries.append((conn, user, frame))
            for conn in self.connections:
                self._play_out(conn)
        for conn, user, frame in deliveries:
            self._deliver_frame(conn, user.uid, frame)

    def _next_frame(self, user: RemoteUser) -> bytes | None:
        if user.muted or not user.host:
            user.speech.clear()  # a muted or audience user is not heard
            return None
        if not user.speech:
            return bytes(320) if self.idle_silence else None
        frame = bytes(user.speech[:320]).ljust(320, b"\0")
        del user.speech[:320]
        user.frames_spoken += 1
        return frame

    def _play_out(self, conn: NativeConnection) -> None:
        if not conn.pending or not conn.is_published or conn.state != CONNECTED:
            return
        rate, channels, data = conn.pending[0]
        size = rate // 100 * 2 * channels
        chunk = bytes(data[:size])
        del data[:size]
        if not data:
            conn.pending.popleft()
        self.published.append(
            PublishedFrame(time.monotonic(), chunk, rate, channels, conn.local_uid)
        )

    def _deliver_frame(self, conn: NativeConnection, uid: str, pcm: bytes) -> None:
        base = self._base()
        if self.reuse_frame_buffers:
            buffer = conn.buffers.setdefault(uid, bytearray(len(pcm)))
            buffer[:] = pcm
        else:
            buffer = bytearray(pcm)
        conn.rtp[uid] += 160
        level = 0
        if self.compute_levels:
            samples = array.array("h", pcm)
            rms = math.sqrt(sum(s * s for s in samples) / len(samples))
            # rms on a 0..127 scale (dB + 127).
            level = max(0, min(127, round(20 * math.log10(rms / 32768) + 127))) if rms else 0
        frame = base.AudioFrame(
            type=0,
            samples_per_channel=160,
            bytes_per_sample=2,
            channels=1,
            samples_per_sec=16000,
            buffer=buffer,
            render_time_ms=int(time.time() * 1000),
            avsync_type=0,
            presentation_ms=0,
            audio_track_number=0,
            rtp_timestamp=conn.rtp[uid],
            far_field_flag=0,
            rms=level,
            voice_prob=int(level > 70),
            music_prob=0,
            pitch=0,
        )
        observer, local_user = conn.frame_observer, conn.sdk.local_user
        if observer is None:
            return
        self.frames_delivered += 1
        method = "on_playback_audio_frame_before_mixing"
        if conn.vad_broken:
            # enable_vad without a real config breaks inside the wrapper.
            def broken() -> Any:
                raise AttributeError("'int' object has no attribute 'start_recognize_count'")

            self._run_thunk(method, True, broken)
            return
        self._invoke(conn, observer, method, True, local_user, conn.channel, uid, frame, -1, None)


world = FakeAgoraWorld()
