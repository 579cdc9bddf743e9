"""One recording job on a worker: claim the lease, record, keep the lease, end truthfully.

A job claims its recording's lease (waiting out a dead holder's), records
through :func:`recorder.app.record` exactly as ``recorder join`` does, renews
the lease every few seconds and stops writing the moment it could have lost it.
A takeover continues the same meeting: a replayed channel starts at the script
time already elapsed since the recording started, as a rejoin of a live channel
would, and the outage is stored as gaps (:mod:`recorder.fleet.takeover`): the
kept audio the previous worker had not transcribed is repaired when the meeting
ends, what nobody received is ``lost`` and leaves the meeting ``partial``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from procrastinate import JobContext
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from recorder.app import RecordingOptions, record
from recorder.bot import MeetingContext, MeetingReport
from recorder.config import (
    DEFAULT_EMPTY_TIMEOUT_S,
    DEFAULT_IDLE_CLOSE_S,
    DEFAULT_SESSIONS_PER_MINUTE,
    Config,
)
from recorder.console import LiveConsole
from recorder.errors import (
    ChannelError,
    ConfigError,
    DatabaseUnreachable,
    MigrationRequired,
    NotFoundError,
    RecorderError,
    ReplayError,
    SttRejected,
    TransportUnavailable,
    UsageError,
)
from recorder.fleet.queue import MAX_ATTEMPTS, HandBack, Transient
from recorder.fleet.recordings import FINAL_STATUSES, Claim, Recordings
from recorder.fleet.shift import ShiftedTransport
from recorder.fleet.takeover import (
    Outage,
    TakeoverGaps,
    store_newcomer_gaps,
    store_takeover_gaps,
)
from recorder.pipeline import FinalTurn
from recorder.transport.base import Transport
from storage.records import SessionClosed, SessionOpened
from storage.store import TranscriptStore

__all__ = ["ActiveRecording", "FencedStore", "FleetRuntime", "LeaseLost", "is_permanent", "run_job"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Failures retrying cannot fix: the recording fails with the reason at once.
_PERMANENT = (
    ConfigError,
    UsageError,
    ChannelError,
    ReplayError,
    TransportUnavailable,
    SttRejected,
    MigrationRequired,
    NotFoundError,
)


def is_permanent(error: RecorderError) -> bool:
    """Whether a failure is for good (bad channel, token or key) rather than passing."""
    return isinstance(error, _PERMANENT)


class ActiveRecording:
    """A recording this worker holds: its stop signal and its lease's local deadline.

    The deadline is measured on this machine's monotonic clock from just before
    each successful renewal was sent, so it passes no later than the lease
    expires in the database. Past it, nothing is written until the database
    confirms the lease is still ours: a claim by another worker replaces the
    lease's token, so a renewal by token succeeds exactly when nobody took the
    recording over (a worker that merely fell behind keeps it).
    """

    def __init__(
        self,
        recording_id: int,
        lease_s: float,
        renew: Callable[[], Awaitable[bool | None]],
    ) -> None:
        self.recording_id = recording_id
        self.lease_s = lease_s
        self._renew = renew
        self._confirming: asyncio.Lock = asyncio.Lock()
        self.stop = asyncio.Event()
        self.stop_reason = ""
        self.handback = False
        self.lease_lost = False
        self.deadline = time.monotonic() + lease_s

    def request_stop(self, reason: str, *, handback: bool = False) -> None:
        """Stop recording: for good, or handing the recording back to the queue."""
        if not self.stop.is_set():
            self.stop_reason = reason
            self.handback = handback
        self.stop.set()

    def renewed(self, sent_at: float) -> None:
        """A renewal sent at ``sent_at`` (monotonic) succeeded."""
        self.deadline = sent_at + self.lease_s

    async def renew(self) -> bool:
        """Renew the lease now; False if another worker holds it (or the database is away).

        A renewal asked for (``recorder stop``) stops the recording.
        """
        async with self._confirming:
            if self.lease_lost:
                return False
            sent = time.monotonic()
            try:
                stop = await self._renew()
            except Exception as exc:  # the database unreachable: unconfirmed
                log.warning("! lease of recording %d not renewed: %s", self.recording_id, exc)
                return False
            if stop is None:
                self.lose()
                return False
            self.renewed(sent)
            if stop:
                self.request_stop("stop requested")
            return True

    async def may_write(self) -> bool:
        """Whether the lease is ours: at once within the deadline, else asking the database."""
        if self.lease_lost:
            return False
        if time.monotonic() < self.deadline:
            return True
        return await self.renew()

    def lose(self) -> None:
        """The lease is gone (expired or taken): stop at once, writing nothing more."""
        self.lease_lost = True
        self.request_stop("lost its lease")


class LeaseLost(RecorderError):
    """A write refused because another worker holds the recording now."""


class FencedStore(TranscriptStore):
    """A transcript store that writes only while the recording's lease is held.

    A holder frozen past its lease (a paused VM, SIGSTOP) wakes up to find every
    write refused here, so the worker that took the recording over is the only
    writer. ``finish_meeting`` is skipped on a hand-back too: the meeting goes on
    elsewhere.
    """

    fence: ActiveRecording | None = None
    # The meeting was recorded by another worker before (a takeover): its turns are
    # not this worker's, so "nothing recorded" is never true of it.
    continued: bool = False

    @classmethod
    def sharing(cls, engine: AsyncEngine, url: URL, fence: ActiveRecording) -> FencedStore:
        """A store for one recording on the worker's shared engine (one pool for all jobs)."""
        store = cls(engine, url)
        store.fence = fence
        return store

    async def close(self) -> None:
        """Nothing to close: the engine belongs to the worker."""

    async def _allowed(self) -> bool:
        return self.fence is None or await self.fence.may_write()

    async def _transaction(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool
    ) -> T:
        # Companion modules (gaps, audio index, notes) write through here, not through the
        # methods below: a holder that lost its lease must not write there either.
        if write and not await self._allowed():
            raise LeaseLost("this worker no longer holds the recording's lease")
        return await super()._transaction(work, write=write)

    async def upsert_turns(self, *args: Any, **kwargs: Any) -> None:
        """Store final turns (refused without the lease)."""
        if await self._allowed():
            await super().upsert_turns(*args, **kwargs)

    async def open_stream_sessions(self, opened: Sequence[SessionOpened]) -> list[int]:
        """Record STT sockets (refused without the lease: ids 0)."""
        if await self._allowed():
            return await super().open_stream_sessions(opened)
        return [0] * len(opened)

    async def close_stream_sessions(self, closed: Sequence[SessionClosed]) -> None:
        """Close STT sockets' records (refused without the lease)."""
        if await self._allowed():
            await super().close_stream_sessions(closed)

    async def record_participant(self, *args: Any, **kwargs: Any) -> int:
        """Add or update a participant (refused without the lease: id 0)."""
        return await super().record_participant(*args, **kwargs) if await self._allowed() else 0

    async def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        """Mark the meeting alive (refused without the lease)."""
        if await self._allowed():
            await super().heartbeat(*args, **kwargs)

    async def add_note(self, *args: Any, **kwargs: Any) -> int:
        """Attach a note (refused without the lease: id 0)."""
        return await super().add_note(*args, **kwargs) if await self._allowed() else 0

    async def finish_meeting(self, *args: Any, **kwargs: Any) -> None:
        """End the meeting, unless it goes on elsewhere (hand-back) or is not ours."""
        if self.fence is not None and self.fence.handback:
            return
        if not await self._allowed():
            return
        if self.continued and _status_of(args, kwargs) == "failed":
            # The ledger judged only this worker's part; the meeting has what the
            # previous worker recorded, so it is partial, not failed.
            meeting_id = int(args[0] if args else kwargs["meeting_id"])
            summary = (await self.get_meeting(meeting_id, with_turns=False)).summary
            if summary.turn_count:
                if len(args) >= 3:
                    args = (*args[:2], "partial", *args[3:])
                else:
                    kwargs["status"] = "partial"
        await super().finish_meeting(*args, **kwargs)


def _status_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return str(args[2] if len(args) >= 3 else kwargs.get("status", "completed"))


@dataclass
class FleetRuntime:
    """What every job of one worker shares.

    Attributes:
        recordings: the ``recordings`` queries.
        config: credentials and endpoints from the worker's environment.
        engine: the transcripts' engine every job writes through (one pool).
        url: the transcripts' database URL.
        host: this machine's name, shown in ``recorder jobs``.
        pid: this process.
        lease_s: how long a lease lasts without renewal.
        say: prints one line of the worker's log.
        draining: set on SIGTERM; jobs waiting for a lease hand back at once.
        active: the recordings held now, by id.
    """

    recordings: Recordings
    config: Config
    engine: AsyncEngine
    url: URL
    host: str
    pid: int
    lease_s: float
    say: Callable[[str], None]
    draining: bool = False
    active: dict[int, ActiveRecording] = field(default_factory=dict)

    @property
    def renew_s(self) -> float:
        """How often a lease is renewed: a few renewals may fail before it expires."""
        return self.lease_s / 4


async def run_job(runtime: FleetRuntime, context: JobContext, recording_id: int) -> None:
    """Record ``recording_id`` on this worker (procrastinate's ``record`` task body).

    Raises:
        HandBack: the worker is draining; the recording goes back to the queue.
        Transient: a failure that may pass; procrastinate retries with backoff.
    """
    recordings = runtime.recordings
    token = secrets.token_hex(16)
    active = ActiveRecording(
        recording_id,
        runtime.lease_s,
        lambda: recordings.renew(recording_id, token, runtime.lease_s),
    )
    try:
        claim = await _claim(runtime, recording_id, token, active)
    except (HandBack, asyncio.CancelledError):
        raise
    except Exception as exc:  # the queue's database away: the job would be lost, not retried
        runtime.say(f"recording {recording_id}: will retry: the lease could not be taken: {exc}")
        raise Transient(DatabaseUnreachable(f"the lease could not be taken: {exc}")) from exc
    if claim is None:
        return
    row = claim.row
    where = f"recording {recording_id} ({row.channel})"
    if row.claims > 1 and claim.previous_host is not None:
        outage = claim.last_renewed_s
        runtime.say(
            f"{where}: taking over from {claim.previous_host}:{claim.previous_pid}"
            + (f", {outage:.1f} s after its last sign of life" if outage is not None else "")
            + (
                f"; continuing meeting {row.meeting_id} at {claim.elapsed_s:.1f} s"
                if row.meeting_id is not None
                else f"; its meeting never began: joining at {claim.elapsed_s:.1f} s"
            )
        )
    else:
        runtime.say(f"{where}: started (waited {row.wait_s:.1f} s in the queue)")
    runtime.active[recording_id] = active
    keeper = asyncio.create_task(_keep_lease(runtime, active), name="lease")
    attempts = context.job.attempts
    try:
        report = await _record(runtime, claim, active, token)
    except RecorderError as exc:
        if active.lease_lost:
            runtime.say(f"{where}: lost its lease; another worker holds it now")
            return
        if is_permanent(exc):
            runtime.say(f"{where}: failed: {exc}")
            await recordings.release(recording_id, token, status="failed", reason=str(exc))
            return
        if attempts + 1 >= MAX_ATTEMPTS:
            reason = f"gave up after {attempts + 1} attempts: {exc}"
            runtime.say(f"{where}: failed: {reason}")
            await recordings.release(recording_id, token, status="failed", reason=reason)
            return
        runtime.say(f"{where}: will retry (attempt {attempts + 1} of {MAX_ATTEMPTS}): {exc}")
        try:
            await recordings.release(
                recording_id, token, status="queued", reason=f"retrying after: {exc}"
            )
        except Exception as away:  # the retry claims it once the lease has expired
            log.warning("! lease of recording %d not handed back: %s", recording_id, away)
        raise Transient(exc) from exc
    except Exception as exc:
        log.exception("! %s failed", where)
        if not active.lease_lost:
            await recordings.release(
                recording_id, token, status="failed", reason=f"internal error: {exc!r}"
            )
        raise
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        runtime.active.pop(recording_id, None)
    if active.lease_lost:
        runtime.say(f"{where}: lost its lease; another worker holds it now")
        return
    if active.handback:
        await recordings.release(
            recording_id,
            token,
            status="queued",
            reason=f"handed back by {runtime.host} ({active.stop_reason})",
            turns=report.turns,
        )
        runtime.say(f"{where}: handed back to the queue ({active.stop_reason})")
        raise HandBack()
    reason = _describe(report, active, _empty_timeout(row.options))
    await recordings.release(recording_id, token, status="done", reason=reason, turns=report.turns)
    runtime.say(f"{where}: done, meeting {report.meeting_id}: {reason}")
    if row.options.get("notes"):
        await _write_notes(runtime, where, report.meeting_id)


async def _write_notes(runtime: FleetRuntime, where: str, meeting_id: int) -> None:
    """The meeting's notes, after the recording is done; a failure leaves it pending."""
    from recorder.notes.service import NotesOptions, notes_after_recording

    made, error = await notes_after_recording(runtime.config, meeting_id, NotesOptions())
    if made is None:
        runtime.say(f"{where}: notes not made ({error}); 'recorder notes --pending' retries")
    else:
        runtime.say(f"{where}: notes made for meeting {meeting_id}")


async def _claim(
    runtime: FleetRuntime, recording_id: int, token: str, active: ActiveRecording
) -> Claim | None:
    """Take the lease, waiting out a live one; None if the recording is over or gone."""
    while True:
        if runtime.draining:
            raise HandBack()
        sent = time.monotonic()
        claim = await runtime.recordings.claim(
            recording_id, token=token, host=runtime.host, pid=runtime.pid, lease_s=runtime.lease_s
        )
        if claim is not None:
            active.renewed(sent)
            return claim
        row = await runtime.recordings.get(recording_id)
        if row is None or row.status in FINAL_STATUSES:
            status = "gone" if row is None else row.status
            runtime.say(f"recording {recording_id}: nothing to do, it is {status}")
            return None
        wait = runtime.lease_s / 4
        if row.lease_expires is not None:
            wait = (row.lease_expires - row.now).total_seconds() + 0.05
        await asyncio.sleep(min(max(wait, 0.05), runtime.lease_s))


async def _keep_lease(runtime: FleetRuntime, active: ActiveRecording) -> None:
    """Renew the lease until cancelled, or until another worker holds it (which stops us)."""
    while not active.lease_lost:
        await asyncio.sleep(runtime.renew_s)
        await active.renew()


class _Companion:
    """Notes the meeting id on the recording; after a takeover, gaps for newcomers."""

    def __init__(
        self,
        runtime: FleetRuntime,
        claim: Claim,
        token: str,
        takeover: tuple[Outage, TakeoverGaps] | None,
    ) -> None:
        self._runtime = runtime
        self._claim = claim
        self._token = token
        self._takeover = takeover
        self._context: MeetingContext | None = None

    async def started(self, context: MeetingContext) -> None:
        self._context = context
        await self._runtime.recordings.set_meeting(
            self._claim.row.id, self._token, context.meeting_id
        )

    def final_turn(self, turn: FinalTurn) -> None:
        pass

    def speech(self, uid: int) -> None:
        pass

    async def before_end(self) -> None:
        # By now everyone already in the channel at the rejoin has been reported.
        if self._takeover is None or self._context is None:
            return
        outage, gaps = self._takeover
        try:
            await store_newcomer_gaps(
                self._context.store, self._context.meeting_id, outage, gaps.known
            )
        except RecorderError as exc:
            log.warning("! takeover gaps of newcomers not stored: %s", exc)

    async def stopped(self) -> None:
        pass


class _Discard(io.StringIO):
    """A text stream that keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)


def _empty_timeout(options: dict[str, Any]) -> float:
    value = options.get("empty_timeout_s")
    return float(value) if value is not None else DEFAULT_EMPTY_TIMEOUT_S


def _open_transport(
    config: Config, channel: str, options: dict[str, Any], start_ms: float
) -> Transport:
    spec = str(options.get("transport") or "agora")
    speed = float(options.get("speed") or 1.0)
    if spec.startswith("replay:"):
        from recorder.transport.replay import ReplayTransport
        from recorder.transport.script import load_script

        script = load_script(Path(spec[len("replay:") :]))
        if channel != script.channel:
            script = dataclasses.replace(script, channel=channel)
        return ReplayTransport(script, speed=speed, start_ms=start_ms)
    from recorder.transport.select import open_transport

    transport = open_transport(
        spec, config, channel=channel, speed=speed, publish=options.get("recap") is not None
    )
    # A live channel rejoined mid-meeting: its times continue the meeting's clock.
    return ShiftedTransport(transport, start_ms) if start_ms > 0 else transport


def _options(options: dict[str, Any], claim: Claim) -> RecordingOptions:
    recap = None
    if options.get("recap") is not None:
        from recorder.recap.settings import RecapSettings

        recap = RecapSettings(**options["recap"])
    duration = options.get("max_duration_s")
    if duration is not None:
        duration = max(0.1, float(duration) - claim.elapsed_s)
    return RecordingOptions(
        idle_close_s=float(options.get("idle_close_s") or DEFAULT_IDLE_CLOSE_S),
        sessions_per_minute=float(
            options.get("sessions_per_minute") or DEFAULT_SESSIONS_PER_MINUTE
        ),
        duration_s=duration,
        names={int(uid): str(name) for uid, name in (options.get("names") or {}).items()},
        keyterms=tuple(options.get("keyterms") or ()),
        prompt=options.get("prompt"),
        realtime_factor=float(options.get("speed") or 1.0),
        recap=recap,
        empty_timeout_s=_empty_timeout(options),
        meeting_id=claim.row.meeting_id,
    )


async def _record(
    runtime: FleetRuntime, claim: Claim, active: ActiveRecording, token: str
) -> MeetingReport:
    row = claim.row
    options = row.options
    config = runtime.config
    if options.get("speech_model"):
        config = dataclasses.replace(config, speech_model=str(options["speech_model"]))
    speed = float(options.get("speed") or 1.0)
    rejoin_ms = claim.elapsed_s * 1000 * speed
    store = FencedStore.sharing(runtime.engine, runtime.url, active)
    takeover = await _take_over(runtime, claim, store, rejoin_ms, speed)
    transport = _open_transport(config, row.channel, options, rejoin_ms)
    try:
        return await record(
            config,
            transport,
            options=_options(options, claim),
            # The worker prints job events only; participants' comings and goings stay quiet.
            console=LiveConsole(quiet=True, status=_Discard()),
            observers=(_Companion(runtime, claim, token, takeover),),
            store=store,
            stop=active.stop,
        )
    finally:
        store.fence = None


async def _take_over(
    runtime: FleetRuntime, claim: Claim, store: FencedStore, rejoin_ms: float, speed: float
) -> tuple[Outage, TakeoverGaps] | None:
    """Store what the channel's time without a recorder missed; None on a first claim."""
    row = claim.row
    if claim.previous_host is None or claim.last_renewed_s is None:
        return None
    if row.meeting_id is None:
        # An earlier attempt failed before the meeting began (a retry): the channel went
        # unheard from the recording's start. Whoever is in it at the rejoin gets a lost
        # gap when the meeting ends.
        return Outage(from_ms=0.0, to_ms=rejoin_ms, handed_back=True), TakeoverGaps(frozenset())
    # Stored before the channel is rejoined: what the previous worker left is final.
    outage = Outage(
        from_ms=max(0.0, rejoin_ms - claim.last_renewed_s * 1000 * speed),
        to_ms=rejoin_ms,
        handed_back=claim.handed_back,
    )
    gaps = await store_takeover_gaps(store, row.meeting_id, outage)
    store.continued = True
    runtime.say(
        f"recording {row.id} ({row.channel}): outage {outage.from_ms / 1000:.1f}-"
        f"{outage.to_ms / 1000:.1f} s stored as gaps: {gaps.to_repair} to repair from the "
        f"kept audio when the meeting ends, {gaps.lost} lost ({gaps.lost_ms / 1000:.1f} "
        "participant-seconds nobody received)"
    )
    return outage, gaps


def _describe(report: MeetingReport, active: ActiveRecording, empty_timeout_s: float) -> str:
    said = f"{report.turns} turns from {report.participants} participants"
    if report.dropped_speech_ms:
        said += (
            f"; {report.dropped_speech_ms / 1000:.1f} s of speech could not be transcribed "
            "(the speech-to-text service was unreachable)"
        )
    if report.dropped_audio_ms:
        said += f"; {report.dropped_audio_ms / 1000:.1f} s of audio lost (this worker fell behind)"
    lost = [g for g in report.gaps if g.state != "repaired"]
    if lost:
        said += f"; {len(lost)} gap(s) not repaired (see 'recorder show {report.meeting_id}')"
    status = report.status
    if report.end_reason == "empty":
        who = "nobody joined" if report.participants == 0 else "everyone left"
        return f"{status}: the channel stayed empty for {empty_timeout_s:g} s ({who}); {said}"
    if report.end_reason == "duration":
        return f"{status} at its --max-duration; {said}"
    if report.end_reason == "stopped":
        return f"{status} ({active.stop_reason or 'stopped'}); {said}"
    return f"{status}: the channel ended; {said}"
