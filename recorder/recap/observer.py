"""The spoken recap of a live meeting: when to speak, what to say, and when to stop (issue 8).

:class:`RecapObserver` rides along a :class:`~recorder.bot.MeetingRecorder`
as its observer. A participant saying the trigger phrase, a timer, or the
meeting's end starts a recap: the turns so far go to a fresh Voice Agent
session (:func:`~recorder.recap.reply.run_recap`; sessions bill on open time,
spec assemblyai-voice-agent.md §9, so none is held between recaps), its audio
is published into the channel as it arrives, and what it said is stored as a
note. Anyone speaking over it stops it at once (barge-in).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from recorder.agent.session import AgentTimeouts
from recorder.bot import MeetingContext
from recorder.errors import RecorderError
from recorder.pipeline import FinalTurn
from recorder.recap.ledger import TurnLedger
from recorder.recap.player import DEFAULT_MAX_BACKLOG_MS, DEFAULT_PREROLL_MS, RecapPlayer
from recorder.recap.reply import RecapRequest, run_recap

__all__ = [
    "DEFAULT_AGENT_URL",
    "DEFAULT_PHRASE",
    "RecapObserver",
    "RecapOutcome",
    "RecapSettings",
    "SpokenTrigger",
    "Trigger",
    "contains_phrase",
    "is_bare_request",
    "normalize_phrase",
    "parse_duration",
]

log = logging.getLogger("recorder.recap.observer")

#: The Voice Agent endpoint (spec §0: GA since Apr 2026).
DEFAULT_AGENT_URL = "wss://agents.assemblyai.com/v1/ws"
DEFAULT_PHRASE = "recorder, recap"
#: How often the timer looks at the meeting clock (wall seconds): the clock may
#: run faster than the wall (replay), so the timer polls rather than sleeps it out.
_TIMER_POLL_S = 0.05
#: After asking a recap to stop, how long it may take to end its session
#: (``session.end`` is bounded by AgentTimeouts.end_s + close_s, 5 + 2 s).
_STOP_GRACE_S = 10.0
# "Recorder, recap please", "okay recorder, recap now": a request, not meeting content.
_REQUEST_EXTRA_WORDS = 3
_NOT_WORD = re.compile(r"[\W_]+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|h|m|s)\s*)+")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse ``90s``, ``10m``, ``1h``, ``1h30m`` or a bare number of seconds.

    Args:
        text: the duration as the user wrote it.

    Returns:
        Seconds.

    Raises:
        ValueError: not a positive duration (the message says what is expected).
    """
    compact = text.strip().lower()
    total = 0.0
    if _NUMBER.fullmatch(compact):
        total = float(compact)
    elif _DURATION.fullmatch(compact):
        total = sum(float(n) * _UNIT_S[unit] for n, unit in _PART.findall(compact))
    if total > 0:
        return total
    raise ValueError(f"{text!r} is not a duration; use e.g. 90s, 10m, 1h or 1h30m")


def normalize_phrase(text: str) -> str:
    """Lowercase ``text`` and reduce punctuation and spacing to single spaces."""
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether ``text`` says ``phrase`` as whole words, ignoring case and punctuation.

    >>> contains_phrase("Okay. Recorder recap, please!", "recorder, recap")
    True
    """
    wanted = normalize_phrase(phrase)
    return bool(wanted) and f" {wanted} " in f" {normalize_phrase(text)} "


def is_bare_request(text: str, phrase: str) -> bool:
    """Whether ``text`` says the phrase and little else (nothing in it to recap).

    >>> is_bare_request("Recorder, recap please.", "recorder, recap")
    True
    """
    if not contains_phrase(text, phrase):
        return False
    rest = f" {normalize_phrase(text)} ".replace(f" {normalize_phrase(phrase)} ", " ", 1)
    return len(rest.split()) <= _REQUEST_EXTRA_WORDS


@dataclass(frozen=True, slots=True)
class SpokenTrigger:
    """The final turn in which a participant asked for a recap."""

    uid: int
    start_ms: int
    end_ms: int
    text: str

    def as_meta(self) -> dict[str, Any]:
        """The note's ``meta["trigger"]``."""
        return {
            "uid": self.uid,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "text": self.text,
        }


Trigger = SpokenTrigger | Literal["timer", "end"]


@dataclass(frozen=True, slots=True)
class RecapSettings:
    """When and how the bot speaks recaps.

    Attributes:
        every_s: speak one this often, in meeting time (None: no timer). A timer
            recap is skipped when nothing was said since the last recap.
        on_end: speak one just before the bot leaves (skipped, too, when nothing
            was said since the last recap).
        phrase: the spoken trigger (None or "": none).
        voice: the agent's voice (None: the service's default).
        prompt_extra: what the recap should cover ("focus on decisions").
        since_last: recap only what was said since the previous recap.
        grace_ms: after playback starts, the trigger speaker's own trailing speech
            is ignored this long (it is not a barge-in).
        preroll_ms: reply audio gathered before publishing starts.
        max_backlog_ms: most recap audio queued in the channel.
        end_timeout_s: bound on the recap at the end (and on waiting for one that
            is running when the meeting ends), so a stop always ends the meeting.
        timeouts: bounds on the agent session's waits.
    """

    every_s: float | None = None
    on_end: bool = False
    phrase: str | None = DEFAULT_PHRASE
    voice: str | None = None
    prompt_extra: str = ""
    since_last: bool = False
    grace_ms: float = 300.0
    preroll_ms: float = DEFAULT_PREROLL_MS
    max_backlog_ms: float = DEFAULT_MAX_BACKLOG_MS
    end_timeout_s: float = 60.0
    timeouts: AgentTimeouts = field(default_factory=AgentTimeouts)


@dataclass(slots=True)
class RecapOutcome:
    """What one recap did (also stored as the note's ``meta``).

    Attributes:
        trigger: what started it.
        requested_at_ms: meeting time it was asked for.
        started_at_ms: meeting time its first frame was published (None: never).
        audio_ms: recap audio the channel played.
        text: what the agent said ("" if it failed).
        is_interrupted: cut short (a barge-in, the meeting ending, the agent).
        interrupted_at_ms: position in the recap audio where it stopped.
        stop_reason: why it was cut short ("barge-in", "the meeting ended", ...).
        barge_in: ``(uid, meeting ms)`` of the participant who spoke over it.
        turn_count: turns handed to the agent.
        session_id: the Voice Agent session.
        note_id: the stored note (None if the recap failed).
        error: why it failed, if it did.
    """

    trigger: Trigger
    requested_at_ms: float
    started_at_ms: float | None = None
    audio_ms: float = 0.0
    text: str = ""
    is_interrupted: bool = False
    interrupted_at_ms: float | None = None
    stop_reason: str | None = None
    barge_in: tuple[int, float] | None = None
    turn_count: int = 0
    session_id: str | None = None
    note_id: int | None = None
    error: str | None = None

    def as_meta(self) -> dict[str, Any]:
        """The note's ``meta``."""
        trigger = (
            self.trigger.as_meta() if isinstance(self.trigger, SpokenTrigger) else self.trigger
        )
        return {
            "trigger": trigger,
            "interrupted": self.is_interrupted,
            "interrupted_at_ms": _rounded(self.interrupted_at_ms),
            "stop_reason": self.stop_reason,
            "audio_ms": round(self.audio_ms),
            "requested_at_ms": round(self.requested_at_ms),
            "started_at_ms": _rounded(self.started_at_ms),
            "barge_in": (
                None
                if self.barge_in is None
                else {"uid": self.barge_in[0], "at_ms": round(self.barge_in[1])}
            ),
            "turns": self.turn_count,
            "session_id": self.session_id,
        }


def _rounded(value: float | None) -> int | None:
    return None if value is None else round(value)


@dataclass(slots=True)
class _Running:
    trigger: Trigger
    player: RecapPlayer
    outcome: RecapOutcome


class RecapObserver:
    """Speaks recaps into a meeting being recorded; a :class:`~recorder.bot.MeetingObserver`.

    One recap at a time: a trigger while one runs is logged and ignored. An
    agent-side failure (bad key, ``session.error``, a drop, a session that never
    becomes ready) ends that recap with a warning and no note (nothing true to
    store: the agent's transcript comes at the end of its reply); the recording
    is never touched.

    Args:
        agent_url: the Voice Agent WebSocket URL.
        api_key: the AssemblyAI key (never logged).
        settings: when and how to speak.
        names: display names by uid (for turns heard but not yet stored).
        announce: shows the user a one-line account of each recap (the live console).
    """

    def __init__(
        self,
        *,
        agent_url: str,
        api_key: str,
        settings: RecapSettings | None = None,
        names: Mapping[int, str] | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.agent_url = agent_url
        self._api_key = api_key
        self.settings = settings or RecapSettings()
        self._announce = announce or (lambda message: None)
        self.outcomes: list[RecapOutcome] = []
        self.ignored = 0
        self._context: MeetingContext | None = None
        self._started_at = datetime.now(UTC)
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._running: _Running | None = None
        self._names = dict(names or {})
        self._ledger = TurnLedger(names)
        self._triggered: set[tuple[int, tuple[int, int], int]] = set()
        self._news = 0  # turns heard that are more than a request for a recap
        self._news_at_last_recap = 0

    def __repr__(self) -> str:
        return f"<RecapObserver {self.agent_url} {len(self.outcomes)} recaps>"

    @property
    def is_busy(self) -> bool:
        """Whether a recap is being made or spoken."""
        return self._task is not None and not self._task.done()

    # -- MeetingObserver ---------------------------------------------------------

    async def started(self, context: MeetingContext) -> None:
        """Remember the meeting; start the timer if one is set."""
        self._context = context
        # Notes are dated on the meeting's timeline (its start + meeting time), as the
        # recorder dates the meeting's end; the recording must not fail for a date.
        self._started_at = datetime.now(UTC) - timedelta(milliseconds=context.clock_ms())
        try:
            meeting = await context.store.get_meeting(context.meeting_id)
            self._started_at = meeting.summary.started_at
        except RecorderError as exc:
            log.warning("! recap: cannot read the meeting's start (%s); using the clock", exc)
        if self.settings.every_s:
            self._timer = asyncio.create_task(self._run_timer(), name="recap-timer")

    def final_turn(self, turn: FinalTurn) -> None:
        """Start a recap if the turn says the trigger phrase."""
        is_new = self._ledger.add(turn)
        phrase = self.settings.phrase
        if is_new and not (phrase and is_bare_request(turn.text, phrase)):
            self._news += 1
        # A formatted final repeats the unformatted one (same socket and turn order).
        key = (turn.uid, turn.socket_key, turn.turn_order)
        if not (phrase and contains_phrase(turn.text, phrase)) or key in self._triggered:
            return
        self._triggered.add(key)
        trigger = SpokenTrigger(turn.uid, turn.start_ms, turn.end_ms, turn.text)
        if not self._start(trigger):
            log.info("recap: uid %d asked for a recap while one is running; ignored", turn.uid)

    def speech(self, uid: int) -> None:
        """Barge-in: anyone speaking while the recap plays stops it at once."""
        running = self._running
        if running is None or not running.player.is_playing or self._context is None:
            return
        player = running.player
        now_ms = self._context.clock_ms()
        trigger = running.trigger
        started = player.started_at_ms if player.started_at_ms is not None else now_ms
        if (
            isinstance(trigger, SpokenTrigger)
            and uid == trigger.uid
            and now_ms - started < self.settings.grace_ms
        ):
            return  # the trigger speaker's own trailing audio
        played_ms = player.interrupt("barge-in")
        running.outcome.barge_in = (uid, now_ms)
        log.info("recap: uid %d spoke; stopped after %.0f ms of audio", uid, played_ms)

    async def before_end(self) -> None:
        """Let a running recap finish, then speak the end recap (both bounded)."""
        await self._stop_timer()
        bound_s = self.settings.end_timeout_s
        if self._task is not None and not self._task.done():
            await self._bounded(self._task, bound_s, "the running recap")
        if not self.settings.on_end:
            return
        if not self._has_news():
            log.info("recap: nothing said since the last recap; recap on end skipped")
        elif self._start("end"):
            assert self._task is not None
            await self._bounded(self._task, bound_s, "the recap on end")

    async def stopped(self) -> None:
        """Stop the timer and any recap still speaking."""
        await self._stop_timer()
        if self._task is not None and not self._task.done():
            await self._bounded(self._task, 0.0, "the recap")

    # -- recaps ------------------------------------------------------------------

    def _has_news(self) -> bool:
        """Whether anything was said since the last recap (timer and end recaps need it)."""
        return self._news > self._news_at_last_recap

    def _label(self, trigger: Trigger) -> str:
        if not isinstance(trigger, SpokenTrigger):
            return trigger
        name = self._names.get(trigger.uid)
        return f"asked by {name} ({trigger.uid})" if name else f"asked by uid {trigger.uid}"

    def _start(self, trigger: Trigger) -> bool:
        if self.is_busy or self._context is None:
            self.ignored += 1
            return False
        label = "spoken" if isinstance(trigger, SpokenTrigger) else trigger
        self._task = asyncio.create_task(self._recap(trigger), name=f"recap-{label}")
        self._task.add_done_callback(_log_bug)
        return True

    async def _bounded(self, task: asyncio.Task[None], timeout_s: float, what: str) -> None:
        """Wait for ``task``; past ``timeout_s`` stop it gently, then for good."""
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if done:
            return
        if timeout_s > 0:
            log.warning("! %s took longer than %g s; stopping it", what, timeout_s)
        if self._running is not None:
            self._running.player.interrupt("the meeting ended")
        done, _ = await asyncio.wait({task}, timeout=_STOP_GRACE_S)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None

    async def _run_timer(self) -> None:
        assert self._context is not None and self.settings.every_s
        clock_ms = self._context.clock_ms
        every_ms = self.settings.every_s * 1000.0
        due_ms = every_ms
        while True:
            remaining_s = (due_ms - clock_ms()) / 1000.0
            if remaining_s > 0:
                await asyncio.sleep(min(remaining_s, _TIMER_POLL_S))
                continue
            due_ms += every_ms
            if not self._has_news():
                log.info("recap: nothing said since the last recap; timer recap skipped")
            elif not self._start("timer"):
                log.info("recap: a recap is running; timer recap skipped")

    async def _recap(self, trigger: Trigger) -> None:
        context = self._context
        assert context is not None
        settings = self.settings
        cancel = asyncio.Event()
        player = RecapPlayer(
            context.transport,
            cancel=cancel,
            clock_ms=context.clock_ms,
            preroll_ms=settings.preroll_ms,
            max_backlog_ms=settings.max_backlog_ms,
        )
        outcome = RecapOutcome(trigger, requested_at_ms=context.clock_ms())
        self._running = _Running(trigger, player, outcome)
        self._news_at_last_recap = self._news
        try:
            # Not context.flush_turns(): the writer may hold the last turns for up to
            # 0.5 s; the ledger adds what it has not committed yet (recap_turns.py).
            turns = await self._ledger.read(context.store, context.meeting_id)
            log.debug("recap: %d turns read at %.0f ms", len(turns), context.clock_ms())
            leave_out = (
                (trigger.uid, trigger.start_ms) if isinstance(trigger, SpokenTrigger) else None
            )
            phrase = settings.phrase
            included = self._ledger.select(
                turns,
                since_last=settings.since_last,
                leave_out=leave_out,
                is_request=(lambda text: is_bare_request(text, phrase)) if phrase else None,
            )
            outcome.turn_count = len(included)
            result = await run_recap(
                self.agent_url,
                self._api_key,
                RecapRequest(included, prompt_extra=settings.prompt_extra, voice=settings.voice),
                on_audio=player.feed,
                cancel=cancel,
                timeouts=settings.timeouts,
            )
            await player.finish()
        except RecorderError as exc:
            player.interrupt("the agent failed")
            outcome.error = str(exc)
            outcome.started_at_ms = player.started_at_ms
            outcome.audio_ms = player.played_ms
            self.outcomes.append(outcome)
            log.warning("! recap (%s) failed: %s; recording goes on", self._label(trigger), exc)
            return
        finally:
            self._running = None
        self._ledger.mark_recapped(turns)
        outcome.text = result.text
        outcome.session_id = result.session_id
        outcome.started_at_ms = player.started_at_ms
        outcome.is_interrupted = result.was_interrupted or player.interrupted_at_ms is not None
        outcome.audio_ms = player.played_ms
        if outcome.is_interrupted:
            outcome.interrupted_at_ms = player.played_ms
            outcome.stop_reason = player.stop_reason or "the agent cut it short"
        self.outcomes.append(outcome)
        if not outcome.text:
            # Stopped before the agent said anything (or it sent no transcript): no note.
            log.info("recap (%s) said nothing; no note stored", self._label(trigger))
            return
        await self._store_note(context, outcome)

    async def _store_note(self, context: MeetingContext, outcome: RecapOutcome) -> None:
        created_at = self._started_at + timedelta(milliseconds=outcome.requested_at_ms)
        try:
            outcome.note_id = await context.store.add_note(
                context.meeting_id,
                "recap",
                outcome.text,
                created_at=created_at,
                spoken=outcome.audio_ms > 0,
                meta=outcome.as_meta(),
            )
        except RecorderError as exc:
            outcome.error = str(exc)
            log.warning("! the recap was spoken but not stored: %s", exc)
            return
        log.info(
            "recap (%s) stored as note %d: %.1f s spoken%s",
            self._label(outcome.trigger),
            outcome.note_id,
            outcome.audio_ms / 1000,
            ", interrupted" if outcome.is_interrupted else "",
        )
        cut = " [interrupted]" if outcome.is_interrupted else ""
        self._announce(f"* recap ({self._label(outcome.trigger)}){cut}: {outcome.text}")


def _log_bug(task: asyncio.Task[None]) -> None:
    """A recap never stops the recording, but a bug in it must not pass unseen."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("! the recap failed unexpectedly", exc_info=error)
