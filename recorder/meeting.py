"""What a recording is told and tells: its settings, its observers, its report.

The small value types around :class:`~recorder.bot.MeetingRecorder`, kept apart
so the recap, the fleet and the CLI can use them without the recording core.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from recorder.config import DEFAULT_IDLE_CLOSE_S, DEFAULT_SESSIONS_PER_MINUTE
from recorder.pipeline import FinalTurn
from recorder.stt.hold import DEFAULT_HOLD_MS, ClosePolicy
from recorder.transport.base import Transport
from storage.records import Gap
from storage.store import TranscriptStore

__all__ = ["MeetingContext", "MeetingObserver", "MeetingReport", "RecorderSettings"]


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    """How a meeting is recorded.

    Attributes:
        bot_uid: the bot's own uid (stored with the meeting).
        idle_close_s: silence after which a participant's socket closes.
        sessions_per_minute: new STT sessions the account allows per minute.
        duration_s: stop after this long (None: until the transport ends or a signal).
        stop_timeout_s: bound on closing every socket at shutdown.
        names: display names by uid, stored with the participants.
        close_policy: close a socket at the end of a turn, or only after ``idle_close_s``.
        hold_s: with the turn-end policy, silence after the last speech before closing.
        empty_timeout_s: stop once the channel has had no remote participant this
            long, from the start or since the last one left (None: never).
        meeting_id: continue this meeting (a recording taken over from another
            process) instead of starting a new one.
    """

    bot_uid: int
    idle_close_s: float = DEFAULT_IDLE_CLOSE_S
    sessions_per_minute: float = DEFAULT_SESSIONS_PER_MINUTE
    duration_s: float | None = None
    stop_timeout_s: float = 10.0
    names: dict[int, str] = field(default_factory=dict)
    close_policy: ClosePolicy = ClosePolicy.TURN_END
    hold_s: float = DEFAULT_HOLD_MS / 1000
    empty_timeout_s: float | None = None
    meeting_id: int | None = None


@dataclass(frozen=True, slots=True)
class MeetingContext:
    """What an observer of a recording (the recap) may use.

    Attributes:
        meeting_id: the meeting being recorded.
        store: the transcript store (turns are there once ``flush_turns`` returns).
        transport: the channel, for publishing audio into it.
        flush_turns: waits until every final turn so far is committed.
        clock_ms: meeting time now, in ms.
    """

    meeting_id: int
    store: TranscriptStore
    transport: Transport
    flush_turns: Callable[[], Awaitable[None]]
    clock_ms: Callable[[], float]


class MeetingObserver(Protocol):
    """Optional companion of a recording (e.g. the spoken recap); every call is on the loop."""

    async def started(self, context: MeetingContext) -> None:
        """The meeting started recording."""

    def final_turn(self, turn: FinalTurn) -> None:
        """A final turn was placed on the timeline (not yet committed). Must not block."""

    def speech(self, uid: int) -> None:
        """``uid`` is speaking now (a speech chunk or the STT's speech start). Must not block."""

    async def before_end(self) -> None:
        """The recording is about to stop; the channel and streams are still up."""

    async def stopped(self) -> None:
        """The recording stopped; release everything."""


@dataclass(frozen=True, slots=True)
class MeetingReport:
    """What a finished recording tells the user."""

    meeting_id: int
    channel: str
    duration_s: float
    turns: int
    participants: int
    billed_seconds: float
    sessions: int
    dropped_speech_ms: float
    interrupted_before: int
    # Participants' audio the transport dropped before the bot saw it (the loop fell
    # behind for longer than the bridge's bound), ms in all.
    dropped_audio_ms: float = 0.0
    # How the meeting ended: completed (everything transcribed, live or repaired),
    # partial (gaps left), failed (nothing could be recorded), interrupted.
    status: str = "completed"
    gaps: tuple[Gap, ...] = ()
    # Participants' audio kept on disk, seconds in all (0 with --no-audio).
    audio_kept_s: float = 0.0
    audio_problem: str | None = None
    # What it cost: socket-open time (what streaming bills), the speech it carried
    # (each final turn from its first word to its last), and the session rate learned.
    billed_ms: float = 0.0
    speech_ms: float = 0.0
    sessions_per_minute: float = 0.0
    session_refusals: int = 0
    # Why it ended: "finished" (the transport ended), "stopped", "duration", "empty"
    # (no remote participant for the empty timeout) or "failed".
    end_reason: str = "finished"
