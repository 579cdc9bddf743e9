"""Fault injection for the emulators: what goes wrong, when, and on which connection.

A :class:`FaultPlan` maps connection indexes (0 for the first upgrade request
the emulator sees, rejected ones included) to :class:`Fault` lists, with a
default list for every other connection. Tests build one per scenario.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Fault", "FaultKind", "FaultPlan"]


class FaultKind(enum.Enum):
    """What the server does when a fault fires."""

    CLOSE = "close"  # Error frame (unless legacy) + close frame with a code
    DROP = "drop"  # abort the TCP connection, no close frame (client sees 1006)
    STALL = "stall"  # stop reading and answering until the client goes away
    MALFORMED_JSON = "malformed_json"  # one text frame that is not JSON, then carry on
    DELAY_TERMINATION = "delay_termination"  # hold Termination back for delay_s
    REJECT_HTTP = "reject_http"  # answer the upgrade with an HTTP error status


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault and its trigger.

    Without ``at_audio_s``, ``after_chunks`` or ``on_terminate`` a fault fires
    as soon as the connection is upgraded, before ``Begin`` (a real server may close
    right after the upgrade, e.g. 1008, and a client must not hang waiting for ``Begin``).

    Attributes:
        kind: what happens.
        code: the close code for CLOSE, or the HTTP status for REJECT_HTTP.
        reason: the close reason; None means the documented one for ``code``.
        at_audio_s: fire once this much audio has been received on the socket.
        after_chunks: fire once this many audio frames have been received.
        on_terminate: fire when the client sends ``Terminate``.
        delay_s: how long DELAY_TERMINATION holds ``Termination`` back.
    """

    kind: FaultKind
    code: int = 3005
    reason: str | None = None
    at_audio_s: float | None = None
    after_chunks: int | None = None
    on_terminate: bool = False
    delay_s: float = 0.0

    @classmethod
    def close(
        cls,
        code: int,
        reason: str | None = None,
        *,
        at_audio_s: float | None = None,
        after_chunks: int | None = None,
    ) -> Fault:
        """Close with ``code`` (e.g. 3005, 3009, 1011) at the trigger, or before ``Begin``."""
        return cls(FaultKind.CLOSE, code, reason, at_audio_s=at_audio_s, after_chunks=after_chunks)

    @classmethod
    def drop(cls, *, at_audio_s: float | None = None, after_chunks: int | None = None) -> Fault:
        """Drop the TCP connection without a close frame."""
        return cls(FaultKind.DROP, at_audio_s=at_audio_s, after_chunks=after_chunks)

    @classmethod
    def stall(
        cls,
        *,
        at_audio_s: float | None = None,
        after_chunks: int | None = None,
        on_terminate: bool = False,
    ) -> Fault:
        """Stop reading and answering (``on_terminate``: never send ``Termination``).

        The socket stays open and websockets still answers pings, like a hung
        service behind a live front end; the client must time out on its own.
        """
        return cls(
            FaultKind.STALL,
            at_audio_s=at_audio_s,
            after_chunks=after_chunks,
            on_terminate=on_terminate,
        )

    @classmethod
    def malformed_json(
        cls, *, at_audio_s: float | None = None, after_chunks: int | None = None
    ) -> Fault:
        """Send one text frame that is not JSON, then carry on."""
        return cls(FaultKind.MALFORMED_JSON, at_audio_s=at_audio_s, after_chunks=after_chunks)

    @classmethod
    def delay_termination(cls, delay_s: float) -> Fault:
        """Hold ``Termination`` back for ``delay_s`` seconds after ``Terminate``."""
        return cls(FaultKind.DELAY_TERMINATION, on_terminate=True, delay_s=delay_s)

    @classmethod
    def reject_http(cls, status: int) -> Fault:
        """Answer the upgrade request with HTTP ``status`` (e.g. 401, 503)."""
        return cls(FaultKind.REJECT_HTTP, status)

    @property
    def is_immediate(self) -> bool:
        """Whether the fault fires on upgrade rather than on audio or ``Terminate``."""
        return self.at_audio_s is None and self.after_chunks is None and not self.on_terminate

    def is_due(self, audio_s: float, chunks: int) -> bool:
        """Whether an audio-triggered fault fires after this much audio and this many frames."""
        if self.at_audio_s is not None and audio_s >= self.at_audio_s:
            return True
        return self.after_chunks is not None and chunks >= self.after_chunks


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Faults per connection index, with a default for the rest.

    Attributes:
        default: faults for connections not named in ``per_connection``.
        per_connection: faults by connection index (0-based, in arrival order).
    """

    default: tuple[Fault, ...] = ()
    per_connection: Mapping[int, tuple[Fault, ...]] = field(default_factory=dict)

    def for_connection(self, index: int) -> tuple[Fault, ...]:
        """The faults that apply to the connection with this index."""
        return tuple(self.per_connection.get(index, self.default))
