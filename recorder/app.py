"""The one composition root: record a meeting from a transport into the store.

:func:`record` wires what a recording needs around
:class:`~recorder.bot.MeetingRecorder`: the store, one speech-to-text stream
per participant, the live console, the observers and the spoken recap. The
CLI, the tests and the benchmarks call it; what belongs to a process (signals,
printing the report) stays with the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from recorder.bot import (
    MeetingContext,
    MeetingObserver,
    MeetingRecorder,
    MeetingReport,
    RecorderSettings,
)
from recorder.config import DEFAULT_IDLE_CLOSE_S, DEFAULT_SESSIONS_PER_MINUTE, Config
from recorder.console import LiveConsole
from recorder.errors import RecorderError
from recorder.gaps import Repair
from recorder.limiter import SessionBudget
from recorder.pipeline import FinalTurn
from recorder.stt.hold import DEFAULT_HOLD_MS, ClosePolicy
from recorder.stt.settings import DEFAULT_BUFFERS, BufferSettings, ConnectSettings
from recorder.stt.stream import stream_factory
from recorder.transport.base import Transport
from storage.store import TranscriptStore

if TYPE_CHECKING:
    from recorder.recap.settings import RecapSettings

__all__ = ["RecordingOptions", "record"]

log = logging.getLogger(__name__)

# Seconds of held audio a participant's stream catches up after an outage (see record).
_CATCH_UP_S = 3.0


@dataclass(frozen=True, slots=True)
class RecordingOptions:
    """How to record one meeting, beyond the :class:`~recorder.config.Config`.

    Attributes:
        idle_close_s: silence after which a participant's socket closes (it bills while open).
        sessions_per_minute: new STT sockets the account allows a minute.
        duration_s: stop after this long (None: until the transport ends or a stop).
        names: display names by uid; they win over the names the transport knows.
        keyterms: words the speech model should favour (names, jargon).
        prompt: instructions for the speech model.
        realtime_factor: how much faster than real time audio arrives (a replay
            played fast); the STT streams pace and lead by it.
        recap: speak recaps into the channel (None: never).
        close_policy: close a participant's socket at the end of a turn (default),
            or only after ``idle_close_s`` of silence (the earlier policy).
        hold_s: with the turn-end policy, silence after the last speech before closing.
        check_key: ask the service whether the key is good before joining (no
            session is opened; docs/providers.md, "Streaming: speech models, key
            check and pacing").
        empty_timeout_s: stop once the channel has had no remote participant this
            long (None: never).
        meeting_id: continue this meeting (taken over from another process)
            instead of starting a new one.
    """

    idle_close_s: float = DEFAULT_IDLE_CLOSE_S
    sessions_per_minute: float = DEFAULT_SESSIONS_PER_MINUTE
    duration_s: float | None = None
    names: Mapping[int, str] = field(default_factory=dict)
    keyterms: tuple[str, ...] = ()
    prompt: str | None = None
    realtime_factor: float = 1.0
    recap: RecapSettings | None = None
    close_policy: ClosePolicy = ClosePolicy.TURN_END
    hold_s: float = DEFAULT_HOLD_MS / 1000
    check_key: bool = True
    empty_timeout_s: float | None = None
    meeting_id: int | None = None


async def record(
    config: Config,
    transport: Transport,
    *,
    options: RecordingOptions | None = None,
    observers: Sequence[MeetingObserver] = (),
    console: LiveConsole | None = None,
    store: TranscriptStore | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[], None] | None = None,
) -> MeetingReport:
    """Record one meeting from ``transport`` until it ends, the duration passes or ``stop``.

    Args:
        config: the database, the streaming endpoint and key, the speech model,
            the bot's uid and the Voice Agent URL.
        transport: where the audio comes from (not started yet).
        options: how to record (defaults: :class:`RecordingOptions`).
        observers: companions told of the meeting's turns and speech.
        console: the live display (default: quiet, info lines only).
        store: an open store to record into (default: open ``config.database_url``
            for this recording).
        stop: set it to stop the recording cleanly.
        on_ready: called once everything is open, just before the transport starts
            (the CLI installs its signal handlers there).

    Returns:
        What the recording did.

    Raises:
        ConfigError: no AssemblyAI key in ``config``.
        SttRejected: the service refused the key, checked before joining.
        RecorderError: the recording could not start, or the STT service refused
            us for good; what was recorded is kept.
    """
    options = options or RecordingOptions()
    api_key = config.require_api_key()
    duration_s = options.duration_s
    recap = options.recap
    if recap is not None and recap.on_end:
        # A scripted meeting ends by itself, and then nothing could play the recap
        # on end: keep its channel open and stop where the meeting ends, as a stop would.
        ends_s = transport.linger(recap.end_timeout_s)
        if ends_s is not None:
            duration_s = ends_s if duration_s is None else min(duration_s, ends_s)
    names = {**transport.names, **options.names}
    if console is None:
        console = LiveConsole(names, quiet=True)
    else:
        console.add_names(names)
    if options.check_key:
        await _check_key(config.streaming_url, api_key, console)
    companions = list(observers)
    if recap is not None:
        from recorder.recap.observer import RecapObserver
        from recorder.recap.settings import DEFAULT_AGENT_URL

        companions.append(
            RecapObserver(
                agent_url=config.agent_url or DEFAULT_AGENT_URL,
                api_key=api_key,
                settings=recap,
                names=names,
                announce=console.info,
            )
        )
    settings = RecorderSettings(
        bot_uid=config.bot_uid,
        idle_close_s=options.idle_close_s,
        sessions_per_minute=options.sessions_per_minute,
        duration_s=duration_s,
        names=names,
        close_policy=options.close_policy,
        hold_s=options.hold_s,
        empty_timeout_s=options.empty_timeout_s,
        meeting_id=options.meeting_id,
    )
    # One budget for the meeting: the pipeline spends a session per stream it opens, each
    # stream one per later socket, and refusals teach it the account's rate. A replay
    # played N times faster runs it on the meeting's clock.
    speed = options.realtime_factor
    budget = SessionBudget(
        options.sessions_per_minute, clock=lambda: time.monotonic() * speed, speed=speed
    )
    open_stream = stream_factory(
        ConnectSettings(
            url=config.streaming_url,
            api_key=api_key,
            speech_model=config.speech_model,
            keyterms=options.keyterms,
            prompt=options.prompt,
        ),
        realtime_factor=options.realtime_factor,
        gate=budget,
        # After an outage live transcription resumes at the present: at most this much
        # held audio is caught up (paced at real time, it stays that far behind live);
        # the rest becomes a gap, repaired from the kept audio. Scaled with the audio
        # clock, so a fast replay allows the same wall-clock lag.
        buffers=BufferSettings(catch_up_max_s=_CATCH_UP_S * options.realtime_factor)
        if config.is_audio_kept
        else DEFAULT_BUFFERS,
    )

    audio_dir = config.audio_directory if config.is_audio_kept else None

    async def run(into: TranscriptStore) -> MeetingReport:
        recorder = MeetingRecorder(
            transport=transport,
            store=into,
            open_stream=open_stream,
            settings=settings,
            console=console,
            observer=_combine(companions),
            budget=budget,
            audio_dir=audio_dir,
            journal_dir=config.audio_directory,
            repair=_repairer(config, api_key, into, console),
        )
        if on_ready is not None:
            on_ready()
        if stop is None:
            return await recorder.run()
        watcher = asyncio.create_task(_stop_when_set(stop, recorder), name="stop-watcher")
        try:
            return await recorder.run()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    if store is not None:
        return await run(store)
    async with await TranscriptStore.open(config.database_url) as opened:
        return await run(opened)


def _repairer(config: Config, api_key: str, store: TranscriptStore, console: LiveConsole) -> Repair:
    """Repair a meeting's open gaps from its stored audio with the async API."""

    async def repair(
        meeting_id: int, *, uid: int | None = None, until_ms: int | None = None
    ) -> None:
        from recorder.audio_store.repair import repair_meeting
        from recorder.batch.client import AsyncClient

        async with AsyncClient(config.async_base_url, api_key) as client:
            outcome = await repair_meeting(
                store, meeting_id, client, say=console.info, uid=uid, until_ms=until_ms
            )
        if uid is None:  # the end of the meeting (a repair during it says what it did)
            console.info(outcome.summary())

    return repair


async def _check_key(streaming_url: str, api_key: str, console: LiveConsole) -> None:
    """Stop before joining if the service refuses the key; say so if it cannot be reached.

    Raises:
        SttRejected: the key was refused (HTTP 401/403 from the token endpoint).
    """
    from recorder.stt.connect import check_api_key

    check = await check_api_key(streaming_url, api_key)
    if check.is_verified:
        log.info("= the speech-to-text service accepted the API key")
    elif not check.is_reachable:
        console.info(
            f"! the speech-to-text service is unreachable: {check.problem}; "
            "recording anyway, transcription will keep retrying"
        )
    else:
        log.info("= the API key could not be checked: %s", check.problem)


async def _stop_when_set(stop: asyncio.Event, recorder: MeetingRecorder) -> None:
    await stop.wait()
    recorder.request_stop()


def _combine(observers: Sequence[MeetingObserver]) -> MeetingObserver | None:
    if not observers:
        return None
    if len(observers) == 1:
        return observers[0]
    return _Observers(tuple(observers))


class _Observers:
    """Several observers as one, called in order."""

    def __init__(self, observers: tuple[MeetingObserver, ...]) -> None:
        self._observers = observers

    async def started(self, context: MeetingContext) -> None:
        for observer in self._observers:
            await observer.started(context)

    def final_turn(self, turn: FinalTurn) -> None:
        for observer in self._observers:
            observer.final_turn(turn)

    def speech(self, uid: int) -> None:
        for observer in self._observers:
            observer.speech(uid)

    async def before_end(self) -> None:
        for observer in self._observers:
            await observer.before_end()

    async def stopped(self) -> None:
        # Every observer gets to release what it holds, whatever another one raised.
        for observer in self._observers:
            try:
                await observer.stopped()
            except RecorderError as exc:
                log.warning("! %s", exc)
