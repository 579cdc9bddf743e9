"""The gaps of one recording: what live transcription missed, said once, stored, settled.

:class:`GapLedger` is told of every stretch a participant's live transcription
missed (the pipeline's ``on_gap`` hook) and of trouble before it is a stretch
(``on_trouble``). It says so on the console once per change, with a count for
repeats, and says when transcription is back; it stores each gap through the
recording's one writer. When a participant's transcription is back it repairs their
gaps from the kept audio while the meeting goes on (a few at a time, each once
the participant's live transcription is settled past it, so no word is heard
twice); at the end it has what is left repaired and decides how the meeting
ended: ``completed`` (every stretch transcribed, live or repaired),
``partial`` or ``failed`` (nothing recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from recorder.console import LiveConsole
from recorder.errors import RecorderError
from recorder.persist import gap_write
from recorder.timeline import format_clock
from storage.gaps import list_gaps, set_gap_state
from storage.records import Gap
from storage.store import TranscriptStore

if TYPE_CHECKING:
    from recorder.writer import TranscriptWriter

__all__ = ["DROPPED_CAUSE", "GapLedger", "LiveRepair", "Repair"]

log = logging.getLogger(__name__)

#: Why a stretch the bridge dropped is lost (the gap row's cause).
DROPPED_CAUSE = "the recorder fell behind and dropped this audio before keeping it"
# Audio read either side of a gap by a repair (recorder.audio_store.repair.PAD_MS):
# live transcription must be settled this far past a gap before it is repaired.
_PAD_MS = 1000
# Repairs running at once during a meeting (each uploads and polls one stretch).
_MAX_REPAIRS = 2
# While waiting for live transcription to settle, look again at least this often (s).
_RECHECK_S = 1.0


class Repair(Protocol):
    """Repairs a meeting's open gaps from its stored audio (``app._repairer``)."""

    async def __call__(
        self, meeting_id: int, *, uid: int | None = None, until_ms: int | None = None
    ) -> None:
        """Repair the open gaps (of ``uid``, ending by ``until_ms``, when given)."""


class LiveRepair(Protocol):
    """What repairing during the meeting needs of the recording (the bot)."""

    def settled_ms(self, uid: int) -> float:
        """Meeting time up to which ``uid``'s live transcription is settled."""

    async def flush(self, uid: int) -> None:
        """Put ``uid``'s audio and final turns so far in the store."""


class GapLedger:
    """Records, announces and settles one meeting's gaps.

    Args:
        store: where gaps are stored.
        console: where the user is told.
        writer: the recording's writer (retries and journals while the database is away).
        clock_ms: meeting time now.
        is_audio_kept: whether the recording keeps audio (so gaps can be repaired).
    """

    def __init__(
        self,
        store: TranscriptStore,
        console: LiveConsole,
        writer: TranscriptWriter,
        clock_ms: Callable[[], float],
        *,
        is_audio_kept: bool,
        repair: Repair | None = None,
        live: LiveRepair | None = None,
    ) -> None:
        self._store = store
        self._console = console
        self._writer = writer
        self._clock_ms = clock_ms
        self._is_audio_kept = is_audio_kept
        self.meeting_id: int | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        # Participants whose live transcription is down: why, and how often it was seen.
        self._down: dict[int, tuple[str, int]] = {}
        self._repair = repair
        self._live = live
        # Stretches (from_ms, to_ms) missed since the participant's last repair was planned.
        self._missed: dict[int, list[tuple[int, int]]] = {}
        self._repairs: set[asyncio.Task[None]] = set()
        self._repairing: set[asyncio.Task[None]] = set()  # past waiting: in the repair call
        self._locks: dict[int, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(_MAX_REPAIRS)
        self._progress = asyncio.Event()
        self._is_stopping = False
        self._is_quiet = False
        self._dropped_said: set[int] = set()

    def on_gap(self, uid: int, from_ms: int, to_ms: int, cause: str) -> None:
        """A stretch live transcription missed: say so (once per change) and store it."""
        self.say_down(uid, cause, at_ms=from_ms)
        self._missed.setdefault(uid, []).append((from_ms, to_ms))
        task = asyncio.create_task(
            self.store(uid, from_ms, to_ms, cause), name=f"gap-{uid}-{from_ms}"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_dropped(self, uid: int, from_ms: float, to_ms: float) -> None:
        """Audio the recorder dropped before keeping it (it fell behind): a lost stretch.

        Said once per participant (the bridge's warning gives the totals), stored
        ``lost``: nothing kept it, so no repair can bring it back.
        """
        if uid not in self._dropped_said and not self._is_quiet:
            self._dropped_said.add(uid)
            self._console.info(
                f"! the recorder fell behind and dropped audio of {self._console.label(uid)} "
                f"at {format_clock(from_ms, compact=True)}; that stretch cannot be repaired "
                "(this machine is overloaded: record fewer meetings on it)"
            )
        task = asyncio.create_task(
            self.store(uid, int(from_ms), math.ceil(to_ms), DROPPED_CAUSE, state="lost"),
            name=f"dropped-{uid}-{int(from_ms)}",
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def quiet(self) -> None:
        """A fatal error stops the recording, and its caller says why: say no more of it."""
        self._is_quiet = True

    def say_down(self, uid: int, cause: str, *, at_ms: float | None = None) -> None:
        """Say once per change that a participant's live transcription stopped, and why."""
        if self._is_quiet:
            return
        said = self._down.get(uid)
        if said is not None:
            # Still down: said already (the first cause), counted for the "back" line,
            # whatever this one's wording ("does not answer", then "could not be reached").
            self._down[uid] = (said[0], said[1] + 1)
            return
        when = format_clock(self._clock_ms() if at_ms is None else at_ms, compact=True)
        kept = (
            "the audio is kept and will be repaired" if self._is_audio_kept else "no audio is kept"
        )
        self._console.info(
            f"! transcription stopped for {self._console.label(uid)} at {when}: {cause}; {kept}"
        )
        self._down[uid] = (cause, 1)

    def transcription_back(self, uid: int) -> None:
        """A socket opened for ``uid``: say so if its transcription had stopped, and repair."""
        said = self._down.pop(uid, None)
        if said is None:
            return
        again = f" (seen {said[1]} times)" if said[1] > 1 else ""
        missed = self._missed.pop(uid, [])
        who = self._console.label(uid)
        if not self._is_audio_kept:
            self._console.info(
                f"+ transcription back for {who}{again}; the missed stretch is lost (no audio kept)"
            )
            return
        if self._repair is None or self._live is None or not missed or self._is_stopping:
            self._console.info(
                f"+ transcription back for {who}{again}; "
                "the missed stretch will be repaired from the stored audio"
            )
            return
        from_ms, to_ms = min(f for f, _ in missed), max(t for _, t in missed)
        self._console.info(
            f"+ transcription back for {who}{again}; repairing "
            f"{format_clock(from_ms)}-{format_clock(to_ms)} from the stored audio"
        )
        task = asyncio.create_task(self._repair_when_settled(uid, to_ms), name=f"repair-{uid}")
        self._repairs.add(task)
        task.add_done_callback(self._repairs.discard)

    def progress(self) -> None:
        """Live transcription moved on (a final, a closed socket): look at waiting repairs."""
        self._progress.set()

    async def stop_repairs(self) -> None:
        """The meeting is ending: drop repairs still waiting, let running ones finish.

        What they leave open is repaired by :meth:`settle`, after the last live word.
        """
        self._is_stopping = True
        for task in self._repairs - self._repairing:
            task.cancel()
        await asyncio.gather(*self._repairs, return_exceptions=True)

    async def _repair_when_settled(self, uid: int, to_ms: int) -> None:
        live, repair = self._live, self._repair
        assert live is not None and repair is not None and self.meeting_id is not None
        # The gaps must be in the store, and live transcription settled past their padded
        # end: its words there are stored, so the repair hears none of them twice.
        await asyncio.gather(*self.tasks, return_exceptions=True)
        while live.settled_ms(uid) < to_ms + _PAD_MS:
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), _RECHECK_S)
        lock = self._locks.setdefault(uid, asyncio.Lock())
        async with lock, self._slots:  # one repair per participant at a time
            task = asyncio.current_task()
            assert task is not None
            self._repairing.add(task)
            try:
                until = int(live.settled_ms(uid))
                await live.flush(uid)
                await repair(self.meeting_id, uid=uid, until_ms=until)
            except RecorderError as exc:
                self._console.info(
                    f"! repair of {self._console.label(uid)} did not finish: {exc}; "
                    "it is tried again when the meeting ends"
                )
            finally:
                self._repairing.discard(task)

    async def store(
        self, uid: int, from_ms: int, to_ms: int, cause: str, *, state: str = "open"
    ) -> None:
        """Store one gap, retrying while the database is away."""
        meeting_id = self.meeting_id
        assert meeting_id is not None
        try:
            await self._writer.write(gap_write(meeting_id, uid, from_ms, to_ms, cause, state=state))
        except RecorderError as exc:
            log.warning("! gap of uid %d not stored: %s", uid, exc)

    async def settle(
        self,
        *,
        repair: Repair | None,
        turns: int,
        kept_ms: float,
    ) -> tuple[str, tuple[Gap, ...]]:
        """Repair what can be repaired; return how the meeting ended, and its gaps."""
        meeting_id = self.meeting_id
        assert meeting_id is not None
        try:
            gaps = await list_gaps(self._store, meeting_id)
            if any(g.state == "open" for g in gaps):
                if repair is not None and self._is_audio_kept:
                    self._console.info("repairing the transcription gaps from the stored audio")
                    try:
                        await repair(meeting_id)
                    except RecorderError as exc:
                        self._console.info(f"! repair did not finish: {exc}")
                elif not self._is_audio_kept:
                    # No audio was kept (--no-audio): nothing can ever repair them.
                    for gap in gaps:
                        if gap.state == "open":
                            await set_gap_state(
                                self._store, gap.id, "lost", detail="no audio was kept"
                            )
                gaps = await list_gaps(self._store, meeting_id)
        except RecorderError as exc:
            log.warning("! gaps not read: %s", exc)
            return "partial", ()
        if all(g.state == "repaired" for g in gaps):
            return "completed", tuple(gaps)
        repaired = any(g.state == "repaired" for g in gaps)
        if turns == 0 and not repaired and kept_ms == 0:
            return "failed", tuple(gaps)
        return "partial", tuple(gaps)
