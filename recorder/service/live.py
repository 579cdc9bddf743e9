"""``GET /v1/meetings/{id}/events``: the meeting as it happens, as server-sent events.

Each event has the id of its ``meeting_events`` row, so a client that
reconnects with ``Last-Event-ID`` gets exactly what it missed: everything
after that id from the database, then live events from the hub, with
duplicates of the hand-over dropped by id. The stream ends after
``meeting.ended``; a meeting that is over and has nothing after the given id
answers 204, which tells an EventSource to stop reconnecting
(https://html.spec.whatwg.org/multipage/server-sent-events.html#sse-processing-model).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse

from recorder.errors import NotFoundError
from recorder.service.auth import require_token
from recorder.service.errors import ApiError
from recorder.service.hub import OVERFLOW, Subscription
from recorder.service.meetings import MeetingId
from recorder.service.schemas import ErrorResponse
from recorder.service.state import Service, service_of
from storage.events import MeetingEvent, meeting_status

__all__ = [
    "format_event",
    "meeting_events",
    "open_stream",
    "parse_last_id",
    "router",
]

router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(require_token)],
    responses={status: {"model": ErrorResponse} for status in (400, 401, 404, 422)},
)

# A comment line this often keeps proxies from closing an idle stream.
PING_S = 15.0
# Clients reconnect after this long (the SSE "retry" field, ms).
RETRY_MS = 2000


def format_event(event: MeetingEvent) -> str:
    """One event in the text/event-stream format."""
    data = json.dumps(
        {"id": event.id, "kind": event.kind, "at": event.created_at.isoformat(), **event.payload},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"


def parse_last_id(header: str | None, query: int | None) -> int:
    """The id to resume after: the ``Last-Event-ID`` header, else ``after``, else 0.

    The header wins: an EventSource reconnecting sends it with the URL it first
    opened, whose ``after`` is older.
    """
    if header is None or not header.strip():
        return query or 0
    text = header.strip()
    if not text.isdigit() or len(text) > 18:
        raise ApiError(400, f"Last-Event-ID must be an event id from this stream, got {text!r}")
    return int(text)


async def _stream(
    service: Service, meeting_id: int, last_id: int, *, is_live: bool
) -> AsyncIterator[str]:
    hub = service.hub
    yield f"retry: {RETRY_MS}\n\n"
    # Subscribed here, not in the route, so that the ``finally`` below always
    # unsubscribes (a generator that never started would never reach it).
    subscription: Subscription | None = None
    try:
        if is_live:
            subscription = await hub.subscribe(meeting_id)
        # The past: everything after last_id up to where the live feed starts.
        while True:
            events = await hub.catch_up(meeting_id, last_id)
            for event in events:
                yield format_event(event)
                last_id = event.id
                # An end followed by more (a fleet takeover resumed it) is not the end.
                if event.kind == "meeting.ended" and event is events[-1] and len(events) < 1000:
                    return
            if len(events) < 1000:
                break
        if subscription is None:
            return
        while True:
            try:
                batch = await asyncio.wait_for(subscription.queue.get(), PING_S)
            except TimeoutError:
                yield ": ping\n\n"
                continue
            if batch is OVERFLOW:
                batch = await hub.catch_up(meeting_id, last_id)
            for event in batch:
                if event.id <= last_id:
                    continue
                yield format_event(event)
                last_id = event.id
                if event.kind == "meeting.ended" and event is batch[-1]:
                    return
    finally:
        if subscription is not None:
            subscription.close()


@router.get(
    "/meetings/{meeting_id}/events",
    summary="Live events of a meeting (server-sent events)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        204: {"description": "The meeting is over and nothing follows Last-Event-ID."},
    },
)
async def meeting_events(
    meeting_id: MeetingId,
    service: Annotated[Service, Depends(service_of)],
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**62, description="Resume after this event id.")
    ] = None,
) -> Response:
    """Stream ``turn.final``/``updated``, ``participant.joined``/``left``, ``meeting.*``.

    Each ``data`` is a JSON object with the event's ``id``, ``kind``, ``at`` and
    its fields (a turn: ``turn_id``, ``uid``, ``speaker``, ``start_ms``,
    ``end_ms``, ``text``). Resume with the ``Last-Event-ID`` header (or ``after``).
    """
    return await open_stream(service, meeting_id, parse_last_id(last_event_id, after))


async def open_stream(service: Service, meeting_id: int, last_id: int) -> Response:
    """The event stream of a meeting after ``last_id`` (204 when over and nothing follows).

    Raises:
        NotFoundError: no such meeting.
    """
    status = await meeting_status(service.engine, meeting_id)
    if status is None:
        raise NotFoundError(f"no meeting with id {meeting_id}")
    is_live = status == "recording"
    if not is_live:
        pending = await service.hub.catch_up(meeting_id, last_id)
        if not pending:
            return Response(status_code=204)
    return StreamingResponse(
        _stream(service, meeting_id, last_id, is_live=is_live),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
