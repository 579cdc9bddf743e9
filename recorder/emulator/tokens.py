"""Temporary tokens the emulators hand out: one session each, expiring, with a session cap.

Both services issue them the same way (docs/providers.md, "Streaming: connecting" and
"Voice Agent: protocol"): ``expires_in_seconds`` 1-600 and
``max_session_duration_seconds`` 60-10800 in the query, a token good for one
session before it expires.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

__all__ = ["Redemption", "TokenBook"]


@dataclass(slots=True)
class _Token:
    expires_at: float
    session_cap_s: float
    is_used: bool = False


@dataclass(frozen=True, slots=True)
class Redemption:
    """What presenting a credential as a token gave.

    Attributes:
        is_valid: it was an unused, unexpired token (now used up).
        session_cap_s: the token's cap on the session's length.
    """

    is_valid: bool
    session_cap_s: float


class TokenBook:
    """Issues and redeems temporary tokens.

    Args:
        clock: monotonic seconds (the emulator's clock, so tests can move time).
        respond: builds a JSON HTTP response (status, body) on a connection.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        respond: Callable[[ServerConnection, int, dict[str, Any]], Response],
    ) -> None:
        self._clock = clock
        self._respond = respond
        self._tokens: dict[str, _Token] = {}

    def issue(self, connection: ServerConnection, request: Request) -> Response:
        """Answer a token request whose API key the caller has already checked."""
        query = dict(parse_qsl(urlsplit(request.path).query))
        try:
            expires_in = int(query["expires_in_seconds"])
            session_cap = int(query.get("max_session_duration_seconds", "10800"))
        except (KeyError, ValueError):
            return self._respond(connection, 400, {"error": "expires_in_seconds is required"})
        if not 1 <= expires_in <= 600:
            return self._respond(connection, 400, {"error": "expires_in_seconds: 1-600"})
        if not 60 <= session_cap <= 10800:
            return self._respond(
                connection, 400, {"error": "max_session_duration_seconds: 60-10800"}
            )
        token = secrets.token_urlsafe(24)
        self._tokens[token] = _Token(self._clock() + expires_in, float(session_cap))
        return self._respond(connection, 200, {"token": token, "expires_in_seconds": expires_in})

    def redeem(self, credential: str) -> Redemption | None:
        """Use ``credential`` as a token; None when it is not one this book issued."""
        token = self._tokens.get(credential)
        if token is None:
            return None
        if token.is_used or self._clock() > token.expires_at:
            return Redemption(False, token.session_cap_s)
        token.is_used = True
        return Redemption(True, token.session_cap_s)
