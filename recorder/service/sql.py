"""``POST /v1/sql``: one read-only, time- and row-bounded statement (:mod:`storage.bounded`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from recorder.errors import DatabaseUnreachable, ReadOnlyViolation, StorageError
from recorder.service.auth import require_token
from recorder.service.errors import ApiError
from recorder.service.schemas import ErrorResponse, SqlRequest, SqlResult
from recorder.service.state import Service, service_of

__all__ = [
    "jsonable",
    "post_sql",
    "router",
    "run_sql",
]

router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(require_token)],
    responses={status: {"model": ErrorResponse} for status in (400, 401, 403, 422, 503)},
)


def jsonable(value: Any) -> Any:
    """A cell as JSON: text, numbers, booleans and null as they are; the rest as text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)


async def run_sql(service: Service, sql: str, *, max_rows: int, timeout_s: float) -> SqlResult:
    """Run a statement as the read-only role; failures become 4xx API errors."""
    from storage.bounded import run_bounded_query

    try:
        result = await run_bounded_query(
            service.database_url, sql, max_rows=max_rows, timeout_s=timeout_s, require_role=True
        )
    except ReadOnlyViolation as exc:
        raise ApiError(403, str(exc)) from exc
    except DatabaseUnreachable:
        raise
    except StorageError as exc:
        raise ApiError(400, str(exc)) from exc
    return SqlResult(
        columns=list(result.columns),
        rows=[[jsonable(cell) for cell in row] for row in result.rows],
        truncated=result.truncated,
    )


@router.post("/sql", response_model=SqlResult, summary="Run one read-only SQL statement")
async def post_sql(
    request: Annotated[SqlRequest, Body()],
    service: Annotated[Service, Depends(service_of)],
) -> SqlResult:
    """Rows of one SELECT, run as a role that may only read recorder's tables.

    Writes, server files and large objects are refused; the statement stops after
    ``timeout_s`` and returns at most ``max_rows`` rows.
    """
    return await run_sql(
        service, request.sql, max_rows=request.max_rows, timeout_s=request.timeout_s
    )
