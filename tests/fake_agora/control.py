"""One test-control API for the two Agora backends: the Python fake and the native stand-in.

Tests of the Agora transport and pipeline take the ``world`` fixture
(``tests/agora_standin/plugin.py``), parametrised over both backends, and
drive the simulated channel only through :class:`AgoraControl`: join, leave,
mute, speak, fail, token events, published audio and counters. The fake
implements it here (:class:`FakeControl`, over ``agora.fake_control.world``);
the native stand-in in ``tests/agora_standin/control.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

__all__ = ["AgoraControl", "ChannelControl", "ConnectionView", "FakeControl"]


class ConnectionView(Protocol):
    """One connection as the simulated native side sees it (read live on each access)."""

    state: int  # CONNECTION_STATE_TYPE: 1 disconnected ... 5 failed
    channel: str
    local_uid: str
    token: str
    role: int  # 1 broadcaster, 2 audience
    auto_subscribe: bool
    frame_format: tuple[int, int]  # (channels, rate) of before-mixing frames
    has_track: bool
    ai_server_scenario: bool
    released: bool
    sid: str


class ChannelControl(Protocol):
    """Participants of one channel."""

    def add_user(self, uid: str | int, *, host: bool = True, muted: bool = False) -> None:
        """A participant joins (hosts are announced to connected bots)."""

    def remove_user(self, uid: str | int, reason: int = 0) -> None:
        """A participant leaves (0 quit, 1 dropped)."""

    def set_host(self, uid: str | int, host: bool) -> None:
        """Switch between host and (invisible) audience."""

    def mute(self, uid: str | int) -> None:
        """Remote mute: frames stop."""

    def unmute(self, uid: str | int) -> None:
        """Remote unmute."""

    def speak(self, uid: str | int, pcm: bytes | bytearray | memoryview) -> None:
        """Queue PCM16 16 kHz mono; the native clock slices it into 10 ms frames."""

    def frames_spoken(self, uid: str | int) -> int:
        """Frames of ``uid``'s speech said so far (heard or not)."""


class AgoraControl(Protocol):
    """The simulated Agora cloud and native library, as tests drive and observe it.

    Knobs: ``tick_s`` (wall seconds per 10 ms frame), ``idle_silence`` (silent
    frames while an unmuted host says nothing), ``join_failure`` (a reason every
    join fails with), ``answer_joins`` (False: Agora never answers a join),
    ``valid_app_ids``, ``fail_connection_create``, ``token_validator``
    (``(token, channel, uid) -> reason | None``), ``renew_effective`` (False:
    ``renew_token`` is accepted and does nothing).
    """

    name: str
    tick_s: float
    idle_silence: bool
    join_failure: int | None
    answer_joins: bool
    valid_app_ids: set[str] | None
    fail_connection_create: bool
    token_validator: Callable[[str, str, str], int | None] | None
    renew_effective: bool

    def channel(self, name: str) -> ChannelControl:
        """The channel called ``name``."""

    def interrupt(self, reason: int = 2) -> None:
        """Network trouble: reconnecting; audio stops."""

    def report_lost(self) -> None:
        """``on_connection_lost`` for reconnecting connections."""

    def restore(self) -> None:
        """The network is back."""

    def fail(self, reason: int) -> None:
        """A fatal failure (e.g. 3 banned, 19 same uid)."""

    def token_will_expire(self) -> None:
        """``on_token_privilege_will_expire``."""

    def token_expires(self) -> None:
        """The token runs out (unless renewed since the warning)."""

    def connections(self) -> list[ConnectionView]:
        """Every connection made, released or not, in order."""

    def connection(self) -> ConnectionView:
        """The one live connection."""

    @property
    def counts(self) -> Mapping[str, int]:
        """Callbacks delivered to the bot's observers, by method name."""

    @property
    def errors(self) -> list[Any]:
        """Exceptions the bot's observers raised into the SDK (ctypes swallowed them)."""

    @property
    def bad_returns(self) -> list[str]:
        """Callbacks whose return value ctypes could not convert."""

    @property
    def renewed_tokens(self) -> list[str]:
        """Tokens passed to ``renew_token``, in order."""

    @property
    def unanswered_joins(self) -> int:
        """Joins left unanswered because ``answer_joins`` is False."""

    @property
    def rejected_bytes(self) -> int:
        """Published PCM that reached nobody."""

    @property
    def frames_delivered(self) -> int:
        """Before-mixing frames handed to the bot."""

    def connected_at(self) -> float | None:
        """``time.monotonic()`` of the latest successful join, None before one."""

    def published_pcm(self) -> bytes:
        """Everything the bot published, in playout order."""

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` holds (re-checked after every event and tick)."""

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event, speech and published PCM has been delivered."""


class _FakeChannel:
    def __init__(self, channel: Any) -> None:
        self._channel = channel

    def add_user(self, uid: str | int, *, host: bool = True, muted: bool = False) -> None:
        self._channel.add_user(uid, host=host, muted=muted)

    def remove_user(self, uid: str | int, reason: int = 0) -> None:
        self._channel.remove_user(uid, reason=reason)

    def set_host(self, uid: str | int, host: bool) -> None:
        self._channel.set_host(uid, host)

    def mute(self, uid: str | int) -> None:
        self._channel.mute(uid)

    def unmute(self, uid: str | int) -> None:
        self._channel.unmute(uid)

    def speak(self, uid: str | int, pcm: bytes | bytearray | memoryview) -> None:
        self._channel.speak(uid, pcm)

    def frames_spoken(self, uid: str | int) -> int:
        return int(self._channel.users[str(uid)].frames_spoken)


class _FakeConnection:
    def __init__(self, native: Any) -> None:
        self._native = native

    def __getattr__(self, name: str) -> Any:
        native = self._native
        if name == "sid":
            return f"fake-sid-{native.conn_id}"
        if name == "ai_server_scenario":
            return bool(native.ai_server_scenario)
        return getattr(native, name)


class FakeControl:
    """:class:`AgoraControl` over the Python fake's world."""

    name = "fake"

    def __init__(self, world: Any) -> None:
        self.world = world
        self.answer_joins = True
        self.renew_effective = True
        self._unanswered = 0
        self._connected_at: float | None = None
        join, renew = world._join, world.renew_token

        def join_or_not(conn: Any, reason: int) -> None:
            if not self.answer_joins:
                self._unanswered += 1
                world._cv.notify_all()
                return
            self._connected_at = time.monotonic()
            join(conn, reason)

        def renew_or_not(conn: Any, token: str) -> int:
            if self.renew_effective:
                return int(renew(conn, token))
            with world._lock:
                world.renewed_tokens.append(token)
                world._cv.notify_all()
            return 0

        world._join = join_or_not
        world.renew_token = renew_or_not

    # -- knobs (forwarded to the world) -------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name in _FORWARDED:
            return getattr(self.world, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FORWARDED:
            setattr(self.world, name, value)
        else:
            super().__setattr__(name, value)

    def channel(self, name: str) -> _FakeChannel:
        return _FakeChannel(self.world.channel(name))

    def interrupt(self, reason: int = 2) -> None:
        self.world.interrupt(reason)

    def report_lost(self) -> None:
        self.world.report_lost()

    def restore(self) -> None:
        self.world.restore()

    def fail(self, reason: int) -> None:
        self.world.fail(reason)

    def token_will_expire(self) -> None:
        self.world.token_will_expire()

    def token_expires(self) -> None:
        self.world.token_expires()

    def connections(self) -> list[_FakeConnection]:
        return [_FakeConnection(c) for c in self.world.connections]

    def connection(self) -> _FakeConnection:
        return _FakeConnection(self.world.connection())

    @property
    def counts(self) -> Mapping[str, int]:
        return dict(self.world.counts)

    @property
    def errors(self) -> list[Any]:
        return list(self.world.errors)

    @property
    def bad_returns(self) -> list[str]:
        return list(self.world.bad_returns)

    @property
    def renewed_tokens(self) -> list[str]:
        return list(self.world.renewed_tokens)

    @property
    def unanswered_joins(self) -> int:
        return self._unanswered

    @property
    def rejected_bytes(self) -> int:
        return sum(r.nbytes for r in self.world.rejected)

    @property
    def frames_delivered(self) -> int:
        return int(self.world.frames_delivered)

    def connected_at(self) -> float | None:
        return self._connected_at

    def published_pcm(self) -> bytes:
        return bytes(self.world.published_pcm())

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        return bool(self.world.wait_until(predicate, timeout))

    def wait_idle(self, timeout: float = 5.0) -> bool:
        return bool(self.world.wait_idle(timeout))

    def close(self) -> None:
        """Nothing to check beyond what tests assert (the fake has no strict mode)."""


_FORWARDED = {
    "tick_s",
    "idle_silence",
    "join_failure",
    "valid_app_ids",
    "fail_connection_create",
    "token_validator",
    "sdk_prints",
    "compute_levels",
}
