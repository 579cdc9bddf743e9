"""Bearer-token auth: every endpoint but health needs ``Authorization: Bearer <token>``.

Tokens are looked up by their SHA-256 (:mod:`storage.tokens`); the token itself
is never logged, stored or echoed, and every refusal is the same 401 JSON body
so a caller cannot tell a revoked token from a made-up one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recorder.service.errors import ApiError
from recorder.service.state import Service, service_of
from storage.tokens import ApiToken, authenticate, touch_token

__all__ = ["bearer", "require_token", "token_from_header"]

bearer = HTTPBearer(auto_error=False, description="A token from 'recorder tokens create'.")

_MISSING = (
    "this endpoint needs 'Authorization: Bearer <token>'; "
    "create a token with 'recorder tokens create --name NAME'"
)
# Write "last used" at most this often per token, not on every request.
_TOUCH_EVERY = timedelta(minutes=1)
_REFUSED = "the bearer token is not valid (unknown or revoked); ask for a new one"


async def token_from_header(service: Service, header: str | None) -> ApiToken:
    """Check an ``Authorization`` header value.

    Raises:
        ApiError: 401 when it is missing, not a bearer token, unknown or revoked.
    """
    if not header:
        raise ApiError(401, _MISSING)
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, _MISSING)
    found = await authenticate(service.engine, token)
    if found is None:
        raise ApiError(401, _REFUSED)
    now = datetime.now(UTC)
    if found.last_used_at is None or now - found.last_used_at > _TOUCH_EVERY:
        await touch_token(service.engine, found.id)
    return found


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiToken:
    """The FastAPI dependency: the caller's token, or a 401."""
    service = service_of(request)
    return await token_from_header(service, request.headers.get("authorization"))
