"""``/v1/recordings``: send the bot to a channel through the fleet's queue, follow, stop.

Each route calls the same fleet functions as ``recorder record``, ``jobs``,
``stop`` and ``cancel`` (:mod:`recorder.fleet.options`, :mod:`recorder.fleet.control`),
so the API accepts and refuses exactly what the CLI does. Durations are seconds.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from recorder.config import DEFAULT_EMPTY_TIMEOUT_S, DEFAULT_IDLE_CLOSE_S
from recorder.errors import ConfigError, UsageError
from recorder.recap.settings import DEFAULT_PHRASE
from recorder.service.auth import require_token
from recorder.service.errors import ApiError
from recorder.service.schemas import ErrorResponse, SafeText
from recorder.service.state import Service, service_of

__all__ = [
    "RecapIn",
    "RecordingCreate",
    "RecordingOut",
    "RecordingPage",
    "cancel_recording",
    "create_recording",
    "get_recording",
    "list_recordings",
    "router",
    "stop_recording",
]

router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(require_token)],
    responses={status: {"model": ErrorResponse} for status in (400, 401, 404, 409, 422, 503)},
)
ServiceDep = Annotated[Service, Depends(service_of)]
RecordingId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The recording's id.")]
Keyterm = Annotated[SafeText, Field(max_length=100)]
Status = Literal["queued", "scheduled", "recording", "done", "failed", "cancelled"]


class RecapIn(BaseModel):
    """Spoken recaps, as ``--recap`` and its companions."""

    model_config = ConfigDict(extra="forbid")

    every_s: float | None = Field(None, description="--recap-every, seconds (at least 10).")
    on_end: bool = False
    phrase: Annotated[SafeText, Field(max_length=1000)] | None = DEFAULT_PHRASE
    voice: Annotated[SafeText, Field(max_length=100)] | None = None
    prompt: Annotated[SafeText, Field(max_length=10_000)] = ""
    since_last: bool = False


class RecordingCreate(BaseModel):
    """What ``recorder record`` takes; durations in seconds."""

    model_config = ConfigDict(extra="forbid")

    channel: Annotated[SafeText, Field(min_length=1, max_length=255)]
    transport: Annotated[SafeText, Field(max_length=4096)] = Field(
        "agora", description="'agora', or 'replay:FILE' (a path on the workers)."
    )
    speed: float = Field(1.0, description="Replay speed (0.1 to 100).")
    at: datetime | None = Field(None, description="Start at this time (ISO 8601).")
    max_duration_s: float | None = None
    empty_timeout_s: float = DEFAULT_EMPTY_TIMEOUT_S
    idle_close_s: float = DEFAULT_IDLE_CLOSE_S
    sessions_per_minute: float | None = None
    names: dict[int, Annotated[SafeText, Field(max_length=200)]] = Field(
        default_factory=dict, description='Names for uids: {"101": "Alice"}.'
    )
    keyterms: Annotated[
        list[Annotated[SafeText, Field(max_length=100)]], Field(max_length=1000)
    ] = Field(default_factory=list)
    prompt: Annotated[SafeText, Field(max_length=10_000)] | None = None
    speech_model: Annotated[SafeText, Field(max_length=100)] | None = None
    recap: RecapIn | None = None
    notes: bool = Field(
        False, description="Write the meeting's notes (LLM Gateway) when it ends, as --notes."
    )


class RecordingOut(BaseModel):
    """A recording of the fleet, as ``recorder jobs --json`` shows it."""

    id: int
    channel: str
    status: str
    worker_host: str | None
    worker_pid: int | None
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    meeting_id: int | None
    wait_s: float
    claims: int
    turns: int | None
    reason: str | None
    transport: str | None
    stop_requested: bool


class RecordingPage(BaseModel):
    """Recordings, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    recordings: list[RecordingOut]
    next_cursor: str | None


def _out(row: Any) -> RecordingOut:
    from recorder.fleet.control import recording_json

    return RecordingOut(**recording_json(row))


def _fleet(service: Service) -> Any:
    if service.fleet is None:  # pragma: no cover - the lifespan always opens it
        raise ApiError(503, "the fleet's queue is not open")
    return service.fleet


def _encode(recording_id: int) -> str:
    return base64.urlsafe_b64encode(f"r{recording_id}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not (raw.startswith("r") and raw[1:].isdigit() and 0 < int(raw[1:]) < 2**63):
            raise ValueError("bad cursor")
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(
            400, "the cursor is not one this API gave out; start again without it"
        ) from exc
    return int(raw[1:])


@router.post(
    "/recordings", status_code=201, response_model=RecordingOut, summary="Record a channel"
)
async def create_recording(
    request: Annotated[RecordingCreate, Body()], service: ServiceDep
) -> RecordingOut:
    """Queue a recording, as ``recorder record``: a worker joins when it has room (or at ``at``).

    409 when the channel already has a recording waiting in the queue.
    """
    from recorder.fleet.options import RecapRequest, RecordingRequest, recording_options
    from recorder.fleet.queue import enqueue

    recap = request.recap
    try:
        channel, options, at = recording_options(
            RecordingRequest(
                channel=request.channel,
                transport=request.transport,
                speed=request.speed,
                max_duration_s=request.max_duration_s,
                empty_timeout_s=request.empty_timeout_s,
                idle_close_s=request.idle_close_s,
                sessions_per_minute=request.sessions_per_minute,
                names=dict(request.names),
                keyterms=tuple(request.keyterms),
                prompt=request.prompt,
                speech_model=request.speech_model,
                recap=None
                if recap is None
                else RecapRequest(
                    every_s=recap.every_s,
                    on_end=recap.on_end,
                    phrase=recap.phrase,
                    voice=recap.voice,
                    prompt_extra=recap.prompt,
                    since_last=recap.since_last,
                ),
                at=request.at,
                notes=request.notes,
            )
        )
    except (ConfigError, UsageError) as exc:
        raise ApiError(422, str(exc)) from exc
    try:
        row = await enqueue(_fleet(service), channel, options, at=at)
    except UsageError as exc:
        raise ApiError(409, str(exc)) from exc
    return _out(row)


@router.get("/recordings", response_model=RecordingPage, summary="List recordings, newest first")
async def list_recordings(
    service: ServiceDep,
    status: Annotated[list[Status] | None, Query(max_length=6)] = None,
    channel: Annotated[SafeText | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> RecordingPage:
    """Recordings matching the filters (``status`` repeatable), ``limit`` at a time."""
    from recorder.fleet.recordings import Recordings

    before = _decode(cursor) if cursor else None
    rows, more = await Recordings(_fleet(service).connector).page(
        statuses=tuple(status or ()), channel=channel, before_id=before, limit=limit
    )
    return RecordingPage(
        recordings=[_out(row) for row in rows],
        next_cursor=_encode(rows[-1].id) if more and rows else None,
    )


@router.get("/recordings/{recording_id}", response_model=RecordingOut, summary="One recording")
async def get_recording(recording_id: RecordingId, service: ServiceDep) -> RecordingOut:
    """Its status, worker, meeting (once started), turns and reason (once over)."""
    from recorder.errors import NotFoundError
    from recorder.fleet.recordings import Recordings

    row = await Recordings(_fleet(service).connector).get(recording_id)
    if row is None:
        raise NotFoundError(f"no recording {recording_id}; see GET /v1/recordings")
    return _out(row)


@router.post(
    "/recordings/{recording_id}/stop",
    response_model=RecordingOut,
    summary="Stop a recording cleanly",
)
async def stop_recording(recording_id: RecordingId, service: ServiceDep) -> RecordingOut:
    """Ask the worker holding it to stop, as ``recorder stop`` (it hears within a second or two).

    A recording already over is returned as it is; one not started yet is a 409 (cancel it).
    """
    from recorder.fleet.control import stop_recording as stop

    try:
        row = await stop(_fleet(service), recording_id)
    except UsageError as exc:
        raise ApiError(409, str(exc)) from exc
    return _out(row)


@router.post(
    "/recordings/{recording_id}/cancel",
    response_model=RecordingOut,
    summary="Cancel a recording not started yet",
)
async def cancel_recording(recording_id: RecordingId, service: ServiceDep) -> RecordingOut:
    """As ``recorder cancel``: a queued or scheduled recording is cancelled; a live one is a 409."""
    from recorder.fleet.control import cancel_recording as cancel

    try:
        _, row = await cancel(_fleet(service), recording_id)
    except UsageError as exc:
        raise ApiError(409, str(exc)) from exc
    return _out(row)
