"""How a recording ends: streams stopped, audio and turns stored, the meeting's status decided.

:class:`MeetingEnd` takes a stopped :class:`~recorder.bot.MeetingRecorder`'s
parts and settles them in order, every wait bounded: the observer and the
transport stop, every STT stream closes, the audio files are finished (audio
that could not be kept becomes a gap), speech nothing covers becomes a gap
(:mod:`recorder.unheard`), the writer drains, the end-of-meeting repair runs
(:meth:`~recorder.gaps.GapLedger.settle`) and says how the meeting ended, and
the meeting's end is stored. It knows nothing of the recorder itself: the
recorder builds it once it has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from recorder.errors import RecorderError
from recorder.unheard import UNHEARD_CAUSE, uncovered_speech

if TYPE_CHECKING:
    from recorder.audio_store import AudioKeeper
    from recorder.console import LiveConsole
    from recorder.gaps import GapLedger, Repair
    from recorder.meeting import MeetingObserver
    from recorder.persist import DatabaseGuard
    from recorder.pipeline import ParticipantStream
    from recorder.sessions import SocketRecords
    from recorder.transport.base import Transport
    from recorder.unheard import SpeechSpans
    from recorder.writer import TranscriptWriter
    from storage.records import Gap
    from storage.store import TranscriptStore

__all__ = ["FINISH_GIVE_UP_S", "MeetingEnd", "settle_tasks"]

#: At the end, how long to wait for an away database to store the meeting's end.
FINISH_GIVE_UP_S = 300.0

log = logging.getLogger(__name__)


async def settle_tasks(tasks: Collection[asyncio.Task[Any]], timeout_s: float) -> None:
    """Wait for ``tasks`` at most ``timeout_s``, then cancel what is left."""
    if not tasks:
        return
    _, pending = await asyncio.wait(set(tasks), timeout=timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeetingEnd:
    """One stopped recording's parts, and the steps that end it.

    ``fatal`` is read when the status is decided, not before: a stream may
    still fail for good while it closes.
    """

    meeting_id: int
    started_at: datetime
    store: TranscriptStore
    transport: Transport
    observer: MeetingObserver | None
    streams: Mapping[int, ParticipantStream]
    tasks: Collection[asyncio.Task[None]]
    writer: TranscriptWriter
    guard: DatabaseGuard
    ledger: GapLedger
    keeper: AudioKeeper | None
    speech: SpeechSpans
    records: SocketRecords
    repair: Repair | None
    console: LiveConsole
    stop_timeout_s: float
    clock_ms: Callable[[], float]
    fatal: Callable[[], RecorderError | None]

    async def settle(
        self, writer_task: asyncio.Task[None], status: str
    ) -> tuple[str, tuple[Gap, ...]]:
        """Stop everything, store what is left and repair it; the meeting's status and gaps.

        ``status`` is the status so far: ``interrupted`` (the channel failed, or
        the join never finished) stays so, and skips the checks and the repair.
        """
        # Repairs under way finish; the rest wait for the end, after the last live word.
        await self.ledger.stop_repairs()
        if self.observer is not None:
            try:
                await self.observer.stopped()
            except RecorderError as exc:
                log.warning("! %s", exc)
        with contextlib.suppress(RecorderError):
            await self.transport.stop()
        streams = [stream.aclose() for stream in self.streams.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*streams), self.stop_timeout_s)
        except TimeoutError:
            log.warning("! some streams did not close within %.0f s", self.stop_timeout_s)
            for stream in self.streams.values():
                stream.uncovered()
        await settle_tasks(self.tasks, FINISH_GIVE_UP_S)
        await self._finish_audio()
        await settle_tasks(self.ledger.tasks, FINISH_GIVE_UP_S)
        await self._store_unheard(status)
        self.writer.close()
        try:
            # The writer retries while the database is away; bounded, as everything here.
            await asyncio.wait_for(asyncio.shield(writer_task), FINISH_GIVE_UP_S)
        except TimeoutError:
            writer_task.cancel()  # what is left stays in the journal for 'recorder repair'
            await asyncio.gather(writer_task, return_exceptions=True)
        return await self._settle_status(status)

    async def store_end(self, status: str) -> None:
        """Store the meeting's end and ``status``, waiting a while for an away database."""
        ended = self.started_at + timedelta(milliseconds=self.clock_ms())
        meeting_id, started_at = self.meeting_id, self.started_at
        await self.guard.run(
            lambda: self.store.finish_meeting(
                meeting_id, ended_at=max(ended, started_at), status=status
            ),
            give_up_s=FINISH_GIVE_UP_S,
        )

    async def _finish_audio(self) -> None:
        """Finish every audio file; audio that could not be kept is a gap of its own."""
        keeper = self.keeper
        if keeper is None:
            return
        await keeper.aclose()
        if keeper.failure is None:
            return
        for uid, lost_from in keeper.lost_from_ms.items():
            end = keeper.last_end_ms.get(uid, lost_from)
            # Live transcription may have heard it, but nothing can repair or re-check it.
            await self.ledger.store(
                uid,
                int(lost_from),
                int(max(lost_from, end)),
                f"audio not kept: {keeper.failure}",
                state="lost",
            )

    async def _store_unheard(self, status: str) -> None:
        """Speech no stored turn or gap covers becomes a gap, repaired below (recorder.unheard)."""
        if status == "interrupted":
            return
        try:
            await asyncio.wait_for(self.writer.flush(), FINISH_GIVE_UP_S)
            missed = await uncovered_speech(self.store, self.meeting_id, self.speech)
        except (TimeoutError, RecorderError) as exc:
            log.warning("! speech not checked against the transcript: %s", exc or "timed out")
            return
        if missed:
            self.console.info(
                f"! {len(missed)} stretch(es) of speech no live transcript covered; "
                "they are repaired from the stored audio"
            )
        for uid, from_ms, to_ms in missed:
            await self.ledger.store(uid, from_ms, to_ms, UNHEARD_CAUSE)

    async def _settle_status(self, status: str) -> tuple[str, tuple[Gap, ...]]:
        """Repair what can be repaired, then say how the meeting ended.

        A recording a fatal error stopped before the meeting's end is
        ``interrupted`` even once its gaps are repaired: what came after the stop
        was never heard (``failed`` if nothing at all was recorded).
        """
        if status == "interrupted":
            return status, ()
        keeper = self.keeper
        settled, gaps = await self.ledger.settle(
            repair=self.repair,
            turns=self.records.turns,
            kept_ms=sum(keeper.kept_ms.values()) if keeper is not None else 0.0,
        )
        if self.fatal() is not None and settled != "failed":
            return "interrupted", gaps
        return settled, gaps
