"""SttStream against a scripted fake v3 server on 127.0.0.1 (real sockets)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any

import numpy as np
import pytest
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosedError,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.frames import Close
from websockets.http11 import Response

from recorder.clock import ManualClock
from recorder.errors import RecorderError, SttConnectionError, SttRejected
from recorder.stt.connect import FOREIGN_EXCEPTIONS, map_exceptions
from recorder.stt.events import (
    AudioDropped,
    Closed,
    Disposition,
    FinalTranscript,
    PartialTranscript,
    SessionStarted,
    SessionTerminated,
    SocketClosed,
    SocketOpened,
)
from recorder.stt.settings import BufferSettings, ConnectSettings, PacingSettings, RetrySettings
from recorder.stt.stream import SttStream
from tests.support.fake_stt import FakeConnection, FakeSttServer, turn_message
from tests.support.timing import TIMEOUT

KEY = "sk-test-123456"
BPS = 32000  # 16 kHz PCM16
FAST = 50.0  # audio clock speed for tests that are not about pacing


def pcm(start_ms: int, ms: int) -> bytes:
    """Distinct audio: sample i holds (i mod 30000), so any slice is identifiable."""
    first = start_ms * 16
    return (np.arange(first, first + ms * 16) % 30000).astype("<i2").tobytes()


SETTINGS = (ConnectSettings, PacingSettings, RetrySettings, BufferSettings)


def settings_of(kind: type, fields: dict) -> Any:
    """``kind`` built from the entries of ``fields`` that name its fields (taken out)."""
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{name: fields.pop(name) for name in list(fields) if name in names})


def session(url: str, **kwargs) -> SttStream:
    """An SttStream from flat keywords: each goes to the settings object with that field."""
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("realtime_factor", FAST)
    kwargs.setdefault("backoff_initial_s", 0.01)
    kwargs.setdefault("backoff_max_s", 0.05)
    kwargs.setdefault("terminate_timeout_s", 2.0)
    kwargs["url"] = url
    connect, pacing, retry, buffers = (settings_of(kind, kwargs) for kind in SETTINGS)
    return SttStream(connect, pacing=pacing, retry=retry, buffers=buffers, **kwargs)


async def collect(s: SttStream, final_seen: asyncio.Event | None = None) -> list:
    """All of ``s``'s events; sets ``final_seen`` once a FinalTranscript was yielded.

    The stream trims its resend buffer before it hands a final on, so a fake server
    script that awaits ``final_seen`` knows the client has taken the final in.
    """
    events = []
    async for event in s.events():
        events.append(event)
        if final_seen is not None and isinstance(event, FinalTranscript):
            final_seen.set()
    return events


async def run(s: SttStream, audio_ms: int, frame_ms: int = 10) -> list:
    """Start, send ``audio_ms`` of audio in ``frame_ms`` frames, stop; return the events."""
    await s.start()
    reader = asyncio.create_task(collect(s))
    for t in range(0, audio_ms, frame_ms):
        s.send(pcm(t, frame_ms))
    async with asyncio.timeout(TIMEOUT * 2):
        await s.stop()
        return await reader


async def test_happy_path_begin_turns_terminate():
    async def script(conn: FakeConnection) -> None:
        await conn.begin("sess-1")
        await conn.wait_audio(BPS)  # 1 s
        await conn.send_json({"type": "SpeechStarted", "timestamp": 120, "confidence": 0.9})
        await conn.send_json(turn_message(0, [("hello", 120, 400)], final=False))
        await conn.send_json(turn_message(0, [("Hello", 120, 400), ("there.", 450, 800)]))
        await conn.terminate_reply(
            [turn_message(1, [("Bye.", 1000, 1200)])], audio_s=2, session_s=3
        )

    async with FakeSttServer(script) as server:
        events = await run(session(server.url, keyterms=["Agora"]), 1500)
    conn = server.connections[0]
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "SessionStarted",
        "SocketOpened",
        "SpeechStarted",
        "PartialTranscript",
        "FinalTranscript",
        "FinalTranscript",
        "SessionTerminated",
        "Closed",
        "SocketClosed",
    ]
    assert events[1] == SocketOpened(0, "sess-1", 0, events[0].expires_at)
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert [f.transcript for f in finals] == ["Hello there.", "Bye."]
    assert finals[0].audio_offset_ms == 0 and finals[0].end_ms == 800
    assert events[7].disposition is Disposition.DONE
    closed = events[8]
    assert isinstance(closed, SocketClosed)
    assert closed.close_code == 1000 and closed.billed_seconds == 3
    assert closed.audio_seconds == pytest.approx(1.5)
    # Wire: raw key header, explicit model, no compression, audio intact and in order.
    assert conn.headers["Authorization"] == KEY
    assert "Sec-WebSocket-Extensions" not in conn.headers
    assert conn.path == "/v3/ws"
    assert conn.query["speech_model"] == "u3-rt-pro"
    assert json.loads(conn.query["keyterms_prompt"]) == ["Agora"]
    assert conn.audio_bytes == pcm(0, 1500)
    assert conn.text_types() == ["Terminate"]
    assert conn.received[-1].data == '{"type": "Terminate"}'


async def test_tail_is_padded_to_50ms_and_chunks_stay_in_range():
    async def script(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.terminate_reply()

    rng = np.random.default_rng(7)
    sizes = [int(x) * 2 for x in rng.integers(1, 30000, size=40)]
    async with FakeSttServer(script) as server:
        s = session(server.url)
        await s.start()
        reader = asyncio.create_task(collect(s))
        data = bytes(rng.integers(0, 256, size=sum(sizes), dtype=np.uint8))
        at = 0
        for n in sizes:
            s.send(data[at : at + n])
            at += n
        await s.stop()
        await reader
    audio = server.connections[0].audio
    assert all(1600 <= len(frame) <= 32000 for frame in audio)
    got = b"".join(audio)
    assert got[: len(data)] == data
    assert set(got[len(data) :]) <= {0} and len(audio[-1]) >= 1600


async def test_terminate_wait_is_bounded_when_server_never_answers():
    async def script(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.wait_text("Terminate")
        await conn.ws.wait_closed()  # stall: never send Termination

    async with FakeSttServer(script) as server:
        s = session(server.url, terminate_timeout_s=0.3)
        await s.start()
        reader = asyncio.create_task(collect(s))
        s.send(pcm(0, 200))
        started = time.monotonic()
        await s.stop()
        elapsed = time.monotonic() - started
        events = await reader
    assert 0.3 <= elapsed < 0.3 + 1.5
    assert server.connections[0].text_types() == ["Terminate"]
    assert server.attempts == 1  # no reconnect after a Terminate
    assert not any(isinstance(e, SessionTerminated) for e in events)
    assert s.error is None


@pytest.mark.parametrize(
    ("code", "how", "final_end_ms"),
    [
        (1006, "drop", 450),
        (1011, "close", 450),
        (3005, "error", 450),
        (3009, "error", 450),
        (1000, "close", 450),
        (1008, "concurrent", 450),  # the pre-2026-02-24 rate-limit close
        (1006, "drop", 470),  # a 30 ms head is merged with the next chunk
        (1006, "drop", 400),  # on a chunk boundary
    ],
)
async def test_reconnect_replays_unfinalised_audio(code, how, final_end_ms):
    final_seen = asyncio.Event()  # the reader has yielded a FinalTranscript

    async def first(conn: FakeConnection) -> None:
        await conn.begin("a")
        await conn.wait_audio(BPS)  # 1 s sent
        # A final up to final_end_ms: the replay starts right after its last word.
        await conn.send_json(turn_message(0, [("One.", 100, final_end_ms)]))
        await conn.wait_audio(int(1.5 * BPS))
        # The client must have trimmed its buffer before it sees the close.
        await asyncio.wait_for(final_seen.wait(), TIMEOUT)
        if how == "drop":
            conn.drop()
        elif how == "error":
            await conn.close(code, "Session Cancelled", error="Session Cancelled: oops")
        elif how == "concurrent":
            await conn.close(code, "Unauthorized connection: Too many concurrent sessions")
        else:
            await conn.close(code, "")

    async def second(conn: FakeConnection) -> None:
        await conn.begin("b")
        await conn.terminate_reply([turn_message(0, [("Two.", 100, 300)])])

    async with FakeSttServer([first, second]) as server:
        s = session(server.url, realtime_factor=10.0)
        await s.start()
        reader = asyncio.create_task(collect(s, final_seen))
        for t in range(0, 3000, 100):
            s.send(pcm(t, 100))
        await server.wait_connections(2)
        await s.stop()
        events = await reader
    one, two = server.connections
    sent_on_one = len(one.audio_bytes) // 32  # ms
    # The second socket starts where the final ended and carries everything after, once.
    assert two.audio_bytes == pcm(final_end_ms, 3000 - final_end_ms)
    assert all(1600 <= len(frame) <= 32000 for frame in two.audio)
    assert sent_on_one >= 1500
    opened = [e for e in events if isinstance(e, SocketOpened)]
    assert [(o.socket_index, o.provider_id, o.audio_offset_ms) for o in opened] == [
        (0, "a", 0),
        (1, "b", final_end_ms),
    ]
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert [(f.socket_index, f.start_ms) for f in finals] == [(0, 100), (1, final_end_ms + 100)]
    closes = [e for e in events if isinstance(e, SocketClosed)]
    assert [c.close_code for c in closes] == [code, 1000]
    assert s.error is None


async def test_bad_key_close_1008_is_fatal_after_one_attempt():
    async def script(conn: FakeConnection) -> None:
        await conn.close(1008, "Unauthorized Connection: Missing Authorization header")

    async with FakeSttServer(script) as server:
        s = session(server.url)
        with pytest.raises(SttRejected) as info:
            await s.start()
    assert server.attempts == 1
    assert info.value.code == 1008
    message = str(info.value)
    assert "Missing Authorization header" in message and "ASSEMBLYAI_API_KEY" in message
    assert KEY not in message
    with pytest.raises(SttRejected):
        s.send(pcm(0, 100))


async def test_error_frame_text_is_used_for_fatal_mid_session_close():
    async def script(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.wait_audio(3200)
        await conn.close(3007, "See Error message for details", error="Audio Transmission Rate")

    async with FakeSttServer(script) as server:
        s = session(server.url)
        await s.start()
        s.send(pcm(0, 100))
        with pytest.raises(SttRejected) as info:
            await collect(s)
    assert server.attempts == 1
    assert info.value.code == 3007 and "Audio Transmission Rate" in str(info.value)
    assert "pacing" in str(info.value)


@pytest.mark.parametrize("status", [401, 403])
async def test_http_refusal_on_upgrade_is_rejected_without_retry(status):
    async with FakeSttServer(FakeConnection.begin, reject={0: status}) as server:
        s = session(server.url)
        with pytest.raises(SttRejected) as info:
            await s.start()
    assert server.attempts == 1
    assert f"HTTP {status}" in str(info.value)
    assert "check ASSEMBLYAI_API_KEY" in str(info.value)


async def test_malformed_json_is_skipped():
    async def script(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.send_raw("{not json")
        await conn.send_raw('{"type": "Turn", "turn_order": "zero"}')
        await conn.send_json({"type": "NewThing2027", "data": 1})
        await conn.send_json(turn_message(0, [("Fine.", 0, 100)]))
        await conn.terminate_reply()

    async with FakeSttServer(script) as server:
        events = await run(session(server.url), 200)
    finals = [e.transcript for e in events if isinstance(e, FinalTranscript)]
    assert finals == ["Fine."]
    assert server.attempts == 1


async def test_pacing_never_faster_than_realtime():
    factor = 20.0

    async def script(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.terminate_reply()

    async with FakeSttServer(script) as server:
        s = session(server.url, realtime_factor=factor)
        await s.start()
        reader = asyncio.create_task(collect(s))
        for t in range(0, 10_000, 10):  # 10 s of audio, as fast as possible
            s.send(pcm(t, 10))
        await s.stop()
        await reader
    conn = server.connections[0]
    times = [r.at for r in conn.received if isinstance(r.data, bytes)]
    assert len(conn.audio_bytes) == 10 * BPS and len(times) == 100
    # Chunk k (100 ms each) goes no earlier than k * 100 ms of audio clock after Begin.
    assert conn.begin_sent_at is not None
    for k, at in enumerate(times):
        assert at - conn.begin_sent_at >= (k * 0.1) / factor
    assert times[-1] - conn.begin_sent_at >= 9.9 / factor


async def test_gives_up_after_bounded_time():
    async with FakeSttServer(FakeConnection.begin, reject=dict.fromkeys(range(1000), 503)) as srv:
        s = session(srv.url, give_up_s=0.5)
        started = time.monotonic()
        with pytest.raises(SttConnectionError) as info:
            await s.start()
    assert 0.3 < time.monotonic() - started < 2.0
    assert "gave up reconnecting" in str(info.value) and "HTTP 503" in str(info.value)
    assert srv.attempts > 2


async def test_quick_failures_stop_the_retry_loop():
    async def script(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.close(1011, "")

    async with FakeSttServer(script) as server:
        s = session(server.url, quick_failure_limit=3, give_up_s=30)
        await s.start()
        with pytest.raises(SttConnectionError) as info:
            await collect(s)
    assert server.attempts == 3
    assert "3 times in a row" in str(info.value)


async def test_3008_reopens_immediately():
    async def first(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.wait_audio(3200)
        await conn.close(3008, "Session Expired: Maximum session duration exceeded")

    async def second(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.terminate_reply()

    async with FakeSttServer([first, second]) as server:
        # A huge backoff proves the reopen does not wait for it.
        s = session(server.url, backoff_initial_s=30, backoff_max_s=30)
        await s.start()
        reader = asyncio.create_task(collect(s))
        s.send(pcm(0, 100))
        await server.wait_connections(2)
        await s.stop()
        events = await reader
    assert [e.disposition for e in events if isinstance(e, Closed)] == [
        Disposition.REOPEN,
        Disposition.DONE,
    ]


async def test_inactivity_close_reopens_only_when_audio_returns():
    final_seen = asyncio.Event()  # the reader has yielded a FinalTranscript

    async def first(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.wait_audio(3200)
        await conn.send_json(turn_message(0, [("Hi.", 0, 100)]))
        await asyncio.wait_for(final_seen.wait(), TIMEOUT)  # all audio final: nothing to resend
        await conn.close(3006, "Session idle for too long")

    async def second(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.terminate_reply()

    async with FakeSttServer([first, second]) as server:
        s = session(server.url, inactivity_timeout_s=5)
        await s.start()
        reader = asyncio.create_task(collect(s, final_seen))
        s.send(pcm(0, 100))
        await server.connections[0].client_gone.wait()
        # A negative check, so a bounded wait: no reconnect in this window (nothing can
        # signal an attempt that is never made).
        await asyncio.sleep(0.2)
        assert server.attempts == 1  # waits for audio
        s.send(pcm(5000, 100))
        second_conn = await server.wait_connections(2)
        await second_conn.wait_audio(3200)
        await s.stop()
        await reader
    assert second_conn.audio_bytes == pcm(5000, 100)  # the idle socket's audio is not replayed


async def test_update_configuration_is_sent_and_reapplied_after_reconnect():
    async def first(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.wait_text("UpdateConfiguration")
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.terminate_reply()

    async with FakeSttServer([first, second]) as server:
        s = session(server.url)
        await s.start()
        reader = asyncio.create_task(collect(s))
        s.update_configuration(keyterms_prompt=["Acme"], max_turn_silence=2000)
        s.force_endpoint()
        await server.wait_connections(2)
        s.send(pcm(0, 100))
        await s.stop()
        await reader
    expected = {
        "type": "UpdateConfiguration",
        "keyterms_prompt": ["Acme"],
        "max_turn_silence": 2000,
    }
    assert server.connections[0].texts[0] == expected
    assert server.connections[1].texts[0] == expected


async def test_no_begin_in_time_is_retried():
    async def silent(conn: FakeConnection) -> None:
        await conn.ws.wait_closed()

    async def second(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.terminate_reply()

    async with FakeSttServer([silent, second]) as server:
        s = session(server.url, connect_timeout_s=0.2)
        await s.start()
        await s.stop()
    assert server.attempts == 2 and s.error is None


async def test_token_goes_in_query_and_cannot_reconnect():
    async def script(conn: FakeConnection) -> None:
        await conn.begin()
        conn.drop()

    async with FakeSttServer(script) as server:
        s = session(server.url, api_key=None, token="tmp-tok")
        await s.start()
        with pytest.raises(SttRejected) as info:
            await collect(s)
    assert server.connections[0].query["token"] == "tmp-tok"
    assert "Authorization" not in server.connections[0].headers
    assert server.attempts == 1 and "one session only" in str(info.value)


async def test_partials_and_session_started_types():
    async def script(conn: FakeConnection) -> None:
        await conn.begin("x")
        await conn.send_json(turn_message(0, [("a", 0, 10)], final=False))
        await conn.terminate_reply()

    async with FakeSttServer(script) as server:
        events = await run(session(server.url), 100)
    assert isinstance(events[0], SessionStarted) and events[0].id == "x"
    assert any(isinstance(e, PartialTranscript) for e in events)


def test_repr_hides_the_key():
    s = SttStream(ConnectSettings(url="wss://x/v3/ws", api_key=KEY))
    assert KEY not in repr(s) and "wss://x/v3/ws" in repr(s)
    t = SttStream(ConnectSettings(url="wss://x/v3/ws", token="tok-secret"))
    assert "tok-secret" not in repr(t)


def _response(status: int) -> Response:
    return Response(status, "x", Headers())


FOREIGN_SAMPLES = [
    InvalidStatus(_response(401)),
    InvalidStatus(_response(410)),
    InvalidStatus(_response(400)),
    InvalidStatus(_response(429)),
    InvalidStatus(_response(503)),
    InvalidURI("http://x", "not ws"),
    InvalidMessage("bad response"),
    InvalidHandshake("bad"),
    ConnectionClosedError(Close(1011, ""), None),
    WebSocketException("x"),
    TimeoutError(),
    ConnectionRefusedError(111, "Connection refused"),
    OSError("no route"),
    EOFError(),
]


@pytest.mark.parametrize("exc", FOREIGN_SAMPLES, ids=lambda e: type(e).__name__)
def test_every_foreign_exception_is_mapped(exc):
    with pytest.raises(RecorderError) as info, map_exceptions("wss://x/v3/ws"):
        raise exc
    assert info.value.__cause__ is exc
    assert isinstance(info.value, SttRejected | SttConnectionError)


def test_foreign_sample_list_covers_every_caught_type():
    for kind in FOREIGN_EXCEPTIONS:
        assert any(type(e) is kind or isinstance(e, kind) for e in FOREIGN_SAMPLES), kind


@pytest.mark.parametrize(
    ("status", "rejected"), [(401, True), (403, True), (404, True), (429, False), (503, False)]
)
def test_http_status_mapping(status, rejected):
    with pytest.raises(RecorderError) as info, map_exceptions("wss://x/v3/ws"):
        raise InvalidStatus(_response(status))
    assert isinstance(info.value, SttRejected) is rejected


async def test_short_replay_head_is_padded_and_offsets_stay_right():
    # The final ends 30 ms before the end of everything sent: the replay head is 30 ms,
    # padded to 50 ms; audio after it is mapped back to caller positions (a second piece).
    final_seen = asyncio.Event()  # the reader has yielded a FinalTranscript

    async def first(conn: FakeConnection) -> None:
        await conn.begin("a")
        await conn.wait_audio(BPS)
        await conn.send_json(turn_message(0, [("One.", 100, 970)]))
        await asyncio.wait_for(final_seen.wait(), TIMEOUT)  # trimmed before the drop
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.begin("b")
        await conn.wait_audio(int(0.55 * BPS))
        # Socket time 150-250 ms is caller time 1100-1200 ms (50 ms of it was the pad).
        await conn.send_json(turn_message(0, [("Two.", 150, 250)]))
        await conn.terminate_reply()

    async with FakeSttServer([first, second]) as server:
        s = session(server.url)
        await s.start()
        reader = asyncio.create_task(collect(s, final_seen))
        for t in range(0, 1000, 100):
            s.send(pcm(t, 100))
        await server.wait_connections(2)
        await server.connections[1].wait_audio(1600)
        for t in range(1000, 1500, 100):
            s.send(pcm(t, 100))
        await s.stop()
        events = await reader
    two = server.connections[1]
    assert two.audio_bytes == pcm(970, 30) + bytes(640) + pcm(1000, 500)
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert [(f.socket_index, f.start_ms, f.end_ms) for f in finals] == [
        (0, 100, 970),
        (1, 1100, 1200),
    ]


@pytest.mark.parametrize("auth", ["key", "token"])
async def test_debug_logs_never_contain_the_key_or_token(caplog, auth):
    secret = "s3cr3t-value-987"

    async def script(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.terminate_reply()

    caplog.set_level(logging.DEBUG)
    async with FakeSttServer(script) as server:
        kwargs = {"api_key": secret} if auth == "key" else {"api_key": None, "token": secret}
        await run(session(server.url, **kwargs), 200)
    assert server.connections[0].text_types() == ["Terminate"]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("recorder")]
    assert any(m.startswith("> GET /v3/ws") for m in ours)  # the handshake log was on
    assert any(m.startswith("> Authorization") for m in ours) is (auth == "key")
    assert not [m for m in ours if secret in m]  # (the fake server's own logs may show it)


async def test_backlog_overflow_during_an_outage_is_reported_and_mapped():
    async def first(conn: FakeConnection) -> None:
        await conn.begin("a")
        await conn.wait_audio(3200)
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.begin("b")
        await conn.wait_audio(int(0.6 * BPS))
        # Socket time 150 ms: 50 ms into the second piece, which starts at caller 600 ms.
        await conn.send_json(turn_message(0, [("After.", 150, 250)]))
        await conn.terminate_reply()

    async with FakeSttServer([first, second]) as server:
        s = session(server.url, backlog_max_s=0.5, backoff_initial_s=0.5, backoff_max_s=0.5)
        await s.start()
        events: list = []
        dropped_seen = asyncio.Event()

        async def read() -> None:
            async for event in s.events():
                events.append(event)
                if isinstance(event, Closed):
                    dropped_seen.set()

        reader = asyncio.create_task(read())
        s.send(pcm(0, 100))
        await dropped_seen.wait()  # the first socket is gone; the session is backing off
        for t in range(100, 1100, 100):
            s.send(pcm(t, 100))
        await server.wait_connections(2)
        await s.stop()
        await reader
    assert [(e.audio_offset_ms, e.duration_ms) for e in events if isinstance(e, AudioDropped)] == [
        (100, 500)
    ]
    assert s.dropped_bytes == 500 * 32
    assert server.connections[1].audio_bytes == pcm(0, 100) + pcm(600, 500)
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert [(f.socket_index, f.start_ms) for f in finals] == [(1, 650)]


async def test_aclose_aborts_without_terminate():
    async def script(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.ws.wait_closed()

    async with FakeSttServer(script) as server:
        s = session(server.url)
        await s.start()
        s.send(pcm(0, 100))
        await server.connections[0].wait_audio(3200)
        await s.aclose()
        await server.connections[0].client_gone.wait()
        assert [e async for e in s.events()][-1].__class__ is SocketClosed
    assert server.connections[0].text_types() == []


async def test_unasked_termination_is_treated_as_a_drop():
    async def first(conn: FakeConnection) -> None:
        await conn.begin("a")
        await conn.wait_audio(3200)
        await conn.send_json(
            {"type": "Termination", "audio_duration_seconds": 0, "session_duration_seconds": 1}
        )
        await conn.ws.close(1000)

    async def second(conn: FakeConnection) -> None:
        await conn.begin("b")
        await conn.terminate_reply()

    async with FakeSttServer([first, second]) as server:
        s = session(server.url)
        await s.start()
        reader = asyncio.create_task(collect(s))
        s.send(pcm(0, 100))
        await server.wait_connections(2)
        s.send(pcm(100, 100))
        await s.stop()
        await reader
    assert server.connections[1].audio_bytes == pcm(0, 200)  # nothing was finalised: replayed
    assert s.error is None


async def test_cancelled_start_leaves_no_task_behind():
    async def never_begins(conn: FakeConnection) -> None:
        await conn.ws.wait_closed()

    async with FakeSttServer(never_begins) as server:
        s = session(server.url, connect_timeout_s=30)
        task = asyncio.create_task(s.start())
        await server.wait_connections(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.connections[0].client_gone.wait()
    assert s._runner is not None and s._runner.done()


async def test_stop_during_backoff_returns_at_once_when_everything_was_finalised():
    final_seen = asyncio.Event()  # the reader has yielded a FinalTranscript

    async def script(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.wait_audio(3200)
        await conn.send_json(turn_message(0, [("Done.", 0, 100)]))
        await asyncio.wait_for(final_seen.wait(), TIMEOUT)  # all audio final before the close
        await conn.close(1011, "")

    async with FakeSttServer(script) as server:
        s = session(server.url, backoff_initial_s=30, backoff_max_s=30)
        await s.start()
        reader = asyncio.create_task(collect(s, final_seen))
        s.send(pcm(0, 100))
        await server.connections[0].client_gone.wait()
        started = time.monotonic()
        await s.stop()
        assert time.monotonic() - started < 1.0
        await reader
    assert server.attempts == 1


async def test_audio_sent_before_start_is_held_and_goes_out_first():
    async def script(conn: FakeConnection) -> None:
        await conn.begin("a")
        await conn.terminate_reply()

    async with FakeSttServer(script) as server:
        s = session(server.url)
        for t in range(0, 300, 100):  # the pipeline's pre-roll and first speech
            s.send(pcm(t, 100))
        await s.start()
        reader = asyncio.create_task(collect(s))
        s.send(pcm(300, 100))
        await s.stop()
        events = await reader
    assert server.connections[0].audio_bytes == pcm(0, 400)
    assert [e.audio_offset_ms for e in events if isinstance(e, SocketOpened)] == [0]
    assert s.dropped_bytes == 0


async def test_audio_held_before_start_has_the_one_cap():
    async def script(conn: FakeConnection) -> None:
        await conn.begin("a")
        await conn.wait_audio(int(0.2 * BPS))
        await conn.send_json(turn_message(0, [("Kept.", 50, 150)]))
        await conn.terminate_reply()

    async with FakeSttServer(script) as server:
        s = session(server.url, backlog_max_s=0.2)
        for t in range(0, 500, 100):  # a socket slow to open: more than the cap waits
            s.send(pcm(t, 100))
        await s.start()
        events = await run_to_end(s)
    assert [(e.audio_offset_ms, e.duration_ms) for e in events if isinstance(e, AudioDropped)] == [
        (0, 300)
    ]
    assert s.dropped_bytes == 300 * 32
    assert server.connections[0].audio_bytes == pcm(300, 200)
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert [(f.audio_offset_ms, f.start_ms) for f in finals] == [(300, 350)]


async def run_to_end(s: SttStream) -> list:
    reader = asyncio.create_task(collect(s))
    async with asyncio.timeout(TIMEOUT * 2):
        await s.stop()
        return await reader


async def test_pacing_runs_on_the_injected_clock():
    clock = ManualClock()

    async def script(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.terminate_reply()

    async with FakeSttServer(script) as server:
        s = session(server.url, realtime_factor=1.0, clock=clock)
        await s.start()
        conn = server.connections[0]
        for t in range(0, 500, 100):  # five chunks at once, at clock time 0
            s.send(pcm(t, 100))
        async with asyncio.timeout(TIMEOUT):
            for k in range(1, 5):
                # Chunk k may go once k chunks have played: the stream waits for the clock,
                # and until the test moves it exactly k chunks have gone.
                await clock.wait_sleeping_until(k * 3200 / BPS)
                await conn.wait_audio(k * 3200)
                assert len(conn.audio_bytes) == k * 3200
                clock.advance(0.1)
            await conn.wait_audio(5 * 3200)
        events = await run_to_end(s)
    assert conn.audio_bytes == pcm(0, 500)
    assert any(isinstance(e, SocketClosed) for e in events)


class RecordingGate:
    """A SessionGate that records what the stream asked of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def acquire(self) -> None:
        self.calls.append("acquire")

    def opened(self) -> None:
        self.calls.append("opened")

    def refused(self) -> None:
        self.calls.append("refused")


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (3009, "Unauthorized Connection: Too many concurrent sessions"),
        (1008, "Unauthorized connection: Too many concurrent sessions"),  # before 2026-02-24
    ],
)
async def test_a_rate_refusal_is_reported_and_the_retry_waits_for_the_gate(code, reason):
    async def refuse(conn: FakeConnection) -> None:
        await conn.close(code, reason)

    async def accept(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.terminate_reply()

    gate = RecordingGate()
    async with FakeSttServer([refuse, accept]) as server:
        s = session(server.url, gate=gate)
        await s.start()
        await s.stop()
    assert s.error is None and server.attempts == 2
    # The caller paid for the first attempt; the retry is paid here, after the refusal.
    assert gate.calls == ["refused", "acquire", "opened"]


async def test_other_closes_before_begin_are_not_rate_refusals():
    async def fail(conn: FakeConnection) -> None:
        await conn.close(1011, "internal error")

    async def accept(conn: FakeConnection) -> None:
        await conn.begin()
        await conn.terminate_reply()

    gate = RecordingGate()
    async with FakeSttServer([fail, accept]) as server:
        s = session(server.url, gate=gate)
        await s.start()
        await s.stop()
    assert gate.calls == ["acquire", "opened"]
