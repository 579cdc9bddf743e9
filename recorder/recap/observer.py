"""The spoken recap of a live meeting: when to speak, what to say, and when to stop.

:class:`RecapObserver` rides along a :class:`~recorder.bot.MeetingRecorder`
as its observer. A participant saying the trigger phrase, a timer, or the
meeting's end starts a recap (:mod:`recorder.recap.triggers`): the turns so
far (:class:`~recorder.recap.ledger.TurnLedger`) go to a fresh Voice Agent
session (:func:`~recorder.recap.reply.run_recap`), its audio is published into
the channel as it arrives (:class:`~recorder.recap.player.RecapPlayer`), and
what it said is stored as a note. Anyone speaking over it stops it at once
(barge-in).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from recorder.bot import MeetingContext
from recorder.errors import RecorderError
from recorder.pipeline import FinalTurn
from recorder.recap.ledger import TurnLedger
from recorder.recap.outcome import RecapOutcome
from recorder.recap.player import RecapPlayer
from recorder.recap.prompt import RecapRequest
from recorder.recap.reply import run_recap
from recorder.recap.settings import RecapSettings
from recorder.recap.triggers import (
    RecapTimer,
    SpokenTrigger,
    Trigger,
    contains_phrase,
    is_bare_request,
)

__all__ = ["RecapObserver"]

log = logging.getLogger(__name__)

#: After asking a recap to stop, how long it may take to end its session
#: (``session.end`` is bounded by AgentTimeouts.end_s + close_s, 5 + 2 s).
_STOP_GRACE_S = 10.0


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
        names: display names by uid, for the turns a recap tells (the meeting's cast).
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
            timer = RecapTimer(self.settings.every_s, context.clock_ms, self._timer_due)
            self._timer = asyncio.create_task(timer.run(), name="recap-timer")

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

    def _timer_due(self) -> None:
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
            # 0.5 s; the ledger adds what it has not committed yet (ledger.py).
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
