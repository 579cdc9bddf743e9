"""The SDK-thread side of one Agora connection: participants, mutes, and hops to the loop.

Participant events go straight to the :class:`~recorder.transport.bridge.AudioBridge`
so they stay ordered with the audio around them (a mute flushes the chunk it
ends). Connection, token and role events hop to the event loop, where all
connection state lives: never call the SDK from a callback (docs/providers.md,
"Agora: service and connections").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from recorder.transport.agora.codes import offline_reason
from recorder.transport.base import ParticipantJoined, ParticipantLeft, ParticipantMuted
from recorder.transport.bridge import AudioBridge

__all__ = ["LoopSide", "NativeHandler", "Participants"]

log = logging.getLogger(__name__)

# Remote audio states and reasons, USER_MEDIA_INFO (docs/providers.md, "Agora: events and codes").
_AUDIO_STOPPED, _AUDIO_STARTING, _AUDIO_DECODING = 0, 1, 2
_REMOTE_MUTED, _REMOTE_UNMUTED = 5, 6
_USER_MEDIA_MUTE_AUDIO = 0


class LoopSide(Protocol):
    """The transport's loop-side handlers; the handler only schedules them via ``hop``."""

    def hop(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop, from any thread; never raises."""

    def on_connection(self, generation: int, what: str, reason: int | None, at_ms: float) -> None:
        """A connection state callback arrived."""

    def on_token_will_expire(self, generation: int) -> None:
        """The token expires in about 30 s."""

    def on_token_did_expire(self, generation: int) -> None:
        """The token has expired."""

    def on_role_changed(self, generation: int, new_role: int, at_ms: float) -> None:
        """The bot's role changed."""


class Participants:
    """Who is in the channel and who is muted; shared by SDK threads and the loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._present: set[int] = set()
        self._muted: set[int] = set()

    def join(self, uid: int) -> None:
        """``uid`` is present and unmuted."""
        with self._lock:
            self._present.add(uid)
            self._muted.discard(uid)

    def leave(self, uid: int) -> bool:
        """Forget ``uid``; False if they were not present."""
        with self._lock:
            if uid not in self._present:
                return False
            self._present.discard(uid)
            self._muted.discard(uid)
            return True

    def set_muted(self, uid: int, is_muted: bool) -> bool:
        """Record a mute or unmute; False if nothing changed or they are not present."""
        with self._lock:
            if uid not in self._present or (uid in self._muted) == is_muted:
                return False
            if is_muted:
                self._muted.add(uid)
            else:
                self._muted.discard(uid)
            return True

    def present(self) -> list[int]:
        """The uids present now."""
        with self._lock:
            return sorted(self._present)


class NativeHandler:
    """Implements :class:`~recorder.transport.agora.observers.ObserverHandler` for one connection.

    Args:
        loop_side: the transport.
        generation: which connection of the transport this is (late callbacks of an
            older one are ignored on the loop).
        bridge: where participant events go.
        participants: the transport's participant registry.
        bot_uid: the bot's own uid (never reported as a participant).
    """

    def __init__(
        self,
        loop_side: LoopSide,
        generation: int,
        bridge: AudioBridge,
        participants: Participants,
        bot_uid: int,
    ) -> None:
        self._loop_side = loop_side
        self._generation = generation
        self._bridge = bridge
        self._participants = participants
        self._bot_uid = bot_uid
        self.state = 0  # the last CONNECTION_STATE_TYPE seen
        self.callback_errors = 0
        self.publish_failures = 0

    def _at(self) -> float:
        return self._bridge.clock_ms()

    def connection_changed(self, what: str, state: int, reason: int | None) -> None:
        """Remember the state and hand the change to the loop."""
        self.state = state
        side = self._loop_side
        side.hop(side.on_connection, self._generation, what, reason, self._at())

    def user_joined(self, uid: str) -> None:
        """A host appeared: a ParticipantJoined (never for the bot itself)."""
        number = int(uid)
        if number == self._bot_uid:
            return
        self._participants.join(number)
        self._bridge.push_event(ParticipantJoined(number, self._at()))

    def user_left(self, uid: str, reason: int) -> None:
        """A host left: a ParticipantLeft with the reason (quit, dropped, became audience)."""
        number = int(uid)
        if self._participants.leave(number):
            self._bridge.push_event(ParticipantLeft(number, self._at(), offline_reason(reason)))

    def _set_muted(self, uid: str, is_muted: bool) -> None:
        number = int(uid)
        if self._participants.set_muted(number, is_muted):
            self._bridge.push_event(ParticipantMuted(number, self._at(), is_muted))

    def remote_audio_state(self, uid: str, state: int, reason: int) -> None:
        """A remote track state change; mutes and unmutes become ParticipantMuted."""
        # Mute is (0 stopped, 5 remote muted); unmute (1|2, 6 remote unmuted)
        # (docs/providers.md, "Agora: events and codes").
        if state == _AUDIO_STOPPED and reason == _REMOTE_MUTED:
            self._set_muted(uid, True)
        elif state in (_AUDIO_STARTING, _AUDIO_DECODING) and reason == _REMOTE_UNMUTED:
            self._set_muted(uid, False)

    def user_info(self, uid: str, msg: int, val: int) -> None:
        """A remote media-info change; MUTE_AUDIO becomes ParticipantMuted."""
        if msg == _USER_MEDIA_MUTE_AUDIO:
            self._set_muted(uid, bool(val))

    def token_will_expire(self) -> None:
        """Hand the coming expiry to the loop (it renews)."""
        self._loop_side.hop(self._loop_side.on_token_will_expire, self._generation)

    def token_did_expire(self) -> None:
        """Hand the expiry to the loop (it recovers)."""
        self._loop_side.hop(self._loop_side.on_token_did_expire, self._generation)

    def role_changed(self, old_role: int, new_role: int) -> None:
        """Hand the bot's new role to the loop."""
        side = self._loop_side
        side.hop(side.on_role_changed, self._generation, int(new_role), self._at())

    def role_change_failed(self, reason: int, current_role: int) -> None:
        """Log a refused role change (co-host authentication)."""
        log.warning("! agora refused the bot's role change (reason %s)", reason)

    def publish_state(self, old_state: int, new_state: int) -> None:
        """Log the bot's publication state."""
        log.debug("= agora publish state %s -> %s", old_state, new_state)

    def publish_failed(self, error: int) -> None:
        """Count and log a refused audio track."""
        self.publish_failures += 1
        log.warning("! the channel refused the bot's audio track (error %s)", error)

    def sdk_error(self, code: int, message: str) -> None:
        """Log an SDK error (never a token: the SDK's message carries none)."""
        log.warning("! agora sdk error %s: %s", code, message)

    def callback_failed(self, method: str, error: Exception) -> None:
        """Count a failed callback and log the first few with their traceback."""
        self.callback_errors += 1
        if self.callback_errors in (1, 10, 100, 1000):
            log.error(
                "! agora callback %s failed (%d so far)",
                method,
                self.callback_errors,
                exc_info=error,
            )
