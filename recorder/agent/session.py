"""The asyncio driver of one Voice Agent session: connect, configure, reply, end, close.

It moves frames between a ``websockets`` client socket and the sans-I/O
:class:`~recorder.agent.protocol.AgentProtocol`, bounds every wait, and turns
every failure into :class:`~recorder.errors.AgentError` at one seam
(:func:`map_exceptions`). Sessions bill on open time (docs/providers.md,
"Voice Agent: protocol"), so a caller opens one per use and it is always
ended with ``session.end``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.protocol import State as WsState

from recorder.agent.protocol import (
    Action,
    AgentProtocol,
    Closed,
    Event,
    SessionConfig,
    SessionEnded,
    SessionError,
    SessionReady,
    State,
)
from recorder.agent.timeouts import AgentTimeouts
from recorder.errors import AgentError
from recorder.wirelog import wire_logger

__all__ = [
    "MAPPED_EXCEPTIONS",
    "AgentSession",
    "map_exceptions",
    "open_session",
]

log = logging.getLogger("recorder.agent")

#: Every foreign exception :func:`map_exceptions` translates (a test raises each one).
MAPPED_EXCEPTIONS: tuple[type[BaseException], ...] = (
    InvalidStatus,
    InvalidURI,
    InvalidHandshake,
    ConnectionClosed,
    WebSocketException,
    TimeoutError,
    OSError,
)

_KEY_HINT = "check ASSEMBLYAI_API_KEY"


def _status_error(exc: InvalidStatus) -> AgentError:
    status = exc.response.status_code
    if status in (401, 403):
        return AgentError(
            f"the voice agent service rejected the API key (HTTP {status}); {_KEY_HINT}"
        )
    if status == 429 or status >= 500:
        return AgentError(
            f"the voice agent service is unavailable (HTTP {status}); try the recap again later"
        )
    return AgentError(
        f"the voice agent service refused the connection (HTTP {status}); check the URL"
    )


@contextlib.contextmanager
def map_exceptions(doing: str) -> Iterator[None]:
    """Translate foreign exceptions raised inside the block into :class:`AgentError`.

    Args:
        doing: what the block was doing, for the message ("connecting to ws://...").

    Raises:
        AgentError: for every exception in :data:`MAPPED_EXCEPTIONS`; others pass
            through (they are bugs, and keep their traceback).
    """
    try:
        yield
    except AgentError:
        raise
    except InvalidStatus as exc:
        raise _status_error(exc) from exc
    except InvalidURI as exc:
        raise AgentError(f"the voice agent URL is not a WebSocket URL: {exc.uri}") from exc
    except InvalidHandshake as exc:
        raise AgentError(f"the voice agent handshake failed while {doing}: {exc}") from exc
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        raise AgentError(
            f"the voice agent connection closed (code {code}) while {doing}; try the recap again"
        ) from exc
    except WebSocketException as exc:
        raise AgentError(f"the voice agent connection failed while {doing}: {exc}") from exc
    except TimeoutError as exc:
        raise AgentError(f"the voice agent did not answer in time while {doing}") from exc
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise AgentError(
            f"cannot reach the voice agent service while {doing} ({reason}); check the URL "
            "and the network"
        ) from exc


def _error_message(error: SessionError) -> str:
    detail = error.message.rstrip(". ") or "no details"
    param = f" ({error.param})" if error.param else ""
    text = f"the voice agent service reported {error.code}{param}: {detail}"
    action = error.action
    if error.code.lower() in ("unauthorized", "forbidden"):
        return f"{text}; {_KEY_HINT}"
    if action is Action.RETRY or action is Action.NEW_SESSION:
        return f"{text}; try the recap again"
    return text


def _closed_message(event: Closed, doing: str) -> str:
    code = "no close frame" if event.code is None else f"code {event.code}"
    if event.action is Action.RETRY:
        return f"the voice agent connection dropped ({code}) while {doing}; try the recap again"
    reason = f": {event.reason}" if event.reason else ""
    return f"the voice agent closed the session ({code}{reason}) while {doing}"


class _Timeout(AgentError):
    """Nothing arrived in time (an :class:`AgentError` to everyone outside this module)."""


class AgentSession:
    """One open, ready Voice Agent session; get one from :func:`open_session`.

    Attributes:
        session_id: the server's ``session_id``.
        ended: the ``session.ended`` event, once received.
        drained: events that arrived while :meth:`end` waited for ``session.ended``.
    """

    def __init__(self, connection: ClientConnection, timeouts: AgentTimeouts) -> None:
        self._ws = connection
        self._timeouts = timeouts
        self._protocol = AgentProtocol()
        self._pending: list[Event] = []
        self.session_id: str | None = None
        self.ended: SessionEnded | None = None
        self.drained: list[Event] = []

    def __repr__(self) -> str:
        return f"<AgentSession {self.session_id or 'opening'} {self._protocol.state.value}>"

    @property
    def is_open(self) -> bool:
        """Whether the socket is still open (not yet closed by either side)."""
        return self._protocol.state is not State.CLOSED

    async def configure(
        self, config: SessionConfig, *, cancel: asyncio.Event | None = None
    ) -> str | None:
        """Send the first ``session.update`` and wait (bounded) for ``session.ready``.

        Args:
            config: the session configuration.
            cancel: stop waiting as soon as it is set.

        Returns:
            The session id, or None if ``cancel`` was set first.

        Raises:
            AgentError: an error instead of ``session.ready``, a close, or a timeout.
        """
        self._protocol.send_session_update(config)
        await self._flush("configuring the session")
        deadline = asyncio.get_running_loop().time() + self._timeouts.ready_s
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            event = await self._next(remaining, "waiting for session.ready", cancel)
            if event is None:
                return None
            if isinstance(event, SessionReady):
                self.session_id = event.session_id
                log.debug("= voice agent session %s ready", event.session_id)
                return event.session_id

    async def create_reply(self, instructions: str | None = None) -> None:
        """Send ``reply.create``: ask for a reply now."""
        self._protocol.send_reply_create(instructions)
        await self._flush("asking for a reply")

    async def next_event(
        self,
        timeout_s: float,
        *,
        cancel: asyncio.Event | None = None,
        doing: str = "replying",
        is_optional: bool = False,
    ) -> Event | None:
        """Return the next event, or None as soon as ``cancel`` is set.

        Errors the server tolerates (``invalid_format``, ``immutable_field``...) are
        logged and returned; every other ``session.error`` and any close raise.

        Args:
            timeout_s: how long to wait for it.
            cancel: an event that interrupts the wait.
            doing: what the caller is waiting for, for error messages.
            is_optional: return None instead of raising when nothing arrives in time.

        Raises:
            AgentError: a fatal ``session.error``, a close, or a timeout.
        """
        try:
            return await self._next(timeout_s, doing, cancel)
        except _Timeout:
            if is_optional:
                return None
            raise

    async def end(self) -> SessionEnded | None:
        """Send ``session.end``, wait (bounded) for ``session.ended``, and close.

        Safe to call more than once and after a failure; never raises
        :class:`AgentError` (problems are logged), so it can run in cleanup.

        Returns:
            The ``session.ended`` event, or None if it did not arrive.
        """
        try:
            if self.is_open and self.ended is None and self._ws.state is WsState.OPEN:
                if self._protocol.state is not State.ENDING:
                    self._protocol.send_session_end()
                    await self._flush("ending the session")
                deadline = asyncio.get_running_loop().time() + self._timeouts.end_s
                while self.ended is None:
                    remaining = deadline - asyncio.get_running_loop().time()
                    event = await self._next(remaining, "waiting for session.ended", None)
                    if event is not None:
                        self.drained.append(event)
        except AgentError as exc:
            log.warning("! voice agent session %s did not end cleanly: %s", self.session_id, exc)
        finally:
            await self.close()
        return self.ended

    async def close(self) -> None:
        """Close the socket (bounded by ``close_s``); never raises."""
        with contextlib.suppress(WebSocketException, OSError, TimeoutError):
            async with asyncio.timeout(self._timeouts.close_s):
                await self._ws.close()
        if self.is_open:
            self._protocol.receive_close(self._ws.close_code, self._ws.close_reason or "")

    @property
    def close_code(self) -> int | None:
        """The close code once closed (None for a drop)."""
        return self._ws.close_code

    async def _flush(self, doing: str) -> None:
        try:
            with map_exceptions(doing):
                for frame in self._protocol.data_to_send():
                    await self._ws.send(frame)
        except AgentError as exc:
            if not isinstance(exc.__cause__, ConnectionClosed):
                raise
            # The server closed first; what it said before closing (a session.error,
            # say) is still to be read and explains it better.
            log.debug("= voice agent socket closed before a send while %s", doing)

    async def _next(
        self, timeout_s: float, doing: str, cancel: asyncio.Event | None
    ) -> Event | None:
        while not self._pending:
            if cancel is not None and cancel.is_set():
                return None
            if not self.is_open:
                raise AgentError(f"the voice agent session is closed; cannot keep {doing}")
            if timeout_s <= 0:
                raise _Timeout(f"the voice agent did not answer in time while {doing}")
            frame = await self._receive(timeout_s, doing, cancel)
            if frame is None:
                return None
            self._pending.extend(self._protocol.events_received())
        event = self._pending.pop(0)
        if isinstance(event, SessionEnded):
            self.ended = event
        elif isinstance(event, SessionError):
            if event.action is Action.LOG:
                log.warning("! voice agent error %s: %s", event.code, event.message)
            else:
                raise AgentError(_error_message(event))
        elif isinstance(event, Closed) and event.action is not Action.DONE:
            raise AgentError(_closed_message(event, doing))
        return event

    async def _receive(
        self, timeout_s: float, doing: str, cancel: asyncio.Event | None
    ) -> bool | None:
        """Read one frame into the protocol; None if ``cancel`` was set first."""
        recv = asyncio.create_task(self._ws.recv(), name="agent-recv")
        waiters: set[asyncio.Future[Any]] = {recv}
        canceller: asyncio.Task[bool] | None = None
        if cancel is not None:
            canceller = asyncio.create_task(cancel.wait(), name="agent-cancel-wait")
            waiters.add(canceller)
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if canceller is not None:
                canceller.cancel()
            if not recv.done():
                # websockets' recv() is cancellation-safe: no message is lost.
                recv.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await recv
        if recv in done:
            try:
                with map_exceptions(doing):
                    frame = recv.result()
            except AgentError as exc:
                if not isinstance(exc.__cause__, ConnectionClosed):
                    raise
                self._protocol.receive_close(self._ws.close_code, self._ws.close_reason or "")
                return True
            if isinstance(frame, str):
                self._protocol.receive_text(frame)
            else:
                self._protocol.receive_bytes(frame)
            return True
        if canceller is not None and canceller in done:
            return None
        raise _Timeout(f"the voice agent did not answer in time while {doing}")


@contextlib.asynccontextmanager
async def open_session(
    url: str,
    api_key: str,
    config: SessionConfig,
    *,
    timeouts: AgentTimeouts | None = None,
    cancel: asyncio.Event | None = None,
) -> AsyncIterator[AgentSession]:
    """Connect, configure and wait for ``session.ready``; end and close on exit.

    The key goes in ``Authorization: Bearer <key>``; unlike streaming STT, the
    prefix is required
    (https://www.assemblyai.com/docs/api-reference/voice-agent-api/voice-agent-web-socket).
    The block's exit always sends ``session.end`` and waits for ``session.ended``
    (bounded), even after a failure, because a socket closed without it keeps
    billing for 30 s (docs/providers.md, "Voice Agent: protocol").

    Args:
        url: ``wss://agents.assemblyai.com/v1/ws`` or an emulator's URL.
        api_key: the AssemblyAI API key (never logged).
        config: the first ``session.update``.
        timeouts: bounds on every wait.
        cancel: stop waiting for ``session.ready`` when it is set; the session
            is then yielded not ready (``session_id`` None).

    Yields:
        The ready session (or, if cancelled first, the one not yet ready).

    Raises:
        AgentError: anything went wrong (a clear one-line message).
    """
    timeouts = timeouts or AgentTimeouts()
    if not api_key:
        raise AgentError(f"no AssemblyAI API key for the voice agent; {_KEY_HINT}")
    doing = f"connecting to {url}"
    with map_exceptions(doing):
        async with asyncio.timeout(timeouts.connect_s):
            connection = await connect(
                url,
                additional_headers={"Authorization": f"Bearer {api_key}"},
                # JSON with base64 audio: deflate costs CPU for little (docs/architecture.md,
                # "Decisions and measurements").
                compression=None,
                open_timeout=timeouts.connect_s,
                close_timeout=timeouts.close_s,
                logger=_ws_logger,
            )
    session = AgentSession(connection, timeouts)
    try:
        await session.configure(config, cancel=cancel)
        yield session
    finally:
        await session.end()


# websockets logs every handshake header at DEBUG; keys must never reach a log.
_ws_logger = wire_logger("recorder.agent.websocket")
