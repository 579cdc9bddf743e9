"""Keeping the Agora transport's token valid: renew before it expires, recover after.

The SDK warns about 30 s before the bot's token expires and reports when it
has. With the App Certificate the transport renews with a fresh token; if
renewing an expired one does not reconnect, it leaves and joins again
(docs/providers.md, "Agora: tokens"). Without a certificate, an expired token
ends the recording with a message that says why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from recorder.errors import RecorderError, TransportError
from recorder.transport.agora.codes import reason_name
from recorder.transport.agora.credentials import AgoraCredentials

__all__ = ["REASON_TOKEN_EXPIRED", "TokenRenewal"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: CONNECTION_CHANGED_REASON_TYPE of an expired token.
REASON_TOKEN_EXPIRED = 9


class _Host(Protocol):
    """What :class:`TokenRenewal` needs from the transport it is mixed into."""

    channel: str
    renewals: int
    rejoins: int
    _generation: int
    _closing: bool
    _conn: Any
    _credentials: AgoraCredentials
    _renew_timeout_s: float
    _connected: asyncio.Event
    _recovery: asyncio.Task[None] | None

    async def _call(self, function: Callable[..., _T], *args: Any) -> _T: ...
    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[None]: ...
    def _clock(self) -> float: ...
    def _begin_gap(self, at_ms: float, reason: str) -> None: ...
    def _end_gap(self, at_ms: float, reason: str) -> None: ...
    def _fail(self, error: TransportError, at_ms: float) -> None: ...
    def _problem(self, reason: int) -> str: ...
    async def _close_connection(self) -> None: ...
    async def _join(self, token: str) -> None: ...
    async def _renew(self) -> bool: ...
    def _start_recovery(self) -> None: ...
    async def _recover(self) -> None: ...


class TokenRenewal:
    """The token half of :class:`~recorder.transport.agora.transport.AgoraTransport`.

    A mixin: every method runs on the event loop, with the transport as
    ``self`` (typed by what it uses, :class:`_Host`).
    """

    renewals: int
    rejoins: int
    _recovery: asyncio.Task[None] | None

    def on_token_will_expire(self: _Host, generation: int) -> None:
        """Loop side of the expiry warning: renew with a fresh token."""
        if generation != self._generation or self._closing:
            return
        if not self._credentials.can_renew:
            log.warning(
                "! the agora token expires in about 30 s and cannot be renewed without "
                "AGORA_APP_CERTIFICATE; the recording will stop then"
            )
            return
        self._spawn(self._renew(), "agora-renew-token")

    async def _renew(self: _Host) -> bool:
        conn = self._conn
        if conn is None or self._closing:
            return False
        try:
            result = await self._call(conn.renew_token, self._credentials.fresh_token())
        except TransportError as exc:
            log.warning("! agora token renewal failed: %s", exc)
            return False
        if result != 0:
            log.warning("! agora token renewal refused (result %s)", result)
            return False
        self.renewals += 1
        log.info("= agora token renewed for channel %s", self.channel)
        return True

    def on_token_did_expire(self: _Host, generation: int) -> None:
        """Loop side of an expired token: recover, or fail without a certificate."""
        if generation != self._generation or self._closing:
            return
        if not self._credentials.can_renew:
            self._fail(
                TransportError(f"the bot left the meeting: {self._problem(REASON_TOKEN_EXPIRED)}"),
                self._clock(),
            )
            return
        self._begin_gap(self._clock(), reason_name(REASON_TOKEN_EXPIRED))
        self._start_recovery()

    def _start_recovery(self: _Host) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = self._spawn(self._recover(), "agora-token-recovery")

    async def _recover(self: _Host) -> None:
        """Renew once; if still not connected, leave and join again."""
        try:
            if await self._renew():
                try:
                    async with asyncio.timeout(self._renew_timeout_s):
                        await self._connected.wait()
                    return
                except TimeoutError:
                    log.warning("! renewing the expired agora token did not reconnect; rejoining")
            if self._closing:
                return
            self.rejoins += 1
            await self._close_connection()
            await self._join(self._credentials.fresh_token())
            self._end_gap(self._clock(), "rejoined")
        except RecorderError as exc:
            self._fail(
                TransportError(f"the bot could not rejoin after its token expired: {exc}"),
                self._clock(),
            )
        finally:
            self._recovery = None
