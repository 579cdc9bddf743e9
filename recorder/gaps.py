"""The gaps of one recording: what live transcription missed, said once, stored, settled.

:class:`GapLedger` is told of every stretch a participant's live transcription
missed (the pipeline's ``on_gap`` hook) and of trouble before it is a stretch
(``on_trouble``). It says so on the console once per change, with a count for
repeats, and says when transcription is back; it stores each gap through the
recording's one writer; and at the end it has the open gaps repaired from the kept
audio and decides how the meeting ended: ``completed`` (every stretch
transcribed, live or repaired), ``partial`` or ``failed`` (nothing recorded).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from recorder.console import LiveConsole
from recorder.errors import RecorderError
from recorder.persist import gap_write
from recorder.timeline import format_clock
from storage.gaps import list_gaps, set_gap_state
from storage.records import Gap
from storage.store import TranscriptStore

if TYPE_CHECKING:
    from recorder.writer import TranscriptWriter

__all__ = ["GapLedger"]

log = logging.getLogger(__name__)


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

    def on_gap(self, uid: int, from_ms: int, to_ms: int, cause: str) -> None:
        """A stretch live transcription missed: say so (once per change) and store it."""
        self.say_down(uid, cause, at_ms=from_ms)
        task = asyncio.create_task(
            self.store(uid, from_ms, to_ms, cause), name=f"gap-{uid}-{from_ms}"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def say_down(self, uid: int, cause: str, *, at_ms: float | None = None) -> None:
        """Say once per change that a participant's live transcription stopped, and why."""
        said = self._down.get(uid)
        if said is not None and said[0] == cause:
            self._down[uid] = (cause, said[1] + 1)
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
        """A socket opened for ``uid``: say so if its transcription had stopped."""
        said = self._down.pop(uid, None)
        if said is None:
            return
        again = f" (seen {said[1]} times)" if said[1] > 1 else ""
        repaired = (
            "the missed stretch will be repaired from the stored audio"
            if self._is_audio_kept
            else "the missed stretch is lost (no audio kept)"
        )
        self._console.info(
            f"+ transcription back for {self._console.label(uid)}{again}; {repaired}"
        )

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
        repair: Callable[[int], Awaitable[None]] | None,
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
