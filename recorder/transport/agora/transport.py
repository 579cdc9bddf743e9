"""The Agora transport: a silent bot in a real channel, through agora-python-server-sdk.

The SDK is https://pypi.org/project/agora-python-server-sdk/. This joins as
docs/providers.md, "Agora: service and connections" describes (one service
per process, one connection per meeting, audience role unless publishing,
16 kHz mono frames before mixing, SDK VAD off, observers registered once) and
tears down in the order it gives; turns the SDK's callbacks into transport
events; keeps the token valid through :class:`~.renewal.TokenRenewal`. The SDK
runs only on its own threads and in ``asyncio.to_thread``; the one crossing
into asyncio is :class:`~recorder.transport.bridge.AudioBridge` plus rare
event hops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from recorder.errors import JoinError, RecorderError, TransportError
from recorder.transport.agora.codes import (
    TRANSIENT_REASONS,
    connect_result_problem,
    reason_name,
    reason_problem,
    validate_channel_name,
    validate_uid,
)
from recorder.transport.agora.credentials import AgoraCredentials
from recorder.transport.agora.handler import NativeHandler, Participants
from recorder.transport.agora.observers import Observers, make_observers
from recorder.transport.agora.preflight import AgoraSdk, load_agora_sdk
from recorder.transport.agora.publish import DEFAULT_LEAD_MS, PcmPublisher
from recorder.transport.agora.renewal import REASON_TOKEN_EXPIRED, TokenRenewal
from recorder.transport.agora.service import (
    create_connection,
    prepare_connection,
    release_agora_service,
)
from recorder.transport.agora.tap import (
    LinearClock,
    NativeAudioBridge,
    TapRegistration,
    binding_module,
    load_tap,
    make_bridge,
)
from recorder.transport.base import (
    ConnectionState,
    ConnectionStateChanged,
    Transport,
    TransportSink,
)
from recorder.transport.bridge import DEFAULT_FILL_GAPS_AFTER_MS, AudioBridge

__all__ = ["AgoraTransport", "release_agora_service"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# CONNECTION_STATE_TYPE, client roles and reasons (docs/providers.md, "Agora: events and codes").
_DISCONNECTED = 1
_ROLE_BROADCASTER, _ROLE_AUDIENCE = 1, 2
_REASON_LEAVE_CHANNEL = 5


class AgoraTransport(TokenRenewal, Transport):
    """Records one Agora channel as a silent audience member (or a host, to publish).

    Settings are validated here, before the SDK is touched.

    Args:
        app_id: the project's App ID (32 hex characters).
        channel: the channel to join (docs/providers.md, "Agora: service and connections").
        bot_uid: the bot's numeric uid (1 to 2**32-1).
        app_certificate: builds tokens and renews them (secret).
        token: a prebuilt token to join with (secret); renewed only with a certificate.
        publish: join as a host able to publish audio (the spoken recap).
        join_timeout_s: bound on waiting for ``on_connected``.
        call_timeout_s: bound on each blocking SDK call.
        leave_timeout_s: bound on waiting for ``on_disconnected`` when leaving.
        renew_timeout_s: after renewing an expired token, wait this long before rejoining.
        token_lifetime_s: lifetime of the tokens built from the certificate.
        publish_lead_ms: most recap audio pushed ahead of the wall clock.
        log_dir: where the SDK writes its log (default: the user log directory).
        sdk: the SDK modules (default: :func:`load_agora_sdk` at start).
        clock_ms: milliseconds since the transport started (tests may scale time); the
            native tap follows only a :class:`~.tap.LinearClock` (else the Python observer).
        fill_gaps_after_ms: a participant's frames missing this long (on ``clock_ms``)
            are silence; None turns it off.
    """

    def __init__(
        self,
        *,
        app_id: str,
        channel: str,
        bot_uid: int,
        app_certificate: str | None = None,
        token: str | None = None,
        publish: bool = False,
        join_timeout_s: float = 15.0,
        call_timeout_s: float = 10.0,
        leave_timeout_s: float = 3.0,
        renew_timeout_s: float = 10.0,
        token_lifetime_s: int = 3600,
        publish_lead_ms: float = DEFAULT_LEAD_MS,
        log_dir: Path | None = None,
        sdk: AgoraSdk | None = None,
        clock_ms: Callable[[], float] | None = None,
        fill_gaps_after_ms: float | None = DEFAULT_FILL_GAPS_AFTER_MS,
    ) -> None:
        self.channel = validate_channel_name(channel)
        self.bot_uid = validate_uid(bot_uid)
        self.publish_enabled = publish
        self._role = _ROLE_BROADCASTER if publish else _ROLE_AUDIENCE
        self._credentials = AgoraCredentials(
            app_id=app_id,
            channel=self.channel,
            uid=self.bot_uid,
            app_certificate=app_certificate,
            token=token,
            is_publisher=publish,
            lifetime_s=token_lifetime_s,
        )
        self.token_source = self._credentials.source
        self._join_timeout_s = join_timeout_s
        self._call_timeout_s = call_timeout_s
        self._leave_timeout_s = leave_timeout_s
        self._renew_timeout_s = renew_timeout_s
        self._log_dir = log_dir
        self._sdk = sdk
        self._clock_override = clock_ms
        self._fill_gaps_after_ms = fill_gaps_after_ms
        self._origin = time.monotonic()
        self._publisher = PcmPublisher(lead_ms=publish_lead_ms)
        self.bridge: AudioBridge | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: Any = None
        self._observers: Observers | None = None
        self._handler: NativeHandler | None = None
        self._generation = 0
        self._joined: asyncio.Future[None] | None = None
        self._finished: asyncio.Future[None] | None = None
        self._disconnected = asyncio.Event()
        self._connected = asyncio.Event()
        self.participants = Participants()
        self._is_published = False
        self._closing = False
        self._frames: TapRegistration | None = None
        self._tap_bindings: Any = None
        self._stop_task: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._gap_started_ms: float | None = None
        self.gaps: list[tuple[float, float]] = []
        self.renewals = 0
        self.rejoins = 0
        self._retired_errors = 0
        self.sid = ""

    def __repr__(self) -> str:
        return f"AgoraTransport(channel={self.channel!r}, bot_uid={self.bot_uid})"

    def clock_ms(self) -> float:
        """Milliseconds since the transport started (tests may scale time)."""
        return self._clock()

    def _clock(self) -> float:
        if self._clock_override is not None:
            return self._clock_override()
        return (time.monotonic() - self._origin) * 1000.0

    def load_sdk(self) -> None:
        """Import the SDK now (``start`` does it too); call it early for a clear install message.

        Raises:
            TransportUnavailable: the Agora extra or its native library is missing.
        """
        if self._sdk is None:
            self._sdk = load_agora_sdk()

    # -- Transport ------------------------------------------------------------

    async def start(self, sink: TransportSink) -> None:
        """Join the channel and wait (bounded) until Agora confirms it.

        Raises:
            JoinError: the join failed; the message names the reason and the fix.
            TransportUnavailable: the SDK is not installed.
        """
        self._loop = asyncio.get_running_loop()
        self._origin = time.monotonic()
        self.load_sdk()
        assert self._sdk is not None
        # The native tap when it is built and the wrapper has the raw binding
        # (docs/providers.md, "Agora: the native tap"); else the Python observer.
        tap = load_tap()
        self._tap_bindings = binding_module(self._sdk.base) if tap is not None else None
        clock = self._clock_override or LinearClock(self._origin)
        # Whether Agora sends frames while an unmuted participant is silent is
        # unconfirmed: a gap in someone's frames is silence (docs/providers.md,
        # "Agora: the stand-in").
        self.bridge = make_bridge(
            self._loop,
            sink,
            clock=clock,
            fill_gaps_after_ms=self._fill_gaps_after_ms,
            tap_module=tap if self._tap_bindings is not None else None,
        )
        self._finished = self._loop.create_future()
        self.bridge.push_event(ConnectionStateChanged(ConnectionState.CONNECTING, self._clock()))
        try:
            await self._join(self._credentials.join_token())
        except BaseException:
            # A failed or cancelled join (Ctrl+C) still leaves the channel cleanly.
            await self._shielded_stop()
            raise
        self.bridge.push_event(
            ConnectionStateChanged(ConnectionState.CONNECTED, self._clock(), "joined")
        )

    async def wait_finished(self) -> None:
        """Wait until the bot is stopped; raise if the channel failed under it.

        Raises:
            TransportError: kicked, banned, or the token expired beyond recovery.
        """
        assert self._finished is not None, "start() first"
        await asyncio.shield(self._finished)

    async def stop(self) -> None:
        """Leave the channel, in the SDK's teardown order; safe to call more than once."""
        await self._shielded_stop()

    async def publish(self, pcm: bytes) -> None:
        """Speak PCM16 16 kHz mono into the channel, paced to the wall clock.

        Raises:
            TransportError: the bot joined as audience, or is not in the channel.
        """
        if not self.publish_enabled or self._role != _ROLE_BROADCASTER:
            # Refused here: an audience's audio reaches nobody (docs/providers.md,
            # "Agora: audio frames").
            raise TransportError(
                f"the bot is an audience member of channel {self.channel!r} and cannot speak; "
                "join with publishing enabled (--recap) to play audio"
            )
        conn = self._conn
        if conn is None or self._closing:
            raise TransportError(f"the bot is not in channel {self.channel!r}; cannot play audio")
        if not self._is_published:
            result = await self._call(conn.publish_audio)
            if result != 0:
                raise TransportError(
                    f"the Agora SDK could not publish the bot's audio (result {result})"
                )
            self._is_published = True
        if conn is not self._conn:  # left (or rejoined) meanwhile: never touch the old one
            raise TransportError(f"the bot left channel {self.channel!r}; cannot play audio")
        await self._publisher.publish(conn, pcm)

    def flush_publish(self) -> None:
        """Drop queued recap audio at once (barge-in)."""
        self._publisher.flush(self._conn if self._is_published else None)

    @property
    def callback_errors(self) -> int:
        """Our SDK callbacks that raised (bugs), counted and logged, never re-raised."""
        current = self._handler.callback_errors if self._handler is not None else 0
        bridge = self.bridge.callback_errors if self.bridge is not None else 0
        return self._retired_errors + current + bridge

    @property
    def publish_backlog_ms(self) -> float:
        """Recap audio pushed to the SDK and (by estimate) not yet played."""
        return self._publisher.queued_ms

    @property
    def publish_played_ms(self) -> float:
        """Recap audio pushed to the SDK that (by estimate) has played."""
        return self._publisher.played_ms

    async def wait_played(self, backlog_ms: float = 0.0) -> None:
        """Sleep until the recap audio pushed has played down to ``backlog_ms``; wake on a flush."""
        await self._publisher.wait_played(backlog_ms)

    @property
    def dropped_audio_ms(self) -> Mapping[int, float]:
        """Audio the bridge dropped because the loop fell behind, ms per uid."""
        return self.bridge.dropped_ms if self.bridge is not None else {}

    # -- joining --------------------------------------------------------------

    async def _call(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run a possibly blocking SDK call off the loop, bounded."""
        name = getattr(function, "__name__", "call")
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a Ctrl+C
            # that lands as the call returns.
            async with asyncio.timeout(self._call_timeout_s):
                return await asyncio.to_thread(function, *args)
        except TimeoutError:
            raise TransportError(
                f"the Agora SDK did not return from {name} within {self._call_timeout_s:.0f} s"
            ) from None

    async def _join(self, token: str) -> None:
        sdk = self._sdk
        assert sdk is not None and self.bridge is not None and self._loop is not None
        from platformdirs import user_log_path

        log_dir = self._log_dir or user_log_path("recorder", appauthor=False) / "agora"
        conn = await create_connection(
            self._call,
            sdk,
            app_id=self._credentials.app_id,
            log_dir=log_dir,
            publish=self.publish_enabled,
        )
        if self._closing:  # stopped while the connection was being made
            await self._call(conn.release)
            raise JoinError(f"stopped while joining channel {self.channel!r}")
        self._generation += 1
        handler = NativeHandler(
            self, self._generation, self.bridge, self.participants, self.bot_uid
        )
        self._handler = handler
        self._observers = observers = make_observers(sdk, handler, self.bridge.push_frame)
        if isinstance(self.bridge, NativeAudioBridge) and self._tap_bindings is not None:
            self._frames = TapRegistration(self.bridge, conn.get_local_user(), self._tap_bindings)
        self._conn = conn
        self._is_published = False
        self._disconnected.clear()
        self._connected.clear()
        self._joined = self._loop.create_future()
        await prepare_connection(self._call, conn, observers, self._frames)
        result = await self._call(conn.connect, token, self.channel, str(self.bot_uid))
        if result != 0:
            raise JoinError(connect_result_problem(result, channel=self.channel))
        try:
            async with asyncio.timeout(self._join_timeout_s):
                await asyncio.shield(self._joined)
        except TimeoutError:
            raise JoinError(
                f"no answer from Agora within {self._join_timeout_s:.0f} s while joining "
                f"channel {self.channel!r}; check this machine can reach Agora "
                "(outbound UDP and TCP) and that AGORA_APP_ID is right"
            ) from None
        try:
            self.sid = str(await self._call(conn.get_sid))
        except (RecorderError, AttributeError):
            self.sid = ""
        log.info(
            "= joined agora channel %s as uid %d (%s, sid %s, frames via %s)",
            self.channel,
            self.bot_uid,
            "host" if self.publish_enabled else "audience",
            self.sid or "unknown",
            "the native tap" if self._frames is not None else "the Python observer",
        )

    # -- events on the loop -----------------------------------------------------

    def hop(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` on the loop; from an SDK thread, never raising."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed: we are shutting down
            pass

    def _push_state(self, state: ConnectionState, at_ms: float, reason: str) -> None:
        assert self.bridge is not None
        self.bridge.push_event(ConnectionStateChanged(state, at_ms, reason))

    def _begin_gap(self, at_ms: float, reason: str) -> None:
        if self._gap_started_ms is not None or self._closing:
            return
        self._gap_started_ms = at_ms
        self._connected.clear()
        self._flush_audio()
        log.warning("! agora connection to %s interrupted (%s)", self.channel, reason)
        self._push_state(ConnectionState.RECONNECTING, at_ms, reason)

    def _flush_audio(self) -> None:
        """Deliver what each participant gathered so far (their audio stops here)."""
        if self.bridge is None:
            return
        for uid in self.participants.present():
            self.bridge.end_audio(uid)

    def _end_gap(self, at_ms: float, reason: str) -> None:
        self._connected.set()
        if self._gap_started_ms is None:
            return
        self.gaps.append((self._gap_started_ms, at_ms))
        log.info(
            "= agora connection to %s back after %.1f s",
            self.channel,
            (at_ms - self._gap_started_ms) / 1000,
        )
        self._gap_started_ms = None
        self._push_state(ConnectionState.CONNECTED, at_ms, reason)

    def on_connection(self, generation: int, what: str, reason: int | None, at_ms: float) -> None:
        """Loop side of a connection callback: joins, gaps, failures."""
        if generation != self._generation:
            return  # a late callback of a connection we already left
        why = reason_name(reason) if reason is not None else what
        log.debug("= agora %s (%s)", what, why)
        joining = self._joined is not None and not self._joined.done()
        if what in ("connected", "reconnected"):
            if joining:
                assert self._joined is not None
                self._joined.set_result(None)
            self._end_gap(at_ms, "reconnected" if what == "reconnected" else why)
            self._connected.set()
        elif what in ("reconnecting", "lost", "connecting"):
            if what != "connecting" or self._gap_started_ms is not None:
                self._begin_gap(at_ms, why)
        elif what == "failure" and reason is not None:
            self._on_failure(reason, at_ms, joining)
        elif what == "disconnected":
            self._disconnected.set()
            if joining and reason is not None and reason != _REASON_LEAVE_CHANNEL:
                self._on_failure(reason, at_ms, joining)
            elif not self._closing and not joining and self._recovery is None:
                self._fail(
                    TransportError(
                        f"Agora disconnected the bot from channel {self.channel!r} "
                        f"({why}); the transcript so far is kept"
                    ),
                    at_ms,
                )

    def _problem(self, reason: int) -> str:
        return reason_problem(
            reason, channel=self.channel, uid=self.bot_uid, token_source=self.token_source
        )

    def _on_failure(self, reason: int, at_ms: float, joining: bool) -> None:
        if joining:
            assert self._joined is not None
            self._joined.set_exception(JoinError(self._problem(reason)))
            self._joined.exception()  # start() reads it; never "never retrieved"
            return
        if reason in TRANSIENT_REASONS:
            self._begin_gap(at_ms, reason_name(reason))
        elif reason == REASON_TOKEN_EXPIRED and self._credentials.can_renew:
            self._begin_gap(at_ms, reason_name(reason))
            self._start_recovery()
        else:
            self._fail(TransportError(f"the bot left the meeting: {self._problem(reason)}"), at_ms)

    def _fail(self, error: TransportError, at_ms: float) -> None:
        """A fatal failure mid-meeting: end every participant's audio and raise in wait_finished."""
        if self._closing or self._finished is None or self._finished.done():
            return
        log.error("! %s", error)
        self._flush_audio()
        self._push_state(ConnectionState.FAILED, at_ms, str(error))
        self._finished.set_exception(error)

    def on_role_changed(self, generation: int, new_role: int, at_ms: float) -> None:
        """Loop side of the bot's role change: a ConnectionStateChanged saying so."""
        if generation != self._generation:
            return
        self._role = new_role
        name = "host" if new_role == _ROLE_BROADCASTER else "audience"
        self._push_state(ConnectionState.CONNECTED, at_ms, f"role changed to {name}")

    # -- tasks ----------------------------------------------------------------------

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- leaving (docs/providers.md, "Agora: service and connections") ---------------

    async def _shielded_stop(self) -> None:
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())
            self._stop_task.set_name("agora-stop")
        await asyncio.shield(self._stop_task)

    async def _stop(self) -> None:
        self._closing = True
        self._publisher.flush(None)
        joined = self._joined
        if joined is not None and not joined.done():  # stop() during start(): give up the join
            joined.set_exception(JoinError(f"stopped while joining channel {self.channel!r}"))
            joined.exception()
        recovery = self._recovery
        if recovery is not None and recovery is not asyncio.current_task():
            recovery.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_connection()
        self._flush_audio()
        if self.bridge is not None:
            self.bridge.push_event(
                ConnectionStateChanged(ConnectionState.DISCONNECTED, self._clock(), "left")
            )
            if isinstance(self.bridge, NativeAudioBridge):
                self.bridge.close()
        finished = self._finished
        if finished is not None:
            if not finished.done():
                finished.set_result(None)
            elif not finished.cancelled():
                finished.exception()  # the bot may have stopped without awaiting it

    async def _close_connection(self) -> None:
        """Unpublish, disconnect, wait for on_disconnected, release; never touch it again."""
        conn, self._conn = self._conn, None
        handler, self._handler = self._handler, None
        if handler is not None:
            self._retired_errors += handler.callback_errors
        if conn is None:
            return
        # A publish() in progress stops before its next push: this connection is going.
        self._publisher.flush(None)
        frames, self._frames = self._frames, None
        try:
            if frames is not None:  # ours, not the wrapper's: it would not unregister it
                await self._call(frames.unregister)
            if self._is_published:
                self._is_published = False
                await self._call(conn.unpublish_audio)
            await self._call(conn.disconnect)
        except TransportError as exc:
            # The SDK is stuck inside this connection: releasing it now could crash.
            log.error("! %s; the agora connection is abandoned, not released", exc)
            return
        if handler is not None and handler.state not in (0, _DISCONNECTED):
            try:
                async with asyncio.timeout(self._leave_timeout_s):
                    await self._disconnected.wait()
            except TimeoutError:
                log.warning("! agora did not confirm leaving %s; releasing anyway", self.channel)
        try:
            await self._call(conn.release)
        except TransportError as exc:
            log.error("! %s", exc)
        # Observers die with the connection, only after release returned.
        self._observers = None
        self._generation += 1
