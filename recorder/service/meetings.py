"""``/v1/meetings`` and ``/v1/search``: list, read, export, rename, delete and search meetings.

Each route is a thin shell over one store (or :mod:`storage.api`) call; the
transcript streams through the same exporters as ``recorder export``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import pathlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse

from recorder.errors import NotFoundError, UsageError
from recorder.service.auth import require_token
from recorder.service.errors import ApiError
from recorder.service.schemas import (
    ErrorResponse,
    MeetingDetail,
    MeetingOut,
    MeetingPage,
    NoteOut,
    ParticipantOut,
    ParticipantPatch,
    SafeText,
    SearchHitOut,
    SearchResults,
)
from recorder.service.state import Service, service_of
from storage.tokens import ApiToken

log = logging.getLogger(__name__)

__all__ = [
    "ExportFormat",
    "MEDIA_TYPES",
    "MeetingId",
    "Uid",
    "decode_cursor",
    "delete_meeting",
    "encode_cursor",
    "get_meeting",
    "get_notes",
    "get_transcript",
    "list_meetings",
    "patch_participant",
    "router",
    "search",
]

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 422, 503)
}
router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses=_ERRORS)

# Integer columns: ids are PostgreSQL int4, uids int8; larger values are a 422, not a 500.
MeetingId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The meeting's id.")]
Uid = Annotated[int, Path(ge=0, le=2**63 - 1, description="The participant's Agora uid.")]
ExportFormat = Literal["json", "md", "html", "txt", "srt", "vtt"]
MEDIA_TYPES = {
    "json": "application/json",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
_WITH_WORDS = frozenset({"json", "srt", "vtt"})
ServiceDep = Annotated[Service, Depends(service_of)]
TokenDep = Annotated[ApiToken, Depends(require_token)]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def encode_cursor(started_at: datetime, meeting_id: int) -> str:
    """An opaque cursor after this meeting."""
    raw = json.dumps([started_at.astimezone(UTC).isoformat(), meeting_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Read a cursor of :func:`encode_cursor`.

    Raises:
        ApiError: 400 when it is not one.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_text, meeting_id = json.loads(raw)
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None or not isinstance(meeting_id, int) or not 0 < meeting_id < 2**31:
            raise ValueError("bad cursor")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(
            400, "the cursor is not one this API gave out; start again without it"
        ) from exc
    return at, meeting_id


@router.get("/meetings", response_model=MeetingPage, summary="List meetings, newest first")
async def list_meetings(
    service: ServiceDep,
    channel: Annotated[SafeText | None, Query(max_length=255)] = None,
    status: Literal["recording", "completed", "interrupted"] | None = None,
    since: Annotated[datetime | None, Query(description="Started at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Started before (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> MeetingPage:
    """Meetings matching the filters, ``limit`` at a time; follow ``next_cursor`` for more."""
    from storage.api import meetings_page

    after = decode_cursor(cursor) if cursor else None
    found, has_more = await meetings_page(
        service.engine,
        channel=channel,
        status=status,
        since=_utc(since),
        until=_utc(until),
        after=after,
        limit=limit,
    )
    next_cursor = encode_cursor(found[-1].started_at, found[-1].id) if has_more else None
    return MeetingPage(meetings=[MeetingOut.of(m) for m in found], next_cursor=next_cursor)


@router.get("/meetings/{meeting_id}", response_model=MeetingDetail, summary="One meeting")
async def get_meeting(meeting_id: MeetingId, service: ServiceDep) -> MeetingDetail:
    """The meeting's header, participants (with talk time) and notes."""
    meeting = await service.store.get_meeting(meeting_id, with_turns=False)
    return MeetingDetail(
        meeting=MeetingOut.of(meeting.summary),
        participants=[ParticipantOut.of(p) for p in meeting.participants],
        notes=[NoteOut.of(n) for n in meeting.notes],
    )


@router.get(
    "/meetings/{meeting_id}/transcript",
    summary="The transcript in any export format, streamed",
    response_class=StreamingResponse,
    responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()}}},
)
async def get_transcript(
    meeting_id: MeetingId,
    service: ServiceDep,
    format: ExportFormat = "json",  # noqa: A002 - the public query parameter's name
) -> StreamingResponse:
    """The same output as ``recorder export``, streamed as it renders (flat memory)."""
    from recorder.export.exporter import iter_export

    store = service.store
    header = await store.get_meeting(meeting_id, with_turns=False)
    turns = store.iter_turns(meeting_id, batch=5000, with_words=format in _WITH_WORDS)

    async def body() -> AsyncIterator[bytes]:
        async for piece in iter_export(header, turns, format):
            yield piece.encode("utf-8")

    return StreamingResponse(body(), media_type=MEDIA_TYPES[format])


@router.get(
    "/meetings/{meeting_id}/notes", response_model=list[NoteOut], summary="A meeting's notes"
)
async def get_notes(meeting_id: MeetingId, service: ServiceDep) -> list[NoteOut]:
    """The notes the bot wrote about the meeting (recaps, ...), oldest first."""
    meeting = await service.store.get_meeting(meeting_id, with_turns=False)
    return [NoteOut.of(n) for n in meeting.notes]


@router.patch(
    "/meetings/{meeting_id}/participants/{uid}",
    response_model=ParticipantOut,
    summary="Name a participant",
)
async def patch_participant(
    meeting_id: MeetingId,
    uid: Uid,
    patch: Annotated[ParticipantPatch, Body()],
    service: ServiceDep,
) -> ParticipantOut:
    """Set (or, with null, forget) the name exports show for this uid."""
    name = patch.display_name.strip() if patch.display_name is not None else None
    await service.store.set_display_name(meeting_id, uid, name or None)
    meeting = await service.store.get_meeting(meeting_id, with_turns=False)
    for participant in meeting.participants:
        if participant.uid == uid:
            return ParticipantOut.of(participant)
    raise NotFoundError(f"meeting {meeting_id} has no participant with uid {uid}")


@router.delete(
    "/meetings/{meeting_id}",
    status_code=204,
    response_class=Response,
    responses={409: {"model": ErrorResponse}},
    summary="Delete a meeting for good",
)
async def delete_meeting(meeting_id: MeetingId, service: ServiceDep, token: TokenDep) -> Response:
    """Delete the meeting's transcript, participants, notes, events and audio; irreversible.

    The deletion is written to the audit log with the name of the token that asked.
    Audio files are removed where this process can reach them (the audit says how many
    were listed); a fleet whose workers keep audio on their own disks removes the rest there.
    """
    from storage.api import delete_meeting as delete
    from storage.audio import list_segments

    files = [segment.path for segment in await list_segments(service.store, meeting_id)]
    try:
        await delete(
            service.engine,
            meeting_id,
            actor=f"token:{token.name}",
            detail={"audio_files": len(files)},
        )
    except UsageError as exc:  # still recording
        raise ApiError(409, str(exc)) from exc
    await asyncio.to_thread(_remove_audio, meeting_id, files)
    return Response(status_code=204)


def _remove_audio(meeting_id: int, files: list[str]) -> None:
    for name in files:
        try:
            pathlib.Path(name).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("! audio file of deleted meeting %d not removed: %s", meeting_id, exc)


@router.get("/search", response_model=SearchResults, summary="Search every transcript")
async def search(
    service: ServiceDep,
    q: Annotated[SafeText, Query(min_length=1, max_length=1000, description="Words to find.")],
    channel: Annotated[SafeText | None, Query(max_length=255)] = None,
    speaker: Annotated[SafeText | None, Query(max_length=255)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> SearchResults:
    """The same search as ``recorder search``: words, "phrases", prefix*; best first."""
    hits = await service.store.search(
        q, channel=channel, speaker=speaker, since=_utc(since), limit=limit
    )
    return SearchResults(hits=[SearchHitOut.of(h) for h in hits])
