"""The native stand-in's test-control API (the ``standin_*`` exports), as an ``AgoraControl``.

The control opens the stand-in with ``ctypes.CDLL`` at the very path the
wrapper loads it from, so both share one copy of its globals. Exceptions the
wrapper's ctypes thunks swallow are collected through the audit event that
``sys.unraisablehook`` raises, so ``errors`` and ``bad_returns`` mean what they
mean on the fake.
"""

from __future__ import annotations

import ctypes
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["NativeControl", "StandinViolation", "audit_events"]

_TOKEN_VALIDATOR = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p)


class StandinViolation(AssertionError):
    """The stand-in saw a call it does not model, or a bad or released handle."""


class _Audit:
    """One process-wide audit hook (hooks cannot be removed), recording while active."""

    def __init__(self) -> None:
        self.installed = False
        self.events: list[tuple[str, tuple[Any, ...]]] | None = None

    def start(self) -> list[tuple[str, tuple[Any, ...]]]:
        if not self.installed:
            sys.addaudithook(self._hook)
            self.installed = True
        self.events = []
        return self.events

    def stop(self) -> None:
        self.events = None

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        events = self.events
        if events is not None and event in _AUDITED:
            events.append((event, args))


# Unraisable exceptions (ctypes callbacks), and what the wrapper's import does on a
# mismatch: os.system("rm -rf ...") and urllib's download.
_AUDITED = {"sys.unraisablehook", "os.system", "urllib.Request"}
audit_events = _Audit()


class _Channel:
    def __init__(self, control: NativeControl, name: str) -> None:
        self._control = control
        self._name = name.encode()

    def _ok(self, result: int, what: str, uid: str | int) -> None:
        if result != 0:
            raise KeyError(f"stand-in: {what} {uid!r} in channel {self._name.decode()!r} failed")

    def add_user(self, uid: str | int, *, host: bool = True, muted: bool = False) -> None:
        lib = self._control.lib
        self._ok(lib.standin_user_add(self._name, str(uid).encode(), host, muted), "add", uid)

    def remove_user(self, uid: str | int, reason: int = 0) -> None:
        lib = self._control.lib
        self._ok(lib.standin_user_remove(self._name, str(uid).encode(), reason), "remove", uid)

    def set_host(self, uid: str | int, host: bool) -> None:
        lib = self._control.lib
        self._ok(lib.standin_user_set_host(self._name, str(uid).encode(), host), "set_host", uid)

    def mute(self, uid: str | int) -> None:
        self._ok(self._control.lib.standin_user_mute(self._name, str(uid).encode(), 1), "mute", uid)

    def unmute(self, uid: str | int) -> None:
        lib = self._control.lib
        self._ok(lib.standin_user_mute(self._name, str(uid).encode(), 0), "unmute", uid)

    def speak(self, uid: str | int, pcm: bytes | bytearray | memoryview) -> None:
        data = bytes(pcm)
        if len(data) % 2:
            raise ValueError("PCM16 needs an even number of bytes")
        lib = self._control.lib
        self._ok(
            lib.standin_user_speak(self._name, str(uid).encode(), data, len(data)), "speak", uid
        )

    def frames_spoken(self, uid: str | int) -> int:
        return int(self._control.lib.standin_user_frames_spoken(self._name, str(uid).encode()))


class _Connection:
    """A live view of one connection in the stand-in's stats."""

    def __init__(self, control: NativeControl, index: int) -> None:
        self._control = control
        self._index = index

    def _get(self) -> dict[str, Any]:
        return dict(self._control.stats()["connections"][self._index])

    def __getattr__(self, name: str) -> Any:
        data = self._get()
        if name == "frame_format":
            return (data["frame_channels"], data["frame_rate"])
        if name == "ai_server_scenario":
            return data["scenario"] == 9  # AUDIO_SCENARIO_AI_SERVER
        if name in ("auto_subscribe", "has_track", "released", "is_published"):
            return bool(data[name])
        if name in data:
            return data[name]
        raise AttributeError(name)


class NativeControl:
    """:class:`fake_agora.control.AgoraControl` over the native stand-in."""

    name = "native"

    def __init__(self, library_path: str) -> None:
        lib = ctypes.CDLL(library_path)
        c_str, c_int, c_long = ctypes.c_char_p, ctypes.c_int, ctypes.c_long
        lib.standin_set_int.argtypes = [c_str, c_long]
        lib.standin_set_valid_app_ids.argtypes = [c_str]
        lib.standin_set_token_validator.argtypes = [_TOKEN_VALIDATOR]
        lib.standin_user_add.argtypes = [c_str, c_str, c_int, c_int]
        lib.standin_user_remove.argtypes = [c_str, c_str, c_int]
        lib.standin_user_set_host.argtypes = [c_str, c_str, c_int]
        lib.standin_user_mute.argtypes = [c_str, c_str, c_int]
        lib.standin_user_speak.argtypes = [c_str, c_str, ctypes.c_void_p, ctypes.c_size_t]
        lib.standin_user_frames_spoken.argtypes = [c_str, c_str]
        lib.standin_user_frames_spoken.restype = c_long
        lib.standin_network.argtypes = [c_str, c_int]
        lib.standin_wait_idle.argtypes = [c_long]
        lib.standin_wait_change.argtypes = [ctypes.c_ulong, c_long]
        lib.standin_wait_change.restype = ctypes.c_ulong
        lib.standin_published.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.standin_published.restype = ctypes.c_size_t
        lib.standin_stats.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.standin_stats.restype = ctypes.c_size_t
        lib.standin_lateness.argtypes = [ctypes.POINTER(ctypes.c_int64), c_long]
        lib.standin_lateness.restype = c_long
        self.lib = lib
        self._tick_s = 0.010
        self._idle_silence = False
        self._join_failure: int | None = None
        self._answer_joins = True
        self._valid_app_ids: set[str] | None = None
        self._fail_create = False
        self._renew_effective = True
        self._validator: Callable[[str, str, str], int | None] | None = None
        self._validator_thunk: Any = None
        self.audit = audit_events.start()
        lib.standin_reset()

    # -- knobs --------------------------------------------------------------------------

    def _set(self, key: str, value: int) -> None:
        self.lib.standin_set_int(key.encode(), value)

    @property
    def tick_s(self) -> float:
        return self._tick_s

    @tick_s.setter
    def tick_s(self, value: float) -> None:
        self._tick_s = value
        self._set("tick_us", round(value * 1_000_000))

    @property
    def idle_silence(self) -> bool:
        return self._idle_silence

    @idle_silence.setter
    def idle_silence(self, value: bool) -> None:
        self._idle_silence = value
        self._set("idle_silence", int(value))

    @property
    def join_failure(self) -> int | None:
        return self._join_failure

    @join_failure.setter
    def join_failure(self, value: int | None) -> None:
        self._join_failure = value
        self._set("join_failure", value or 0)

    @property
    def answer_joins(self) -> bool:
        return self._answer_joins

    @answer_joins.setter
    def answer_joins(self, value: bool) -> None:
        self._answer_joins = value
        self._set("answer_joins", int(value))

    @property
    def valid_app_ids(self) -> set[str] | None:
        return self._valid_app_ids

    @valid_app_ids.setter
    def valid_app_ids(self, value: set[str] | None) -> None:
        self._valid_app_ids = value
        self.lib.standin_set_valid_app_ids(",".join(sorted(value or ())).encode())

    @property
    def fail_connection_create(self) -> bool:
        return self._fail_create

    @fail_connection_create.setter
    def fail_connection_create(self, value: bool) -> None:
        self._fail_create = value
        self._set("fail_connection_create", int(value))

    @property
    def renew_effective(self) -> bool:
        return self._renew_effective

    @renew_effective.setter
    def renew_effective(self, value: bool) -> None:
        self._renew_effective = value
        self._set("renew_effective", int(value))

    @property
    def token_validator(self) -> Callable[[str, str, str], int | None] | None:
        return self._validator

    @token_validator.setter
    def token_validator(self, value: Callable[[str, str, str], int | None] | None) -> None:
        self._validator = value
        if value is None:
            self._validator_thunk = None
            self.lib.standin_set_token_validator(_TOKEN_VALIDATOR())
            return

        def validate(token: bytes, channel: bytes, uid: bytes) -> int:
            reason = value(token.decode(), channel.decode(), uid.decode())
            return int(reason or 0)

        self._validator_thunk = _TOKEN_VALIDATOR(validate)  # kept alive while set
        self.lib.standin_set_token_validator(self._validator_thunk)

    # -- the channel -------------------------------------------------------------------

    def channel(self, name: str) -> _Channel:
        return _Channel(self, name)

    def _network(self, what: str, reason: int = 0) -> None:
        self.lib.standin_network(what.encode(), reason)

    def interrupt(self, reason: int = 2) -> None:
        self._network("interrupt", reason)

    def report_lost(self) -> None:
        self._network("lost")

    def restore(self) -> None:
        self._network("restore")

    def fail(self, reason: int) -> None:
        self._network("fail", reason)

    def token_will_expire(self) -> None:
        self._network("token_will_expire")

    def token_expires(self) -> None:
        self._network("token_expires")

    def sdk_error(self, code: int) -> None:
        self._network("error", code)

    # -- observations ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        size = 16384
        while True:  # the stats may grow between two calls: retry until they fit
            buffer = ctypes.create_string_buffer(size)
            needed = self.lib.standin_stats(buffer, size)
            if needed < size:
                return dict(json.loads(buffer.value.decode()))
            size = needed + 16384

    def connections(self) -> list[_Connection]:
        return [_Connection(self, i) for i in range(len(self.stats()["connections"]))]

    def connection(self) -> _Connection:
        live = [i for i, c in enumerate(self.stats()["connections"]) if not c["released"]]
        if len(live) != 1:
            raise LookupError(f"expected one live connection, found {len(live)}")
        return _Connection(self, live[0])

    @property
    def counts(self) -> Mapping[str, int]:
        return dict(self.stats()["callbacks"])

    def _unraisable(self, words: str) -> list[Any]:
        found = []
        for event, args in list(self.audit):
            if event == "sys.unraisablehook" and words in str(args[1].err_msg or ""):
                found.append(args[1].exc_value)
        return found

    @property
    def errors(self) -> list[Any]:
        return self._unraisable("on calling ctypes callback")

    @property
    def bad_returns(self) -> list[str]:
        return [str(e) for e in self._unraisable("on converting result of ctypes callback")]

    @property
    def renewed_tokens(self) -> list[str]:
        return list(self.stats()["renewed_tokens"])

    @property
    def unanswered_joins(self) -> int:
        return int(self.stats()["unanswered_joins"])

    @property
    def rejected_bytes(self) -> int:
        return int(self.stats()["rejected_bytes"])

    @property
    def frames_delivered(self) -> int:
        return int(self.stats()["frames_delivered"])

    def connected_at(self) -> float | None:
        at = int(self.stats()["connected_ns"])
        return at / 1e9 if at else None

    def published_pcm(self) -> bytes:
        size = self.lib.standin_published(None, 0)
        while True:
            buffer = ctypes.create_string_buffer(size)
            got = self.lib.standin_published(buffer, size)
            if got <= size:
                return buffer.raw[:got]
            size = got

    def lateness_s(self) -> list[float]:
        """Each tick's lateness against the absolute clock, seconds."""
        count = self.lib.standin_lateness(None, 0)
        values = (ctypes.c_int64 * max(count, 1))()
        count = min(count, self.lib.standin_lateness(values, count))
        return [values[i] / 1e9 for i in range(count)]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        seq = int(self.stats()["seq"])
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            seq = self.lib.standin_wait_change(seq, max(1, int(remaining * 1000)))
        return True

    def wait_idle(self, timeout: float = 5.0) -> bool:
        return bool(self.lib.standin_wait_idle(int(timeout * 1000)))

    # -- the end of a test ----------------------------------------------------------------

    def problems(self) -> list[str]:
        """Strict mode: unmodelled calls and bad or released handles, one line each."""
        stats = self.stats()
        lines = [f"unmodelled call {name} x{n}" for name, n in stats["unmodelled"].items()]
        lines += [f"{name} x{n}" for name, n in stats["violations"].items()]
        return lines

    def clear_problems(self) -> None:
        """Forget the unmodelled calls and handle violations seen so far (a test provoked them)."""
        self.lib.standin_clear_problems()

    def close(self) -> None:
        """Stop every native thread and forget everything (the fixture calls this)."""
        self.token_validator = None
        self.lib.standin_reset()
        audit_events.stop()
