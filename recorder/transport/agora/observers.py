"""The three Agora observers, subclassed from the SDK's bases at run time.

The SDK calls every observer method positionally from native threads
(docs/providers.md, "Agora: audio frames" and
"Agora: service and connections"), so each method here takes exactly the
SDK's argument count, only forwards to an :class:`ObserverHandler`, never
calls the SDK, never blocks, and never lets an exception escape (ctypes would
print and swallow it). The audio-frame method is the hot path: a dict lookup
and one bridge call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from recorder.transport.agora.preflight import AgoraSdk

__all__ = ["ObserverHandler", "Observers", "make_observers"]

log = logging.getLogger(__name__)

# "1 for success" as a C bool; the base class default (docs/providers.md, "Agora: audio frames").
_FRAME_OK = 1
# A negative scenario stops the SDK re-creating and publishing our track
# (docs/providers.md, "Agora: audio frames").
_KEEP_SCENARIO = -1


class ObserverHandler(Protocol):
    """What the observers report to; every method runs on an SDK thread."""

    def connection_changed(self, what: str, state: int, reason: int | None) -> None:
        """``what`` is the callback name without ``on_`` (connected, reconnecting, ...)."""

    def user_joined(self, uid: str) -> None:
        """A host appeared in the channel."""

    def user_left(self, uid: str, reason: int) -> None:
        """A host left (0 quit, 1 dropped, 2 became audience)."""

    def token_will_expire(self) -> None:
        """The token expires in about 30 s."""

    def token_did_expire(self) -> None:
        """The token has expired."""

    def role_changed(self, old_role: int, new_role: int) -> None:
        """The bot's own role changed."""

    def role_change_failed(self, reason: int, current_role: int) -> None:
        """The bot's role change was refused."""

    def remote_audio_state(self, uid: str, state: int, reason: int) -> None:
        """A participant's audio track changed state (mute shows here).

        See docs/providers.md, "Agora: events and codes".
        """

    def user_info(self, uid: str, msg: int, val: int) -> None:
        """A participant's media info changed (msg 0 = audio muted)."""

    def publish_state(self, old_state: int, new_state: int) -> None:
        """The bot's audio publication changed state."""

    def publish_failed(self, error: int) -> None:
        """The bot's audio track could not be published."""

    def sdk_error(self, code: int, message: str) -> None:
        """``on_error`` from the SDK."""

    def callback_failed(self, method: str, error: Exception) -> None:
        """One of our callbacks raised (a bug): count and log, never re-raise."""


@dataclass(frozen=True, slots=True)
class Observers:
    """One connection's observer instances (kept alive as long as the connection)."""

    connection: Any
    local_user: Any
    audio_frame: Any


def make_observers(
    sdk: AgoraSdk,
    handler: ObserverHandler,
    push_frame: Callable[[int, bytearray], None],
) -> Observers:
    """Build the three observers for one connection.

    Args:
        sdk: the loaded SDK (its observer base classes are subclassed).
        handler: receives every event.
        push_frame: ``AudioBridge.push_frame``; called with the uid as an int and
            the frame's buffer for every 10 ms frame.
    """
    failed = handler.callback_failed

    def guard(method: str, call: Callable[..., None], *args: Any) -> None:
        try:
            call(*args)
        except Exception as exc:  # a native thread must never see our exceptions
            failed(method, exc)

    connection_base: type[Any] = sdk.connection_observer.IRTCConnectionObserver
    user_base: type[Any] = sdk.local_user_observer.IRTCLocalUserObserver
    frame_base: type[Any] = sdk.audio_frame_observer.IAudioFrameObserver

    def _state(info: Any) -> int:
        return int(getattr(info, "state", 0))

    # Argument counts follow the SDK exactly (docs/providers.md, "Agora: events and codes");
    # names are ours (the SDK passes positionally).
    class ConnectionObserver(connection_base):  # type: ignore[misc]
        def on_connecting(self, conn: Any, info: Any, reason: int) -> None:
            guard("on_connecting", handler.connection_changed, "connecting", _state(info), reason)

        def on_connected(self, conn: Any, info: Any, reason: int) -> None:
            guard("on_connected", handler.connection_changed, "connected", _state(info), reason)

        def on_disconnected(self, conn: Any, info: Any, reason: int) -> None:
            guard(
                "on_disconnected", handler.connection_changed, "disconnected", _state(info), reason
            )

        def on_reconnecting(self, conn: Any, info: Any, reason: int) -> None:
            guard(
                "on_reconnecting", handler.connection_changed, "reconnecting", _state(info), reason
            )

        def on_reconnected(self, conn: Any, info: Any, reason: int) -> None:
            guard("on_reconnected", handler.connection_changed, "reconnected", _state(info), reason)

        def on_connection_lost(self, conn: Any, info: Any) -> None:
            guard("on_connection_lost", handler.connection_changed, "lost", _state(info), None)

        def on_connection_failure(self, conn: Any, info: Any, reason: int) -> None:
            guard(
                "on_connection_failure", handler.connection_changed, "failure", _state(info), reason
            )

        def on_user_joined(self, conn: Any, user_id: str) -> None:
            guard("on_user_joined", handler.user_joined, user_id)

        def on_user_left(self, conn: Any, user_id: str, reason: int) -> None:
            guard("on_user_left", handler.user_left, user_id, reason)

        def on_token_privilege_will_expire(self, conn: Any, token: str) -> None:
            # The old token is not kept or logged.
            guard("on_token_privilege_will_expire", handler.token_will_expire)

        def on_token_privilege_did_expire(self, conn: Any) -> None:
            guard("on_token_privilege_did_expire", handler.token_did_expire)

        def on_change_role_success(self, conn: Any, old_role: int, new_role: int) -> None:
            guard("on_change_role_success", handler.role_changed, old_role, new_role)

        def on_change_role_failure(self, conn: Any, reason: int, current_role: int) -> None:
            guard("on_change_role_failure", handler.role_change_failed, reason, current_role)

        def on_error(self, conn: Any, error_code: int, error_msg: str) -> None:
            guard("on_error", handler.sdk_error, error_code, error_msg)

        def on_aiqos_capability_missing(self, conn: Any, recommend_audio_scenario: Any) -> int:
            # Must return an int; >= 0 would make the SDK publish by itself
            # (docs/providers.md, "Agora: audio frames").
            return _KEEP_SCENARIO

    class LocalUserObserver(user_base):  # type: ignore[misc]
        def on_user_audio_track_state_changed(
            self, local_user: Any, user_id: str, track: Any, state: int, reason: int, elapsed: int
        ) -> None:
            guard(
                "on_user_audio_track_state_changed",
                handler.remote_audio_state,
                user_id,
                state,
                reason,
            )

        def on_user_info_updated(self, local_user: Any, user_id: str, msg: int, val: int) -> None:
            guard("on_user_info_updated", handler.user_info, user_id, msg, val)

        def on_audio_publish_state_changed(
            self, local_user: Any, channel: str, old_state: int, new_state: int, elapsed: int
        ) -> None:
            guard("on_audio_publish_state_changed", handler.publish_state, old_state, new_state)

        def on_audio_track_publication_failure(
            self, local_user: Any, track: Any, error: int
        ) -> None:
            guard("on_audio_track_publication_failure", handler.publish_failed, error)

    uids: dict[str, int] = {}

    class AudioFrameObserver(frame_base):  # type: ignore[misc]
        def on_playback_audio_frame_before_mixing(
            self,
            local_user: Any,
            channel_id: str,
            uid: str,
            frame: Any,
            vad_result_state: int,
            vad_result_bytearray: Any,
        ) -> int:
            # Hot path: no SDK call, no lock held across the loop, no raise
            # (docs/providers.md, "Agora: service and connections").
            try:
                number = uids.get(uid)
                if number is None:
                    number = uids[uid] = int(uid)
                push_frame(number, frame.buffer)
            except Exception as exc:
                failed("on_playback_audio_frame_before_mixing", exc)
            return _FRAME_OK

    return Observers(ConnectionObserver(), LocalUserObserver(), AudioFrameObserver())
