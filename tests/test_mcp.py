"""MCP: the official SDK's client over streamable HTTP (with API tokens) and over stdio."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from recorder.service.app import create_app
from storage.bounded import ensure_reader
from storage.db import create_engine, upgrade_database
from storage.store import TranscriptStore
from storage.tokens import create_token
from tests.support.service import seed_meeting, serving

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {"list_meetings", "get_transcript", "search", "run_sql", "get_notes"}
TURNS = [
    (101, 0, 2000, "good morning everyone"),
    (102, 62_000, 64_000, "the budget is ready"),
    (101, 130_000, 131_000, "thanks for the budget"),
]


@pytest.fixture
async def recorded(postgres_url: str) -> AsyncIterator[tuple[str, int]]:
    await upgrade_database(postgres_url)
    assert await ensure_reader(postgres_url) is None
    store = await TranscriptStore.open(postgres_url)
    try:
        meeting_id = await seed_meeting(store, turns=TURNS, names={101: "Alice", 102: "Bob"})
    finally:
        await store.close()
    yield postgres_url, meeting_id


def _structured(result: Any) -> Any:
    assert not result.is_error, result
    if result.structured_content is not None:
        content = result.structured_content
        return content.get("result", content) if isinstance(content, dict) else content
    return json.loads(result.content[0].text)


def _text(result: Any) -> str:
    assert not result.is_error, result
    return "\n".join(part.text for part in result.content)


async def _exercise(session: ClientSession, meeting_id: int) -> None:
    await session.initialize()
    tools = {tool.name for tool in (await session.list_tools()).tools}
    assert tools == TOOLS
    meetings = _structured(await session.call_tool("list_meetings", {}))
    assert [m["id"] for m in meetings] == [meeting_id]
    hits = _structured(await session.call_tool("search", {"query": "budget", "speaker": "Bob"}))
    assert [(h["speaker"], h["start"]) for h in hits] == [("Bob", "0:01:02")]
    transcript = _text(
        await session.call_tool(
            "get_transcript", {"meeting_id": meeting_id, "start": "1:00", "speaker": "alice"}
        )
    )
    assert transcript.splitlines()[1:] == ["0:02:10 Alice: thanks for the budget"]
    full = _text(await session.call_tool("get_transcript", {"meeting_id": meeting_id}))
    assert len(full.splitlines()) == 1 + len(TURNS)
    rows = _structured(
        await session.call_tool("run_sql", {"sql": "SELECT count(*) AS n FROM turns"})
    )
    assert rows["rows"] == [[3]]
    refused = await session.call_tool("run_sql", {"sql": "DELETE FROM turns RETURNING id"})
    assert refused.is_error
    assert _structured(await session.call_tool("get_notes", {"meeting_id": meeting_id})) == []
    missing = await session.call_tool("get_notes", {"meeting_id": 424242})
    assert missing.is_error and "no meeting" in missing.content[0].text


@pytest.mark.postgres
async def test_the_sdk_client_uses_the_http_endpoint_with_a_token(
    recorded: tuple[str, int],
) -> None:
    url, meeting_id = recorded
    engine = create_engine(url)
    try:
        _, token = await create_token(engine, "agent")
    finally:
        await engine.dispose()
    async with serving(create_app(url)) as base_url:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
            async with streamable_http_client(f"{base_url}/mcp", http_client=http) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await _exercise(session, meeting_id)
        async with httpx2.AsyncClient() as anonymous:
            refused = await anonymous.post(
                f"{base_url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            )
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"


@pytest.mark.postgres
@pytest.mark.slow
async def test_the_sdk_client_uses_recorder_mcp_over_stdio(recorded: tuple[str, int]) -> None:
    url, meeting_id = recorded
    parameters = StdioServerParameters(
        command=sys.executable,
        args=["-m", "recorder", "mcp", "--db", url],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=str(ROOT),
    )
    async with stdio_client(parameters) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await _exercise(session, meeting_id)


@pytest.mark.slow
async def test_recorder_mcp_over_stdio_on_sqlite(sqlite_url: str) -> None:
    await upgrade_database(sqlite_url)
    store = await TranscriptStore.open(sqlite_url)
    try:
        meeting_id = await seed_meeting(store, turns=TURNS, names={101: "Alice", 102: "Bob"})
    finally:
        await store.close()
    parameters = StdioServerParameters(
        command=sys.executable,
        args=["-m", "recorder", "mcp", "--db", sqlite_url],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=str(ROOT),
    )
    async with stdio_client(parameters) as streams:
        async with ClientSession(streams[0], streams[1]) as session:
            await _exercise(session, meeting_id)
