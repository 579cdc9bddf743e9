"""The emulators' one HTTP layer: the router, and the wire on a real loopback port."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from recorder.emulator.batch import BatchBehaviour, BatchEmulator
from recorder.emulator.http import HttpRequest, HttpResponse, json_reply, serve_http, text_reply
from recorder.emulator.router import Router
from recorder.emulator.server import serve_emulators
from tests.support.timing import TIMEOUT


async def echo(request: HttpRequest) -> HttpResponse:
    return json_reply(
        200, {"method": request.method, "params": dict(request.params), "query": request.query}
    )


def router() -> Router:
    routes = Router(
        "/v9", exclude=("/v9/ws",), method_not_allowed=text_reply(405, "Method Not Allowed")
    )
    routes.add("GET", "/v9/items", echo)
    routes.add("GET", "/v9/items/{id}", echo)
    routes.add("DELETE", "/v9/items/{id}", echo)
    routes.add("GET", "/v9/items/{id}/{kind}", echo)
    return routes


async def test_router_matches_methods_patterns_and_prefixes() -> None:
    routes = router()
    reply = await routes(HttpRequest("GET", "/v9/items/42/srt", query={"a": "1"}))
    assert reply is not None and reply.status == 200
    assert json.loads(reply.body) == {
        "method": "GET",
        "params": {"id": "42", "kind": "srt"},
        "query": {"a": "1"},
    }
    answers = {
        path_method: (await routes(HttpRequest(path_method[1], path_method[0])))
        for path_method in [
            ("/v9/items/7", "DELETE"),
            ("/v9/items/7", "POST"),  # the path exists, not the method
            ("/v9/nothing", "GET"),
            ("/v9/items/7/srt/x", "GET"),
        ]
    }
    assert [a.status if a else None for a in answers.values()] == [200, 405, 404, 404]
    assert routes.claims("GET", "/v9") and routes.claims("POST", "/v9/anything")
    assert not routes.claims("GET", "/v9/ws") and not routes.claims("GET", "/v9/ws/deeper")
    assert not routes.claims("GET", "/v90/items") and not routes.claims("GET", "/v3/ws")


async def test_a_mounted_app_claims_first_and_sets_its_own_body_limit() -> None:
    outer = Router()
    inner = router()
    batch = BatchEmulator(behaviour=BatchBehaviour(max_upload_bytes=123))
    outer.mount(batch)
    outer.mount(inner)
    assert outer.claims("POST", "/v2/upload") and outer.claims("GET", "/v9/items")
    assert not outer.claims("GET", "/v2/realtime/ws")  # the retired socket: streaming's 410
    assert not outer.claims("GET", "/v1/ws")
    assert outer.body_limit("POST", "/v2/upload") == 123
    assert outer.body_limit("GET", "/v9/items") == inner.max_body_bytes
    reply = await outer(HttpRequest("GET", "/elsewhere"))
    assert reply is not None and reply.status == 404


async def exchange(port: int, *raw: bytes) -> bytes:
    """Send ``raw`` requests on one connection; everything read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in raw:
            writer.write(request)
        await writer.drain()
        async with asyncio.timeout(TIMEOUT):
            return await reader.read()
    finally:
        writer.close()


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """Status and body of each response in ``data`` (bodies by Content-Length)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        found.append((int(lines[0].split(" ")[1]), rest[:length]))
        data = rest[length:]
    return found


async def test_keep_alive_chunked_uploads_and_refusals_on_the_shared_port() -> None:
    batch = BatchEmulator(behaviour=BatchBehaviour(max_upload_bytes=64))
    async with serve_emulators(batch=batch) as server:
        chunked = (
            b"POST /v2/upload HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
        )
        models = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\n\r\n"
        listing = (
            b"GET /v2/transcript?limit=1 HTTP/1.1\r\nAuthorization: k\r\nConnection: close\r\n\r\n"
        )
        # Three requests, one connection: keep-alive until the client says close.
        answered = responses(await exchange(server.port, chunked, models, listing))
        assert [status for status, _ in answered] == [200, 200, 200]
        upload_url = json.loads(answered[0][1])["upload_url"]
        assert batch.uploads == {upload_url: b"hello world"}
        assert any(m["id"] == "gpt-5" for m in json.loads(answered[1][1])["data"])
        assert json.loads(answered[2][1])["page_details"]["limit"] == 1

        too_big = b"POST /v2/upload HTTP/1.1\r\nAuthorization: k\r\nContent-Length: 65\r\n\r\n"
        assert responses(await exchange(server.port, too_big)) == [
            (413, b'{"error": "body too large"}')
        ]
        bad_length = b"POST /v2/upload HTTP/1.1\r\nContent-Length: many\r\n\r\n"
        assert responses(await exchange(server.port, bad_length))[0][0] == 400
        bad_chunk = b"POST /v2/upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        assert responses(await exchange(server.port, bad_chunk))[0][0] == 400

        batch.fail_next(0)  # an injected dropped connection: no answer at all
        assert await exchange(server.port, listing) == b""
        assert (await exchange(server.port, listing)).startswith(b"HTTP/1.1 200 OK\r\n")


async def test_exit_closes_idle_keep_alive_connections() -> None:
    async with serve_emulators() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /v2/transcript HTTP/1.1\r\nAuthorization: k\r\n\r\n")
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    # The server's exit did not wait for the client: it closed the connection.
    async with asyncio.timeout(TIMEOUT):
        await reader.read()
    assert reader.at_eof()
    writer.close()


async def test_a_handler_bug_is_a_500_and_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: HttpRequest) -> HttpResponse:
        raise RuntimeError("emulator bug")

    routes = Router("/x")
    routes.add("GET", "/x", broken)
    async with serve_http(routes, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with caplog.at_level(logging.ERROR, "recorder.emulator.http"):
            data = await exchange(port, b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert responses(data) == [(500, b"Internal Server Error")]
        assert "! GET /x failed" in caplog.text
        assert responses(await exchange(port, b"NONSENSE\r\n\r\n"))[0][0] == 400


async def test_expect_continue_and_http_1_0() -> None:
    batch = BatchEmulator(behaviour=BatchBehaviour(max_upload_bytes=64))
    async with serve_emulators(batch=batch) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /v2/upload HTTP/1.1\r\nAuthorization: k\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        async with asyncio.timeout(TIMEOUT):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 OK\r\n")
        writer.close()
        assert list(batch.uploads.values()) == [b"hello"]
        # A body too large is refused at once, never invited.
        too_big = (
            b"POST /v2/upload HTTP/1.1\r\nAuthorization: k\r\nContent-Length: 65\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert [s for s, _ in responses(await exchange(server.port, too_big))] == [413]
        # HTTP/1.0 without keep-alive: one answer, then the server closes.
        data = await exchange(
            server.port, b"GET /v2/transcript HTTP/1.0\r\nAuthorization: k\r\n\r\n"
        )
        assert [s for s, _ in responses(data)] == [200] and b"Connection: close\r\n" in data
