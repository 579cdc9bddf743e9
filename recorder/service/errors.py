"""Every failure of a request becomes one JSON body: ``{"error": {"status", "code", "message"}}``.

Recorder errors map to their HTTP meaning (not found 404, read-only 403, usage
400, database down 503); FastAPI's validation errors become 400/422 with the
offending field named; anything unexpected is a 500 whose body says nothing
about the server (the details go to the log, which never holds a token).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from recorder.errors import (
    ConfigError,
    DatabaseUnreachable,
    MigrationRequired,
    NotFoundError,
    ReadOnlyViolation,
    RecorderError,
    RenderError,
    UsageError,
)

__all__ = [
    "ApiError",
    "error_body",
    "error_response",
    "install_error_handlers",
    "status_for",
]

log = logging.getLogger("recorder.service")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """A request that cannot be served as asked; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {
        "error": {"status": status, "code": code or _CODES.get(status, "error"), "message": message}
    }


def error_response(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSON error response."""
    return JSONResponse(error_body(status, message, code), status_code=status, headers=headers)


def status_for(error: RecorderError) -> int:
    """The HTTP status of a recorder error."""
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, ReadOnlyViolation):
        return 403
    if isinstance(error, UsageError):
        return 400
    if isinstance(error, DatabaseUnreachable | MigrationRequired | ConfigError):
        return 503
    if isinstance(error, RenderError):
        return 500
    return 500


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for item in exc.errors()[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is malformed"


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` a JSON body of the shape above."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.message, exc.code, headers)

    @app.exception_handler(RecorderError)
    async def recorder_error(request: Request, exc: RecorderError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning("! %s %s failed: %s", request.method, request.url.path, exc)
        return error_response(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A body that is not JSON at all is a 400; JSON of the wrong shape a 422.
        malformed = any(item.get("type") == "json_invalid" for item in exc.errors())
        return error_response(400 if malformed else 422, _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "the request failed"
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, message, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("! %s %s failed unexpectedly", request.method, request.url.path, exc_info=exc)
        return error_response(500, "the server failed to handle the request; see its log")
