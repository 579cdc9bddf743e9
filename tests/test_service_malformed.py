"""Malformed requests: every one is a 4xx with a JSON error body, never a 500."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from recorder.service.app import create_app
from storage.db import create_engine, upgrade_database
from storage.store import TranscriptStore
from storage.tokens import create_token
from tests.support.service import seed_meeting, serving

pytestmark = pytest.mark.postgres

M = "/v1/meetings"
R = "/v1/recordings"


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _json(body: str) -> dict[str, Any]:
    return {"content": body, "headers": {"Content-Type": "application/json"}}


def _chunks(size: int):
    async def body():
        for _ in range(size // 65536 + 1):
            yield b"a" * 65536

    return body()


# (method, path, request arguments); "{id}" is an existing meeting, "{uid}" its participant.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    # listing meetings: filters and cursors
    ("GET", M + "?limit=0", {}),
    ("GET", M + "?limit=-1", {}),
    ("GET", M + "?limit=abc", {}),
    ("GET", M + "?limit=1000000", {}),
    ("GET", M + "?limit=99999999999999999999999999", {}),
    ("GET", M + "?status=bogus", {}),
    ("GET", M + "?since=notadate", {}),
    ("GET", M + "?until=2026-13-45", {}),
    ("GET", M + "?cursor=!!!", {}),
    ("GET", M + "?cursor=abc", {}),
    ("GET", M + "?cursor=" + _b64([1, 2, 3]), {}),
    ("GET", M + "?cursor=" + _b64(["2026-01-01T00:00:00", 1]), {}),
    ("GET", M + "?cursor=" + _b64(["2026-01-01T00:00:00+00:00", 2**40]), {}),
    ("GET", M + "?channel=%00", {}),
    ("GET", M + "?channel=" + "x" * 300, {}),
    ("GET", M + "?cursor=" + "A" * 300, {}),
    # meeting ids
    ("GET", M + "/abc", {}),
    ("GET", M + "/-1", {}),
    ("GET", M + "/0", {}),
    ("GET", M + "/99999999999999999999", {}),
    ("GET", M + "/2147483648", {}),
    ("GET", M + "/1.5", {}),
    ("GET", M + "/%00", {}),
    ("GET", M + "/1e3", {}),
    ("GET", M + "/999999", {}),
    # transcript formats
    ("GET", M + "/{id}/transcript?format=pdf", {}),
    ("GET", M + "/{id}/transcript?format=", {}),
    ("GET", M + "/{id}/transcript?format=%00", {}),
    ("GET", M + "/abc/transcript", {}),
    ("GET", M + "/999999/transcript", {}),
    # renaming participants: bodies and ids
    ("PATCH", M + "/{id}/participants/{uid}", _json("{")),
    ("PATCH", M + "/{id}/participants/{uid}", _json("null")),
    ("PATCH", M + "/{id}/participants/{uid}", _json("[]")),
    ("PATCH", M + "/{id}/participants/{uid}", _json('{"display_name": 5}')),
    ("PATCH", M + "/{id}/participants/{uid}", _json('{"display_name": ["a"]}')),
    ("PATCH", M + "/{id}/participants/{uid}", _json('{"name": "x"}')),
    ("PATCH", M + "/{id}/participants/{uid}", _json("{}")),
    ("PATCH", M + "/{id}/participants/{uid}", {"json": {"display_name": "x" * 10_000}}),
    ("PATCH", M + "/{id}/participants/{uid}", {"json": {"display_name": "a\x00b"}}),
    ("PATCH", M + "/{id}/participants/-1", {"json": {"display_name": "x"}}),
    ("PATCH", M + "/{id}/participants/18446744073709551616", {"json": {"display_name": "x"}}),
    ("PATCH", M + "/{id}/participants/abc", {"json": {"display_name": "x"}}),
    ("PATCH", M + "/{id}/participants/{uid}", {"content": b"\xff\xfe\x00"}),
    (
        "PATCH",
        M + "/{id}/participants/{uid}",
        {"content": "[" * 100_000 + "]" * 100_000, "headers": {"Content-Type": "application/json"}},
    ),
    ("PATCH", M + "/{id}/participants/{uid}", {"content": b"x" * (2 << 20)}),
    ("PATCH", M + "/{id}/participants/{uid}", {"content": _chunks(3 << 20)}),
    # delete
    ("DELETE", M + "/abc", {}),
    ("DELETE", M + "/999999", {}),
    # search
    ("GET", "/v1/search", {}),
    ("GET", "/v1/search?q=", {}),
    ("GET", "/v1/search?q=" + "w" * 2000, {}),
    ("GET", "/v1/search?q=x&limit=0", {}),
    ("GET", "/v1/search?q=x&since=yesterday", {}),
    ("GET", "/v1/search?q=%00", {}),
    ("GET", "/v1/search?q=x&speaker=%00", {}),
    # read-only SQL
    ("POST", "/v1/sql", _json("{")),
    ("POST", "/v1/sql", {"json": {"sql": 1}}),
    ("POST", "/v1/sql", {"json": {"sql": ""}}),
    ("POST", "/v1/sql", {"json": {"sql": "SELECT 1", "max_rows": 0}}),
    ("POST", "/v1/sql", {"json": {"sql": "SELECT 1", "timeout_s": -1}}),
    ("POST", "/v1/sql", {"json": {"sql": "SELEC garbage"}}),
    ("POST", "/v1/sql", {"json": {"sql": "DELETE FROM meetings"}}),
    ("POST", "/v1/sql", {"json": {"sql": "SELECT 1; SELECT 2"}}),
    ("POST", "/v1/sql", {"json": {"sql": "SELECT 1", "extra": 1}}),
    ("POST", "/v1/sql", {"json": {"sql": "SELECT '\x00'"}}),
    # webhooks
    ("POST", "/v1/webhooks", _json("{")),
    ("POST", "/v1/webhooks", {"json": {"url": "https://example.com"}}),
    ("POST", "/v1/webhooks", {"json": {"url": "https://example.com", "events": []}}),
    ("POST", "/v1/webhooks", {"json": {"url": "https://example.com", "events": ["nope"]}}),
    ("POST", "/v1/webhooks", {"json": {"url": "ftp://example.com", "events": ["*"]}}),
    ("POST", "/v1/webhooks", {"json": {"url": "http://10.0.0.1/", "events": ["*"]}}),
    ("POST", "/v1/webhooks", {"json": {"url": 5, "events": "turn.final"}}),
    ("DELETE", "/v1/webhooks/abc", {}),
    ("DELETE", "/v1/webhooks/999", {}),
    ("GET", "/v1/webhooks/999/deliveries", {}),
    # live events
    ("GET", M + "/{id}/events", {"headers": {"Last-Event-ID": "abc"}}),
    ("GET", M + "/{id}/events?after=-5", {}),
    ("GET", M + "/999999/events", {}),
    # the web view's sign-in form
    ("POST", "/login", {"content": "a=1&b=2&c=3&d=4&e=5&f=6"}),
    ("GET", "/static/nothing.js", {}),
    ("GET", "/web/meetings/1/events", {}),
    # wrong methods and paths
    ("PUT", M, {}),
    ("POST", M + "/{id}", {}),
    ("GET", "/v1/nothing", {}),
    # recordings: bodies, values (checked as 'recorder record' checks them), ids, filters
    ("POST", R, _json("{")),
    ("POST", R, _json("[]")),
    ("POST", R, _json("{}")),
    ("POST", R, _json('{"channel": 5}')),
    ("POST", R, _json('{"channel": ""}')),
    ("POST", R, _json('{"channel": "a\\u0000b"}')),
    ("POST", R, _json('{"channel": "a\\u0007b"}')),
    ("POST", R, _json('{"channel": "' + "c" * 300 + '"}')),
    ("POST", R, _json('{"channel": "c", "bogus": 1}')),
    ("POST", R, _json('{"channel": "c", "speed": 0}')),
    ("POST", R, _json('{"channel": "c", "speed": "fast"}')),
    ("POST", R, _json('{"channel": "c", "speed": 1e400}')),
    ("POST", R, _json('{"channel": "c", "empty_timeout_s": -1}')),
    ("POST", R, _json('{"channel": "c", "idle_close_s": 0.1}')),
    ("POST", R, _json('{"channel": "c", "max_duration_s": 0}')),
    ("POST", R, _json('{"channel": "c", "transport": "zoom"}')),
    ("POST", R, _json('{"channel": "c", "transport": "replay:/no/such/file.json"}')),
    ("POST", R, _json('{"channel": "c", "names": {"abc": "Ann"}}')),
    ("POST", R, _json('{"channel": "c", "names": {"0": "Ann"}}')),
    ("POST", R, _json('{"channel": "c", "names": {"101": ""}}')),
    ("POST", R, _json('{"channel": "c", "keyterms": "a,b"}')),
    ("POST", R, _json('{"channel": "c", "keyterms": ' + json.dumps(["k"] * 101) + "}")),
    ("POST", R, _json('{"channel": "c", "at": "tomorrow"}')),
    ("POST", R, _json('{"channel": "c", "recap": {"every_s": 1}}')),
    ("POST", R, _json('{"channel": "c", "recap": {"bogus": true}}')),
    ("POST", R, {"content": b'{"channel": "c"}', "headers": {"Content-Type": "text/plain"}}),
    ("GET", R + "?limit=0", {}),
    ("GET", R + "?status=bogus", {}),
    ("GET", R + "?cursor=!!!", {}),
    ("GET", R + "?cursor=" + _b64(["x"]), {}),
    ("GET", R + "/abc", {}),
    ("GET", R + "/0", {}),
    ("GET", R + "/2147483648", {}),
    ("GET", R + "/9223372036854775808", {}),
    ("GET", R + "/999999", {}),
    ("POST", R + "/999999/stop", {}),
    ("POST", R + "/abc/stop", {}),
    ("GET", R + "/1/stop", {}),
    ("POST", R + "/999999/cancel", {}),
    ("GET", M + "/{id}/participants/{uid}", {}),
]


@pytest.fixture
async def client(postgres_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    await upgrade_database(postgres_url)
    engine = create_engine(postgres_url)
    try:
        _, token = await create_token(engine, "tests")
    finally:
        await engine.dispose()
    store = await TranscriptStore.open(postgres_url)
    try:
        meeting_id = await seed_meeting(store, turns=[(101, 0, 1000, "hello there")])
    finally:
        await store.close()
    async with serving(create_app(postgres_url)) as base_url:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:
            yield http, meeting_id


async def test_sixty_malformed_requests_are_each_a_json_4xx(
    client: tuple[httpx.AsyncClient, int],
) -> None:
    http, meeting_id = client
    assert len(CASES) >= 60
    failures = []
    for method, path, arguments in CASES:
        url = path.replace("{id}", str(meeting_id)).replace("{uid}", "101")
        response = await http.request(method, url, **arguments)
        try:
            error = response.json()["error"]
            is_json_error = isinstance(error["message"], str) and error["message"]
        except (ValueError, KeyError, TypeError):
            is_json_error = False
        if not 400 <= response.status_code < 500 or not is_json_error:
            failures.append((method, url[:80], response.status_code, response.text[:200]))
    assert not failures, failures


async def test_a_lying_content_length_is_refused(client: tuple[httpx.AsyncClient, int]) -> None:
    http, meeting_id = client
    host, port = str(http.base_url.host), http.base_url.port
    reader, writer = await asyncio.open_connection(host, port)
    token = http.headers["Authorization"]
    writer.write(
        (
            f"PATCH /v1/meetings/{meeting_id}/participants/101 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 << 20}\r\n\r\n{{}}"
        ).encode()
    )
    await writer.drain()
    status = await reader.readline()
    writer.close()
    assert status.startswith(b"HTTP/1.1 413"), status
