"""The MCP server for AI agents: streamable HTTP at ``/mcp`` (API tokens) and stdio.

Five tools over the same library calls as the API and the CLI: list meetings,
a meeting's transcript (a time range, one speaker), search, read-only SQL
(:mod:`storage.bounded`) and notes. Built on the official SDK's ``MCPServer``
(https://modelcontextprotocol.io/specification/2025-06-18/basic/transports).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Receive, Scope, Send

from recorder import __version__
from recorder.errors import RecorderError
from recorder.service.errors import ApiError, error_body

if TYPE_CHECKING:
    from storage.store import TranscriptStore

__all__ = ["McpBackend", "McpEndpoint", "build_server", "parse_time"]

_INSTRUCTIONS = (
    "Meeting transcripts recorded by recorder. Find meetings with list_meetings or search, "
    "read one with get_transcript (narrow it with start/end times and a speaker), its notes "
    "with get_notes, and anything else with read-only SQL over the tables meetings, "
    "participants, stream_sessions, turns and notes (run_sql)."
)
_MAX_TURNS = 2000


@dataclass
class McpBackend:
    """What the tools read from: bound once the store is open.

    Attributes:
        store: the transcript store.
        database_url: for read-only SQL.
        require_role: refuse SQL without the read-only role (the HTTP endpoint).
    """

    store: TranscriptStore | None = None
    database_url: str = ""
    require_role: bool = True

    def open_store(self) -> TranscriptStore:
        """The store, or a tool error if the server is not ready."""
        if self.store is None:
            raise ToolError("the recorder database is not open yet")
        return self.store


def parse_time(value: str | None, name: str) -> int | None:
    """A meeting time (``12:30``, ``1:02:03``, seconds) in ms, or None."""
    if value is None or not value.strip():
        return None
    parts = value.strip().split(":")
    try:
        if len(parts) > 3:
            raise ValueError(value)
        numbers = [float(part) for part in parts]
    except ValueError:
        raise ToolError(f"{name} must be a time like 12:30 or 1:02:03, got {value!r}") from None
    seconds = 0.0
    for number in numbers:
        if number < 0:
            raise ToolError(f"{name} must not be negative, got {value!r}")
        seconds = seconds * 60 + number
    return round(seconds * 1000)


def _clock(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def build_server(backend: McpBackend) -> MCPServer[Any]:
    """The MCP server with recorder's tools, reading through ``backend``."""
    server: MCPServer[Any] = MCPServer(
        name="recorder",
        version=__version__,
        instructions=_INSTRUCTIONS,
        # The SDK configures the root logger at this level; ours is set by the CLI.
        log_level="WARNING",
    )

    async def guarded(work: Any) -> Any:
        try:
            return await work
        except ToolError:
            raise
        except RecorderError as exc:
            raise ToolError(str(exc)) from exc

    @server.tool(description="Recorded meetings, newest first (optionally of one channel).")
    async def list_meetings(channel: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        store = backend.open_store()
        found = await guarded(store.list_meetings(channel=channel))
        return [
            {
                "id": m.id,
                "channel": m.channel,
                "started_at": m.started_at.isoformat(),
                "ended_at": m.ended_at.isoformat() if m.ended_at else None,
                "status": m.status,
                "participants": m.participant_count,
                "turns": m.turn_count,
            }
            for m in found[: max(1, min(limit, 500))]
        ]

    @server.tool(
        description=(
            "A meeting's transcript as 'h:mm:ss speaker: text' lines. Optional start and end "
            "(meeting times like 12:30) and speaker (a display name or uid) narrow it."
        )
    )
    async def get_transcript(
        meeting_id: int,
        start: str | None = None,
        end: str | None = None,
        speaker: str | None = None,
        max_turns: int = 500,
    ) -> str:
        store = backend.open_store()
        start_ms = parse_time(start, "start") or 0
        end_ms = parse_time(end, "end")
        limit = max(1, min(max_turns, _MAX_TURNS))
        meeting = await guarded(store.get_meeting(meeting_id, with_turns=False))
        wanted = speaker.strip().casefold() if speaker else None
        lines = [
            f"meeting {meeting_id} · {meeting.summary.channel} · "
            f"{meeting.summary.started_at.isoformat()} · {meeting.summary.status}"
        ]
        count = 0
        async for turn in store.iter_turns(meeting_id, with_words=False):
            if turn.start_ms < start_ms:
                continue
            if end_ms is not None and turn.start_ms > end_ms:
                break
            if wanted is not None and wanted not in (
                str(turn.uid),
                (turn.display_name or "").casefold(),
            ):
                continue
            if count == limit:
                lines.append("... (more turns; raise max_turns or narrow the range)")
                break
            lines.append(f"{_clock(turn.start_ms)} {turn.speaker}: {turn.text}")
            count += 1
        if count == 0:
            lines.append("(no turns match)")
        return "\n".join(lines)

    @server.tool(
        description=(
            'Full-text search over every transcript: words, "quoted phrases", prefix*. '
            "Matches are marked «like this»."
        )
    )
    async def search(
        query: str, channel: str | None = None, speaker: str | None = None, limit: int = 20
    ) -> list[dict[str, Any]]:
        store = backend.open_store()
        hits = await guarded(
            store.search(query, channel=channel, speaker=speaker, limit=max(1, min(limit, 200)))
        )
        return [
            {
                "meeting_id": h.meeting_id,
                "channel": h.channel,
                "turn_id": h.turn_id,
                "speaker": h.speaker,
                "uid": h.uid,
                "start": _clock(h.start_ms),
                "start_ms": h.start_ms,
                "snippet": h.snippet,
            }
            for h in hits
        ]

    @server.tool(
        description=(
            "Run one read-only SELECT over meetings, participants, stream_sessions, turns and "
            "notes. Writes are refused; at most max_rows rows, stopped after timeout_s seconds."
        )
    )
    async def run_sql(sql: str, max_rows: int = 100, timeout_s: float = 10.0) -> dict[str, Any]:
        from recorder.service.sql import jsonable
        from storage.bounded import run_bounded_query

        result = await guarded(
            run_bounded_query(
                backend.database_url,
                sql,
                max_rows=max(1, min(max_rows, 5000)),
                timeout_s=max(0.1, min(timeout_s, 60.0)),
                require_role=backend.require_role,
            )
        )
        return {
            "columns": list(result.columns),
            "rows": [[jsonable(cell) for cell in row] for row in result.rows],
            "truncated": result.truncated,
        }

    @server.tool(description="The notes written about a meeting (recaps, ...); [] if none.")
    async def get_notes(meeting_id: int) -> list[dict[str, Any]]:
        store = backend.open_store()
        meeting = await guarded(store.get_meeting(meeting_id, with_turns=False))
        return [
            {
                "kind": note.kind,
                "text": note.text,
                "created_at": note.created_at.isoformat(),
                "meta": json.loads(json.dumps(note.meta, default=str)),
            }
            for note in meeting.notes
        ]

    return server


class McpEndpoint:
    """``/mcp`` inside the API: bearer auth first, then the SDK's streamable HTTP transport."""

    def __init__(self) -> None:
        self.backend = McpBackend()
        self.server = build_server(self.backend)
        # The API's bearer tokens protect the endpoint; the SDK's Host/Origin checks
        # would otherwise refuse a service reached under its real host name.
        self.server.streamable_http_app(
            streamable_http_path="/mcp",
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Run the session manager for the app's lifetime."""
        async with self.server.session_manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one MCP request after checking its bearer token."""
        from recorder.service.auth import token_from_header

        service = scope["app"].state.service
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value.decode("latin-1")
        try:
            await token_from_header(service, header)
        except ApiError as exc:
            body = json.dumps(error_body(exc.status, exc.message)).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": exc.status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b"Bearer"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.server.session_manager.handle_request(scope, receive, send)
