"""One recording: transport → per-participant STT streams → store, and a clean shutdown.

:class:`MeetingRecorder` is the transport's sink. It makes a
:class:`~recorder.pipeline.ParticipantStream` on a participant's first audio,
stores each socket as a stream session (the cost record) and each final turn
through the one :class:`~recorder.writer.TranscriptWriter`, and on stop hands
its parts to :class:`~recorder.meeting_end.MeetingEnd`, which ends every socket
cleanly, repairs what it can and says how the meeting ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from recorder.audio import Chunk
from recorder.console import LiveConsole
from recorder.errors import RecorderError, SttRejected
from recorder.gaps import GapLedger, Repair
from recorder.heap import freeze_startup_heap
from recorder.journal import journal_path
from recorder.limiter import SessionBudget
from recorder.meeting import MeetingContext, MeetingObserver, MeetingReport, RecorderSettings
from recorder.meeting_end import MeetingEnd
from recorder.persist import DatabaseGuard, StoreWrites, participant_write
from recorder.pipeline import FinalTurn, ParticipantStream, SpeechStream, StreamHooks
from recorder.sessions import SocketRecords
from recorder.stt.events import SocketClosed, SocketOpened
from recorder.transport.base import (
    ConnectionStateChanged,
    LoopFellBehind,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    Transport,
    TransportEvent,
    TransportSink,
)
from recorder.unheard import SpeechSpans
from recorder.writer import TranscriptWriter, replay_leftover_journals
from storage.records import Gap
from storage.store import TranscriptStore

if TYPE_CHECKING:
    from recorder.audio_store import AudioFailure, AudioKeeper

__all__ = [
    "MeetingContext",
    "MeetingObserver",
    "MeetingRecorder",
    "MeetingReport",
    "RecorderSettings",
]

# A recording process marks its meeting alive this often, so a fleet sharing one
# database can tell a live meeting from one whose recorder was killed.
HEARTBEAT_S = 60.0
# (MeetingContext, MeetingObserver, MeetingReport and RecorderSettings live in
# recorder.meeting and are re-exported here, where callers have always found them.)
# A key refused once sockets had opened (HTTP 401/403 at the upgrade, close 1008 or
# 4001-4003: docs/providers.md, "Streaming: close codes") means the key was revoked
# or the account ran dry mid-meeting: the recording goes on, keeping the audio.
_REFUSED_KEY_CODES = frozenset({401, 403, 1008, 4001, 4002, 4003})

log = logging.getLogger(__name__)


class MeetingRecorder(TransportSink):
    """Records one meeting from a transport into the store.

    Args:
        transport: where audio comes from.
        store: where turns go.
        open_stream: makes a new STT stream for a participant (uid → stream).
        settings: how to record.
        console: the live display.
        observer: an optional companion (the recap).
        audio_dir: keep every participant's audio here (None: keep none).
        repair: repairs gaps from the kept audio, during the meeting and at its end.
        budget: the new-session budget shared with the streams (default: one at
            ``settings.sessions_per_minute``).
    """

    def __init__(
        self,
        *,
        transport: Transport,
        store: TranscriptStore,
        open_stream: Callable[[int], SpeechStream],
        settings: RecorderSettings,
        console: LiveConsole | None = None,
        observer: MeetingObserver | None = None,
        audio_dir: Path | None = None,
        repair: Repair | None = None,
        budget: SessionBudget | None = None,
        journal_dir: Path | None = None,
    ) -> None:
        self.transport = transport
        self._audio_dir = audio_dir
        # Where writes wait while the database is away (default: the audio directory).
        self._journal_dir = journal_dir if journal_dir is not None else audio_dir
        self._keeper: AudioKeeper | None = None
        self._repair = repair

        self.observer = observer
        self.store = store
        self.settings = settings
        self.console = console or LiveConsole(settings.names, quiet=True)
        self._open_stream = open_stream
        self._budget = budget or SessionBudget(settings.sessions_per_minute)
        self._streams: dict[int, ParticipantStream] = {}
        self._guard = DatabaseGuard(self.console.info)
        # The one retrying writer: every write while recording, journaled while away.
        self._writer = TranscriptWriter(StoreWrites(store), guard=self._guard)
        # A replay at --speed N plays N meeting seconds a wall second (a live channel
        # has no speed: 1); socket time is counted on the meeting's clock, as speech is.
        speed = float(getattr(transport, "speed", 1.0))
        self._records = SocketRecords(self._writer, speed=speed)
        self._ledger = GapLedger(
            store,
            self.console,
            self._writer,
            self._clock_ms,
            is_audio_kept=audio_dir is not None,
            repair=repair,
            live=self,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._fatal: RecorderError | None = None
        self._status = "completed"
        self._meeting_id: int | None = None
        self._started_at = datetime.now(UTC)
        self._seen: set[int] = set()
        self._gaps: tuple[Gap, ...] = ()
        self._speech = SpeechSpans()  # where each participant's audio carried speech
        self._present: set[int] = set()
        self._presence_changed = asyncio.Event()
        self._end_reason = "finished"

    @property
    def meeting_id(self) -> int | None:
        """The meeting's id once recording has started."""
        return self._meeting_id

    def request_stop(self, reason: str = "stopped") -> None:
        """Ask the recording to stop cleanly (Ctrl+C, SIGTERM, --duration)."""
        if not self._stop.is_set():
            self._end_reason = reason
        self._stop.set()

    async def run(self) -> MeetingReport:
        """Record until the transport ends, the duration passes or a stop is requested.

        Raises:
            RecorderError: the recording could not start, or the STT service
                refused us for good (bad key); what was recorded is kept.
        """
        interrupted = await self.store.mark_interrupted_meetings()
        if self._journal_dir is not None:
            await replay_leftover_journals(self.store, self._journal_dir, say=self.console.info)
        if self.settings.meeting_id is not None:
            self._meeting_id = self.settings.meeting_id
            self._started_at = await self.store.resume_meeting(self._meeting_id)
        else:
            self._started_at = datetime.now(UTC)
            self._meeting_id = await self.store.start_meeting(
                self.transport.channel, self.settings.bot_uid, self._started_at
            )
        self._ledger.meeting_id = self._records.meeting_id = self._meeting_id
        if self._journal_dir is not None:
            self._writer.journal_to(
                journal_path(self._journal_dir, self._meeting_id),
                self._meeting_id,
                self.transport.channel,
                self._started_at,
            )
        if self._audio_dir is not None:
            from recorder.audio_store import AudioKeeper

            self._keeper = AudioKeeper(
                self.store,
                self._meeting_id,
                self._audio_dir,
                on_failure=self._on_audio_failure,
                writer=self._writer,
            )
        writer_task = asyncio.create_task(self._writer.run(), name="transcript-writer")
        heartbeat = asyncio.create_task(self._heartbeat(), name="meeting-heartbeat")
        empty = self.settings.empty_timeout_s
        watch = asyncio.create_task(
            self._watch_empty(empty) if empty is not None else asyncio.sleep(0),
            name="empty-channel-watch",
        )
        try:
            if not await self._start_transport():
                return await self._report(interrupted)  # stopped while joining
            freeze_startup_heap()  # joined: the process's start-up is all loaded
            if self.observer is not None:
                await self.observer.started(
                    MeetingContext(
                        meeting_id=self._meeting_id,
                        store=self.store,
                        transport=self.transport,
                        flush_turns=self._writer.flush,
                        clock_ms=self._clock_ms,
                    )
                )
            await self._wait_for_end()
            if self.observer is not None and self._fatal is None:
                await self.observer.before_end()
        finally:
            heartbeat.cancel()
            watch.cancel()
            await self._shutdown(writer_task)
        if self._fatal is not None:
            raise self._fatal
        return await self._report(interrupted)

    async def _start_transport(self) -> bool:
        """Join the channel, giving up at once if a stop is requested meanwhile.

        Returns:
            False if the recording was stopped before the join completed.

        Raises:
            RecorderError: the join failed; the meeting is kept as interrupted.
        """
        joining = asyncio.create_task(self.transport.start(self), name="transport-start")
        stopping = asyncio.create_task(self._stop.wait(), name="stop-while-joining")
        try:
            await asyncio.wait({joining, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not joining.done():
            # Ctrl+C during a join: leaving ends the join attempt (docs/providers.md,
            # "Agora: service and connections").
            self._status = "interrupted"
            with contextlib.suppress(RecorderError):
                await self.transport.stop()
            with contextlib.suppress(RecorderError, asyncio.CancelledError):
                await asyncio.wait_for(joining, self.settings.stop_timeout_s)
            return False
        if joining.exception() is not None:
            self._status = "interrupted"
        joining.result()
        return True

    async def _heartbeat(self) -> None:
        assert self._meeting_id is not None
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self.store.heartbeat(self._meeting_id, datetime.now(UTC))
            except RecorderError as exc:
                log.warning("! heartbeat not stored: %s", exc)

    async def _watch_empty(self, timeout_s: float) -> None:
        """Stop once no remote participant has been in the channel for ``timeout_s``."""
        while not self._stop.is_set():
            self._presence_changed.clear()
            if self._present:
                await self._presence_changed.wait()
                continue
            try:
                await asyncio.wait_for(self._presence_changed.wait(), timeout_s)
            except TimeoutError:
                who = "nobody joined" if not self._seen else "everyone left"
                self.console.info(f"channel empty for {timeout_s:g} s ({who}): stopping")
                self.request_stop("empty")
                return

    async def _wait_for_end(self) -> None:
        waiters = [
            asyncio.create_task(self._stop.wait(), name="stop-requested"),
            asyncio.create_task(self.transport.wait_finished(), name="transport-finished"),
        ]
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=self.settings.duration_s, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                self._end_reason = "duration"
            finished = waiters[1]
            if finished.done() and not finished.cancelled():
                error = finished.exception()
                if isinstance(error, RecorderError):
                    # The channel failed under us (kicked, token gone): keep what was
                    # stored, mark the meeting interrupted, and say why.
                    self._status = "interrupted"
                    self._on_fatal(error)
                elif error is not None:
                    raise error
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _shutdown(self, writer_task: asyncio.Task[None]) -> None:
        assert self._meeting_id is not None
        end = MeetingEnd(
            meeting_id=self._meeting_id,
            started_at=self._started_at,
            store=self.store,
            transport=self.transport,
            observer=self.observer,
            streams=self._streams,
            tasks=self._tasks,
            writer=self._writer,
            guard=self._guard,
            ledger=self._ledger,
            keeper=self._keeper,
            speech=self._speech,
            records=self._records,
            repair=self._repair,
            console=self.console,
            stop_timeout_s=self.settings.stop_timeout_s,
            clock_ms=self._clock_ms,
            fatal=lambda: self._fatal,
        )
        self._status, self._gaps = await end.settle(writer_task, self._status)
        await end.store_end(self._status)

    def _on_audio_failure(self, failure: AudioFailure) -> None:
        self.console.info(
            f"! warning: {failure}; the recording goes on, but audio is no longer kept "
            "and this meeting will end partial"
        )

    # -- what a repair during the meeting needs (recorder.gaps.LiveRepair) ------

    def settled_ms(self, uid: int) -> float:
        """Meeting time up to which ``uid``'s live transcription is settled."""
        stream = self._streams.get(uid)
        return stream.settled_ms() if stream is not None else self._clock_ms()

    async def flush(self, uid: int) -> None:
        """Put ``uid``'s audio and every final turn so far in the store."""
        if self._keeper is not None:
            await self._keeper.flush(uid)
        await self._writer.flush()

    def _clock_ms(self) -> float:
        return self.transport.clock_ms()

    async def _repaired(self) -> tuple[int, float]:
        """Turns repaired from the kept audio, and the speech they carry (ms)."""
        assert self._meeting_id is not None
        count, speech_ms = 0, 0.0
        if not any(g.state == "repaired" for g in self._gaps):
            return count, speech_ms
        try:
            # Paged and without words: bounded however long the meeting.
            async for turn in self.store.iter_turns(self._meeting_id, with_words=False):
                if turn.source == "repaired":
                    count += 1
                    speech_ms += turn.end_ms - turn.start_ms
        except RecorderError as exc:
            log.warning("! repaired turns not counted: %s", exc)
        return count, speech_ms

    async def _report(self, interrupted: int) -> MeetingReport:
        assert self._meeting_id is not None
        keeper = self._keeper
        repaired_turns, repaired_speech_ms = await self._repaired()
        return MeetingReport(
            status=self._status,
            gaps=self._gaps,
            audio_kept_s=sum(keeper.kept_ms.values()) / 1000 if keeper is not None else 0.0,
            audio_problem=str(keeper.failure) if keeper and keeper.failure else None,
            meeting_id=self._meeting_id,
            channel=self.transport.channel,
            duration_s=self._clock_ms() / 1000,
            turns=self._records.turns + repaired_turns,
            repaired_turns=repaired_turns,
            participants=len(self._seen),
            billed_seconds=self._records.billed_seconds,
            sessions=self._records.sessions,
            dropped_speech_ms=sum(s.dropped_ms for s in self._streams.values()),
            interrupted_before=interrupted,
            dropped_audio_ms=sum(self.transport.dropped_audio_ms.values()),
            billed_ms=self._records.billed_seconds * 1000,
            speech_ms=self._records.speech_ms + repaired_speech_ms,
            sessions_per_minute=self._budget.per_minute,
            session_refusals=self._budget.refusals,
            end_reason=self._end_reason,
        )

    # -- TransportSink (on the loop) -----------------------------------------

    def on_event(self, event: TransportEvent) -> None:
        """Route a participant or connection event."""
        if isinstance(event, ParticipantJoined):
            self._present.add(event.uid)
            self._presence_changed.set()
            self._spawn(
                self._record_participant(event.uid, event.at_ms, "joined"), f"joined-{event.uid}"
            )
            self.console.info(f"+ {self.console.label(event.uid)} joined")
        elif isinstance(event, ParticipantLeft):
            self._present.discard(event.uid)
            self._presence_changed.set()
            if (stream := self._streams.get(event.uid)) is not None:
                stream.pause("left")
            if self._keeper is not None:
                self._keeper.end_run(event.uid)
            self._spawn(
                self._record_participant(event.uid, event.at_ms, "left"), f"left-{event.uid}"
            )
            self.console.info(f"- {self.console.label(event.uid)} left ({event.reason})")
        elif isinstance(event, ParticipantMuted):
            if event.is_muted and (stream := self._streams.get(event.uid)) is not None:
                stream.pause("muted")
            if event.is_muted and self._keeper is not None:
                self._keeper.end_run(event.uid)
            self.console.info(
                f"{'~' if event.is_muted else '+'} {self.console.label(event.uid)} "
                f"{'muted' if event.is_muted else 'unmuted'}"
            )
        elif isinstance(event, LoopFellBehind):
            self._ledger.on_dropped(event.uid, event.at_ms, event.to_ms)
        elif isinstance(event, ConnectionStateChanged):
            log.info(
                "= channel %s connection %s %s",
                self.transport.channel,
                event.state.value,
                event.reason,
            )

    def on_audio(self, uid: int, chunk: Chunk) -> None:
        """Hand a chunk to the participant's stream, creating it on first audio."""
        # Every chunk of every participant passes here (issue 13: at 200 speakers,
        # 2000 a second): a few lookups and calls, nothing allocated.
        keeper = self._keeper
        if keeper is not None:
            keeper.feed(uid, chunk)
        is_speech = chunk.is_speech
        if is_speech:
            self._speech.heard(uid, chunk)
        stream = self._streams.get(uid)
        if stream is None:
            stream = self._new_stream(uid)
        stream.feed(chunk)
        if is_speech and self.observer is not None:
            self.observer.speech(uid)

    def _new_stream(self, uid: int) -> ParticipantStream:
        stream = self._streams[uid] = ParticipantStream(
            uid,
            open_stream=lambda: self._open_stream(uid),
            budget=self._budget,
            hooks=self._hooks,
            idle_close_ms=self.settings.idle_close_s * 1000,
            close_policy=self.settings.close_policy,
            hold_ms=self.settings.hold_s * 1000,
        )
        return stream

    # -- stream hooks ------------------------------------------------------------

    @property
    def _hooks(self) -> StreamHooks:
        return StreamHooks(
            on_final=self._on_final,
            on_partial=self.console.partial,
            on_speech_started=self._on_speech_started,
            on_socket_opened=self._on_socket_opened,
            on_socket_closed=self._on_socket_closed,
            on_fatal=self._on_fatal,
            on_gap=self._ledger.on_gap,
            on_trouble=self._ledger.say_down,
        )

    async def _on_final(self, turn: FinalTurn) -> None:
        self._records.put_final(turn)
        self._ledger.progress()
        self.console.final(turn.uid, turn.start_ms, turn.text)
        if self.observer is not None:
            self.observer.final_turn(turn)

    async def _on_socket_opened(self, uid: int, key: tuple[int, int], event: SocketOpened) -> None:
        self._records.opened(uid, key, event.provider_id)
        self._ledger.transcription_back(uid)

    async def _on_socket_closed(self, uid: int, key: tuple[int, int], event: SocketClosed) -> None:
        self._records.closed(uid, key, event)
        self._ledger.progress()

    def _on_speech_started(self, uid: int) -> None:
        self.console.speaking(uid, True)
        if self.observer is not None:
            self.observer.speech(uid)

    def _on_fatal(self, error: RecorderError) -> None:
        keeper = self._keeper
        is_refusal = isinstance(error, SttRejected) and error.code in _REFUSED_KEY_CODES
        is_audio_kept = keeper is not None and keeper.failure is None
        if is_refusal and self._records.has_sockets and is_audio_kept:
            # Refused mid-meeting (the key revoked, the account out of credit): the
            # audio is still kept and the stretch is a gap (the stream records it and
            # the console says so), to repair once the service takes the key again.
            # The recording goes on.
            log.info("= refused mid-meeting: %s", error)
            return
        if self._fatal is None:
            self._fatal = error
            # run() raises it and the caller says it, once: nothing else repeats it.
            log.info("= stopping: %s", error)
            self._ledger.quiet()
        self.request_stop("failed")

    async def _record_participant(self, uid: int, at_ms: float, presence: str) -> None:
        assert self._meeting_id is not None
        self._seen.add(uid)
        seen_at = self._started_at + timedelta(milliseconds=at_ms)
        self._writer.submit(
            participant_write(
                self._meeting_id, uid, seen_at, self.settings.names.get(uid), presence
            )
        )

    def _spawn(self, coroutine: object, name: str) -> None:
        assert asyncio.iscoroutine(coroutine)
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
