"""The live web view: meetings (live ones marked), a meeting growing live, search, exports.

Server-rendered with the exports' Jinja environment (autoescape on for
``.html``), no build step and no CDN. Sign-in is a form that takes an API
token and keeps it in an ``HttpOnly``, ``SameSite=Strict`` cookie, so the
browser's EventSource (which cannot send headers) is authenticated too, and
no other site can make the browser use it. Every page carries a
Content-Security-Policy that allows only our own script and stylesheet; the
script adds live turns with ``textContent``, never as markup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from recorder.errors import NotFoundError
from recorder.export.render import render_template, stream_template, template_source
from recorder.export.views import Speakers, build_meeting_view, turn_views
from recorder.service.errors import ApiError
from recorder.service.live import open_stream, parse_last_id
from recorder.service.meetings import (
    MEDIA_TYPES,
    ExportFormat,
    MeetingId,
    decode_cursor,
    encode_cursor,
)
from recorder.service.schemas import SafeText
from recorder.service.state import Service, service_of
from storage.events import last_event_id
from storage.tokens import ApiToken, authenticate

__all__ = [
    "COOKIE",
    "CSP",
    "export",
    "install_sign_in_redirect",
    "login",
    "login_form",
    "logout",
    "meeting_events",
    "meeting_page",
    "meetings_page",
    "page_token",
    "router",
    "search_page",
    "static",
    "stream_token",
]

router = APIRouter(include_in_schema=False)
COOKIE = "recorder_token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_STATIC = {
    "page.css": ("_page.css", "text/css; charset=utf-8"),
    "web.css": ("web.css", "text/css; charset=utf-8"),
    "live.js": ("web_live.js", "text/javascript; charset=utf-8"),
}
_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
ServiceDep = Annotated[Service, Depends(service_of)]


class _SignIn(Exception):
    """The page needs a signed-in browser: send it to the sign-in form."""


async def _token(request: Request, service: Service) -> ApiToken | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    return await authenticate(service.engine, token)


async def page_token(request: Request, service: ServiceDep) -> ApiToken:
    """A FastAPI dependency for pages: the cookie's token, or a redirect to sign in."""
    found = await _token(request, service)
    if found is None:
        raise _SignIn
    return found


async def stream_token(request: Request, service: ServiceDep) -> ApiToken:
    """For the live stream and downloads: the cookie's token, or a 401."""
    found = await _token(request, service)
    if found is None:
        raise ApiError(401, "sign in at / first")
    return found


PageToken = Annotated[ApiToken, Depends(page_token)]


def install_sign_in_redirect(app: FastAPI) -> None:
    """Send a browser without a valid cookie to the sign-in form."""

    @app.exception_handler(_SignIn)
    async def sign_in(request: Request, exc: _SignIn) -> Response:
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"/login?next={target}", status_code=303, headers=_HEADERS)


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def _safe_next(value: str | None) -> str:
    # Only our own paths: never an open redirect to another site.
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """Our stylesheet and script (the only ones the pages' CSP allows)."""
    entry = _STATIC.get(name)
    if entry is None:
        raise NotFoundError(f"no static file {name!r}")
    source, media = entry
    return Response(
        template_source(source),
        media_type=media,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


@router.get("/login")
async def login_form(next: str | None = None) -> HTMLResponse:  # noqa: A002 - query name
    """The sign-in form."""
    return _html(
        await render_template(
            "web_login.html", next=_safe_next(next), error=None, token_name=None, query=""
        )
    )


@router.post("/login")
async def login(request: Request, service: ServiceDep) -> Response:
    """Check the token from the form and keep it in a cookie."""
    body = (await request.body()).decode("utf-8", "replace")
    try:
        fields = parse_qs(body, max_num_fields=4)
    except ValueError as exc:  # more fields than the form has
        raise ApiError(400, "the sign-in form has two fields: token and next") from exc
    token = (fields.get("token") or [""])[0].strip()
    target = _safe_next((fields.get("next") or ["/"])[0])
    found = await authenticate(service.engine, token) if token else None
    if found is None:
        page = await render_template(
            "web_login.html",
            next=target,
            error="That token is unknown or revoked.",
            token_name=None,
            query="",
        )
        return _html(page, status=401)
    response = RedirectResponse(target, status_code=303, headers=_HEADERS)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    """Forget the cookie."""
    response = RedirectResponse("/login", status_code=303, headers=_HEADERS)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/")
async def meetings_page(
    service: ServiceDep,
    token: PageToken,
    cursor: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> HTMLResponse:
    """Meetings, newest first; those being recorded are marked live."""
    from storage.api import meetings_page as page_of

    after = decode_cursor(cursor) if cursor else None
    found, has_more = await page_of(service.engine, after=after, limit=50)
    older = encode_cursor(found[-1].started_at, found[-1].id) if has_more else None
    return _html(
        await render_template(
            "web_meetings.html", meetings=found, older=older, token_name=token.name, query=""
        )
    )


@router.get("/search")
async def search_page(
    service: ServiceDep,
    token: PageToken,
    q: Annotated[SafeText, Query(max_length=1000)] = "",
) -> HTMLResponse:
    """Search across meetings."""
    hits = await service.store.search(q, limit=50) if q.strip() else []
    return _html(
        await render_template("web_search.html", hits=hits, query=q, token_name=token.name)
    )


@router.get("/meetings/{meeting_id}")
async def meeting_page(meeting_id: MeetingId, service: ServiceDep, token: PageToken) -> Response:
    """A meeting: header, notes, the transcript, growing live while it is recorded."""
    store = service.store
    # Read the event position first: anything committed while the page renders
    # arrives again over the stream, and the script skips turns it already shows.
    after = await last_event_id(service.engine, meeting_id)
    meeting = await store.get_meeting(meeting_id, with_turns=False)
    speakers = Speakers(meeting.participants)
    view = build_meeting_view(meeting, speakers)

    def speakers_map() -> dict[str, dict[str, Any]]:
        # Called at the end of the page, once the turns have named every speaker.
        return {str(s.uid): {"name": s.name, "colour": s.colour} for s in speakers.all()}

    turns = turn_views(store.iter_turns(meeting_id, with_words=False), speakers)
    pieces = stream_template(
        "web_meeting.html",
        meeting=view,
        turns=turns,
        after=after,
        is_live=meeting.summary.status == "recording",
        speakers_map=speakers_map,
        formats=list(MEDIA_TYPES),
        token_name=token.name,
        query="",
    )

    async def body() -> AsyncIterator[bytes]:
        async for piece in pieces:
            yield piece.encode("utf-8")

    return StreamingResponse(body(), media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/web/meetings/{meeting_id}/events")
async def meeting_events(
    meeting_id: MeetingId,
    request: Request,
    service: ServiceDep,
    token: Annotated[ApiToken, Depends(stream_token)],
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Response:
    """The live stream for the page (cookie auth; same events as the API's)."""
    last_id = parse_last_id(request.headers.get("last-event-id"), after)
    return await open_stream(service, meeting_id, last_id)


@router.get("/web/meetings/{meeting_id}/export")
async def export(
    meeting_id: MeetingId,
    service: ServiceDep,
    token: Annotated[ApiToken, Depends(stream_token)],
    format: ExportFormat = "html",  # noqa: A002 - the query parameter's name
) -> Response:
    """Download the meeting in an export format."""
    from recorder.export.exporter import iter_export

    header = await service.store.get_meeting(meeting_id, with_turns=False)
    turns = service.store.iter_turns(
        meeting_id, batch=5000, with_words=format in ("json", "srt", "vtt")
    )

    async def body() -> AsyncIterator[bytes]:
        async for piece in iter_export(header, turns, format):
            yield piece.encode("utf-8")

    stamp = header.summary.started_at.strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        body(),
        media_type=MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="meeting-{meeting_id}-{stamp}.{format}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
