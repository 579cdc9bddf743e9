"""A small request router for the emulators' plain HTTP endpoints.

A :class:`Router` answers the paths under its ``prefix`` (``/v2`` for the async API,
``/v1`` for the LLM Gateway) from routes like ``GET /v2/transcript/{id}``, and may
``mount`` other apps: the emulators' shared server is a router with every emulator's
router mounted in it. A path's ``{name}`` segments reach the handler as
``request.params``. Anything the server does before routing (auth, rate limits, faults)
stays in the emulator that owns it, as a handler wrapped around its router.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from recorder.emulator.http import (
    DEFAULT_MAX_BODY_BYTES,
    HttpApp,
    HttpHandler,
    HttpRequest,
    HttpResponse,
    text_reply,
)

__all__ = ["Router"]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    segments: tuple[str, ...]
    handler: HttpHandler

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for pattern, part in zip(self.segments, parts, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                params[pattern[1:-1]] = part
            elif pattern != part:
                return None
        return params


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _split(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


class Router:
    """Routes requests under ``prefix`` to handlers by method and path pattern.

    Args:
        prefix: the paths this router answers (``"/v2"``: ``/v2`` and everything under it);
            None answers only what its mounted apps claim.
        exclude: paths under ``prefix`` (and everything under them) left to others: the
            WebSocket endpoints.
        not_found: the answer when no route has the path.
        method_not_allowed: the answer when a route has the path but not the method
            (default: ``not_found``, as the async API answers).
        max_body_bytes: the largest request body its own routes take (413 beyond).
    """

    def __init__(
        self,
        prefix: str | None = None,
        *,
        exclude: Iterable[str] = (),
        not_found: HttpResponse | None = None,
        method_not_allowed: HttpResponse | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.prefix = prefix.rstrip("/") if prefix is not None else None
        self.exclude = tuple(path.rstrip("/") for path in exclude)
        self.not_found = not_found or text_reply(404, "Not found")
        self.method_not_allowed = method_not_allowed or self.not_found
        self.max_body_bytes = max_body_bytes
        self._routes: list[_Route] = []
        self._apps: list[HttpApp] = []

    def __repr__(self) -> str:
        return f"<Router {self.prefix or '/'}: {len(self._routes)} routes, {len(self._apps)} apps>"

    def add(self, method: str, pattern: str, handler: HttpHandler) -> None:
        """Answer ``method pattern`` (``{name}`` segments become ``request.params``)."""
        self._routes.append(_Route(method.upper(), tuple(_split(pattern)), handler))

    def mount(self, app: HttpApp) -> None:
        """Hand every request ``app`` claims to it (checked before this router's own routes)."""
        self._apps.append(app)

    def _owns(self, path: str) -> bool:
        if self.prefix is None or any(_under(path, other) for other in self.exclude):
            return False
        return _under(path, self.prefix)

    def _app_for(self, method: str, path: str) -> HttpApp | None:
        for app in self._apps:
            if app.claims(method, path):
                return app
        return None

    def claims(self, method: str, path: str) -> bool:
        """Whether this router (or an app mounted in it) answers ``method path``."""
        return self._app_for(method, path) is not None or self._owns(path)

    def body_limit(self, method: str, path: str) -> int:
        """The largest body a request to ``method path`` may carry."""
        app = self._app_for(method, path)
        return app.body_limit(method, path) if app is not None else self.max_body_bytes

    async def __call__(self, request: HttpRequest) -> HttpResponse | None:
        """Answer one request (None: drop the connection, an injected fault)."""
        app = self._app_for(request.method, request.path)
        if app is not None:
            return await app(request)
        if not self._owns(request.path):
            return self.not_found
        parts = _split(request.path)
        allowed = False
        for route in self._routes:
            params = route.match(parts)
            if params is None:
                continue
            if route.method == request.method:
                return await route.handler(dataclasses.replace(request, params=params))
            allowed = True
        return self.method_not_allowed if allowed else self.not_found
