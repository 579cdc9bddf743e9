"""The streaming emulator over real sockets, driven by a raw websockets client.

What it must reproduce is in docs/providers.md, "Streaming: connecting" to "Streaming:
limits and billing".
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import websockets
from test_emulator_support import (
    RATE,
    SCRIPT,
    TIMEOUT,
    make_stand_in_emulator,
    open_client,
    silence,
    speech,
    tone,
)
from websockets.asyncio.client import connect

from recorder.clock import ManualClock
from recorder.emulator.streaming.records import StreamingBehaviour
from recorder.emulator.streaming.server import RunningServer, StreamingEmulator


@pytest.fixture
def make_emulator() -> Callable[..., StreamingEmulator]:
    return make_stand_in_emulator


@pytest.fixture
async def emulator() -> StreamingEmulator:
    return make_stand_in_emulator()


@pytest.fixture
async def server(emulator: StreamingEmulator) -> AsyncIterator[RunningServer]:
    async with emulator.serve() as running:
        yield running


async def http_get(server: RunningServer, path: str, key: str | None) -> tuple[int, dict[str, Any]]:
    """One plain HTTP GET on its own connection (the server closes after answering)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        auth = f"Authorization: {key}\r\n" if key else ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return int(head.split()[1]), json.loads(await reader.readexactly(length))
    finally:
        writer.close()
        await writer.wait_closed()


def three_sentences() -> bytes:
    return (
        speech(SCRIPT[:2])
        + silence(1200)
        + speech(SCRIPT[2:5])
        + silence(1200)
        + speech(SCRIPT[5:])
        + silence(340)
    )  # 5.5 s: a whole number of 100 ms frames


async def test_full_session_three_finals_and_termination(
    emulator: StreamingEmulator, server: RunningServer
) -> None:
    assert server.url.startswith("ws://127.0.0.1:") and server.url.endswith("/v3/ws")
    client = await open_client(server.url)
    begin = await client.next_of("Begin")
    assert uuid.UUID(begin["id"]).version == 4
    assert begin["expires_at"] >= int(emulator.clock.time()) + 10800 - 1
    await client.send_audio(three_sentences())
    await client.terminate()
    assert await client.closed() == (1000, "")
    kinds = [m["type"] for m in client.messages]
    assert kinds == ["Begin"] + ["SpeechStarted", "Turn"] * 3 + ["Termination"]
    finals = [m["transcript"] for m in client.of_type("Turn") if m["end_of_turn"]]
    assert finals == ["Hello there.", "How are you?", "Fine!"]
    termination = client.of_type("Termination")[0]
    audio_s = len(three_sentences()) / (2 * RATE)
    assert termination["audio_duration_seconds"] == round(audio_s)
    assert isinstance(termination["session_duration_seconds"], int)
    record = emulator.sessions[0]
    await asyncio.wait_for(record.closed.wait(), TIMEOUT)
    assert record.session_id == begin["id"]
    assert record.close_code == 1000
    assert record.audio_seconds == pytest.approx(audio_s)
    assert record.billed_seconds > 0
    assert [m["type"] for m in record.sent] == kinds
    assert all(isinstance(frame, str) for frame in client.raw)  # text frames only
    assert all(frame.kind == "audio" for frame in record.received[:-1])
    assert record.received[-1].text == '{"type": "Terminate"}'


async def test_timestamps_are_socket_relative_and_ignore_send_pauses(
    make_emulator: Callable[..., StreamingEmulator],
) -> None:
    emulator = make_emulator(["One.", "Two."], realtime_factor=1.0)
    async with emulator.serve() as server:
        firsts = []
        for _ in range(2):
            client = await open_client(server.url)
            await client.next_of("Begin")
            await client.ws.send(silence(300))
            # The pause is what is under test (a gap in sending must not move audio
            # time), not a wait for something to happen.
            await asyncio.sleep(0.3)
            await client.send_audio(tone(200) + silence(200))
            final = await client.next_of("Turn")
            firsts.append(final)
            await client.terminate()
            await client.closed()
    # Each socket starts at 0: both turns start 300 ms into that socket's audio.
    assert [(f["words"][0]["start"], f["words"][0]["end"]) for f in firsts] == [
        (300, 500),
        (300, 500),
    ]


@pytest.mark.parametrize("ms", [10, 40, 1010])
async def test_chunk_outside_50_to_1000_ms_closes_3007(server: RunningServer, ms: int) -> None:
    client = await open_client(server.url)
    await client.next_of("Begin")
    await client.ws.send(silence(ms))
    code, reason = await client.closed()
    assert code == 3007
    assert reason == f"Input duration violation: {ms} ms. Expected between 50 and 1000 ms"
    error = client.of_type("Error")[0]
    assert error["error_code"] == 3007
    assert error["error"] == f"Input Duration Error: {reason}"


async def test_frames_may_split_a_sample(
    emulator: StreamingEmulator, server: RunningServer
) -> None:
    pcm = tone(200) + silence(200)
    client = await open_client(server.url)
    await client.ws.send(pcm[:3201])
    await client.ws.send(pcm[3201:6400])
    await client.ws.send(pcm[6400:])
    await client.terminate()
    assert (await client.closed())[0] == 1000
    assert client.of_type("Turn")[0]["words"][0]["end"] == 200


@pytest.mark.parametrize("ms", [50, 1000])
async def test_chunk_bounds_are_inclusive(server: RunningServer, ms: int) -> None:
    client = await open_client(server.url)
    await client.next_of("Begin")
    await client.ws.send(silence(ms))
    await client.terminate()
    assert (await client.closed())[0] == 1000


async def test_short_tail_before_terminate_is_a_switch(
    make_emulator: Callable[..., StreamingEmulator],
) -> None:
    for allow, expected in [(False, 3007), (True, 1000)]:
        behaviour = StreamingBehaviour(processing_delay_s=0.0, allow_short_tail=allow)
        async with make_emulator(behaviour=behaviour).serve() as server:
            client = await open_client(server.url)
            await client.next_of("Begin")
            await client.ws.send(silence(100))
            await client.ws.send(silence(20))
            await client.terminate()
            assert (await client.closed())[0] == expected


async def test_short_frame_not_followed_by_terminate_still_closes(
    make_emulator: Callable[..., StreamingEmulator],
) -> None:
    behaviour = StreamingBehaviour(processing_delay_s=0.0, allow_short_tail=True)
    async with make_emulator(behaviour=behaviour).serve() as server:
        client = await open_client(server.url)
        await client.ws.send(silence(20))
        await client.ws.send(silence(100))
        assert (await client.closed())[0] == 3007


@pytest.mark.parametrize(("factor", "expected"), [(1.0, 3007), (100.0, 1000)])
async def test_burst_faster_than_real_time(
    make_emulator: Callable[..., StreamingEmulator], factor: float, expected: int
) -> None:
    emulator = make_emulator(realtime_factor=factor)
    async with emulator.serve() as server:
        client = await open_client(server.url)
        await client.next_of("Begin")
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(8):  # 8 s of audio in 0.16 s: 50 times real time
            await asyncio.sleep(max(0.0, start + i * 0.02 - loop.time()))
            try:
                await client.ws.send(silence(1000))
            except websockets.ConnectionClosed:
                break
        if expected == 1000:
            await client.terminate()
        code, reason = await client.closed()
    assert code == expected
    if expected == 3007:
        # Refused at the first frame past the 3 s allowance (4 s unless the loop stalled).
        assert reason is not None
        match = re.fullmatch(
            r"Audio Transmission Rate Exceeded: Received (\d+)\.0 sec\. audio in (\d\.\d{6}) sec",
            reason,
        )
        assert match, reason
        audio_s, elapsed_s = float(match.group(1)), float(match.group(2))
        assert audio_s > elapsed_s + 3.0
        assert emulator.sessions[0].audio_seconds == audio_s


async def test_real_time_pace_is_accepted(make_emulator: Callable[..., StreamingEmulator]) -> None:
    behaviour = StreamingBehaviour(processing_delay_s=0.0, rate_allowance_s=0.15)
    emulator = make_emulator(realtime_factor=1.0, behaviour=behaviour)
    async with emulator.serve() as server:
        client = await open_client(server.url)
        await client.next_of("Begin")
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(10):  # 1 s at 100 ms per frame, paced on the loop clock
            await asyncio.sleep(max(0.0, start + i * 0.1 - loop.time()))
            await client.ws.send(silence(100))
        await client.terminate()
        assert (await client.closed())[0] == 1000


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "Invalid JSON: not json"),
        ("[]", "Invalid Message: []"),
        ('{"kind": "Terminate"}', 'Invalid Message: {"kind": "Terminate"}'),
        ('{"type": "Finish"}', "Invalid Message Type: Finish"),
        (
            json.dumps({"type": "UpdateConfiguration", "keyterms_prompt": ["k"] * 101}),
            "Invalid Message: keyterms_prompt: at most 100 terms, got 101",
        ),
    ],
)
async def test_bad_text_frames_close_3006(server: RunningServer, frame: str, reason: str) -> None:
    client = await open_client(server.url)
    await client.next_of("Begin")
    await client.ws.send(frame)
    assert await client.closed() == (3006, reason)
    assert client.of_type("Error") == [{"type": "Error", "error_code": 3006, "error": reason}]


async def test_long_error_text_gets_the_pointer_reason(server: RunningServer) -> None:
    client = await open_client(server.url)
    frame = "x" * 200
    await client.ws.send(frame)
    code, reason = await client.closed()
    assert (code, reason) == (3006, "See Error message for details")
    assert client.of_type("Error")[0]["error"] == f"Invalid JSON: {frame}"


async def test_text_over_128_kb_closes_1009(server: RunningServer) -> None:
    client = await open_client(server.url)
    await client.ws.send(json.dumps({"type": "KeepAlive", "pad": "x" * 131072}))
    assert (await client.closed())[0] == 1009


async def test_message_over_128_kb_closes_1009(server: RunningServer) -> None:
    client = await open_client(server.url, "speech_model=u3-rt-pro&sample_rate=96000")
    await client.next_of("Begin")
    await client.ws.send(bytes(192000))  # 1 s at 96 kHz: a legal duration, too big
    assert await client.closed() == (1009, "Message too big")
    assert client.of_type("Error") == []


async def test_update_keep_alive_produce_no_reply(
    emulator: StreamingEmulator, server: RunningServer
) -> None:
    client = await open_client(server.url)
    await client.next_of("Begin")
    keyterms, silences = [], []
    for message in [
        {"type": "KeepAlive"},
        {
            "type": "UpdateConfiguration",
            "keyterms_prompt": ["Agora"],
            "min_turn_silence": 400,
            "sample_rate": 8000,
            "prompt": None,
        },
        {"type": "UpdateConfiguration", "keyterms_prompt": []},
    ]:
        await client.ws.send(json.dumps(message))
        await emulator.sessions[0].wait_received(len(keyterms) + 1)
        params = emulator.sessions[0].params
        assert params is not None
        keyterms.append(params.keyterms_prompt)
        silences.append(params.min_turn_silence_ms)
    await client.terminate()
    await client.closed()
    assert [m["type"] for m in client.messages] == ["Begin", "Termination"]
    assert keyterms == [(), ("Agora",), ()]  # replaced as a whole, [] clears
    assert silences == [100, 400, 400]
    assert params.sample_rate_hz == 16000  # not mutable: ignored


async def test_force_endpoint(server: RunningServer) -> None:
    client = await open_client(server.url)
    await client.next_of("Begin")
    await client.ws.send(json.dumps({"type": "ForceEndpoint"}))
    await client.send_audio(tone(250))  # + 50 ms silence: too short a pause for a partial
    await client.ws.send(json.dumps({"type": "ForceEndpoint"}))
    final = await client.next_of("Turn")
    assert final["end_of_turn"] is True and final["transcript"] == "Hello"
    await client.terminate()
    await client.closed()
    assert [m["type"] for m in client.messages] == ["Begin", "SpeechStarted", "Turn", "Termination"]


async def test_terminate_flushes_the_open_turn_and_ignores_later_audio(
    emulator: StreamingEmulator, server: RunningServer
) -> None:
    client = await open_client(server.url)
    await client.send_audio(tone(250))
    await client.terminate()
    await client.ws.send(tone(100))
    await client.closed()
    kinds = [m["type"] for m in client.messages]
    assert kinds == ["Begin", "SpeechStarted", "Turn", "Termination"]
    assert client.of_type("Turn")[0]["end_of_turn"] is True
    assert emulator.sessions[0].audio_seconds == pytest.approx(0.3)


async def test_client_close_without_terminate_gets_no_termination(
    emulator: StreamingEmulator, server: RunningServer
) -> None:
    client = await open_client(server.url)
    await client.next_of("Begin")
    await client.send_audio(speech(["Hello"]))
    await client.ws.close()
    await client.closed()
    record = emulator.sessions[0]
    await asyncio.wait_for(record.closed.wait(), TIMEOUT)
    assert record.close_code == 1000
    assert record.sent_of_type("Termination") == []


@pytest.mark.parametrize(
    ("headers", "query"),
    [({}, ""), ({"Authorization": "wrong"}, ""), ({"Authorization": "Bearer good"}, "")],
)
async def test_bad_or_missing_key_closes_1008_without_begin(
    make_emulator: Callable[..., StreamingEmulator], headers: dict[str, str], query: str
) -> None:
    emulator = make_emulator(api_keys={"good"})
    async with emulator.serve() as server:
        client = await open_client(
            server.url, f"speech_model=u3-rt-pro{query}", key=headers.get("Authorization")
        )
        code, reason = await client.closed()
    assert (code, reason) == (1008, "Unauthorized Connection: Missing Authorization header")
    assert [m["type"] for m in client.messages] == ["Error"]


@pytest.mark.parametrize(("key", "query"), [("good", ""), (None, "&token=good")])
async def test_key_in_header_or_token_query(
    make_emulator: Callable[..., StreamingEmulator], key: str | None, query: str
) -> None:
    emulator = make_emulator(api_keys={"good"})
    async with emulator.serve() as server:
        client = await open_client(server.url, f"speech_model=u3-rt-pro{query}", key=key)
        assert (await client.next_of("Begin"))["type"] == "Begin"
        await client.terminate()
        assert (await client.closed())[0] == 1000


async def test_any_non_empty_key_when_none_configured(server: RunningServer) -> None:
    client = await open_client(server.url, key="anything")
    await client.next_of("Begin")
    await client.ws.close()
    empty = await open_client(server.url, key=None)
    assert (await empty.closed())[0] == 1008


async def test_other_paths_are_not_upgraded(server: RunningServer) -> None:
    base = server.url.removesuffix("/v3/ws")
    for path, status in [("/v2/realtime/ws", 410), ("/v3/other", 404)]:
        with pytest.raises(websockets.InvalidStatus) as caught:
            await connect(base + path)
        assert caught.value.response.status_code == status


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("sample_rate=16000", "Invalid Message: speech_model"),
        ("speech_model=nova-3", "Invalid Message: speech_model"),
        (
            "speech_model=u3-rt-pro&sample_rate=abc",
            "Invalid Message: sample_rate: expected an integer, got 'abc'",
        ),
        (
            "speech_model=u3-rt-pro&language_detection=yes",
            "Invalid Message: language_detection: expected true or false, got 'yes'",
        ),
        (
            "speech_model=u3-rt-pro&inactivity_timeout=2",
            "Invalid Message: inactivity_timeout: must be between 5 and 3600, got 2",
        ),
        (
            "speech_model=u3-rt-pro&keyterms_prompt=Agora",
            "Invalid Message: keyterms_prompt: expected a JSON array of strings",
        ),
        (
            "speech_model=u3-rt-pro&encoding=opus",
            "Invalid Message: encoding: unsupported encoding 'opus'",
        ),
    ],
)
async def test_invalid_parameters_close_3006_before_begin(
    server: RunningServer, query: str, reason: str
) -> None:
    client = await open_client(server.url, query)
    assert await client.closed() == (3006, reason)
    assert [m["type"] for m in client.messages] == ["Error"]


async def test_parameters_parse_like_the_service(
    emulator: StreamingEmulator, server: RunningServer
) -> None:
    query = (
        "speech_model=u3-rt-pro&sample_rate=16000&language_detection=True&speaker_labels=TRUE"
        "&format_turns=false&keyterms_prompt=%5B%22Agora%22%2C%22" + "x" * 51 + "%22%5D"
        "&min_turn_silence=10&frobnicate=1&inactivity_timeout=30"
    )
    client = await open_client(server.url, query)
    await client.next_of("Begin")
    await client.ws.close()
    params = emulator.sessions[0].params
    assert params is not None
    assert params.language_detection is True and params.speaker_labels is True
    assert params.format_turns is False
    assert params.keyterms_prompt == ("Agora",)  # > 50 characters: ignored
    assert params.min_turn_silence_ms == 50  # clamped
    assert params.inactivity_timeout_s == 30
    assert params.ignored == ("frobnicate",)


async def test_mulaw_audio_is_heard(make_emulator: Callable[..., StreamingEmulator]) -> None:
    async with make_emulator(["Hi."]).serve() as server:
        client = await open_client(
            server.url, "speech_model=u3-rt-pro&encoding=pcm_mulaw&sample_rate=8000"
        )
        await client.next_of("Begin")
        loud, quiet = b"\x10" * 1600, b"\xff" * 1600  # 0xff is mu-law zero
        await client.ws.send(quiet[:800] + loud + quiet)
        await client.terminate()
        await client.closed()
    (final,) = client.of_type("Turn")
    assert final["transcript"] == "Hi."
    assert (final["words"][0]["start"], final["words"][0]["end"]) == (100, 300)


async def test_inactivity_timeout_with_manual_clock(
    make_emulator: Callable[..., StreamingEmulator],
) -> None:
    clock = ManualClock()
    emulator = make_emulator(clock=clock)
    async with emulator.serve() as server:
        client = await open_client(server.url, "speech_model=u3-rt-pro&inactivity_timeout=5")
        await client.next_of("Begin")
        record = emulator.sessions[0]
        await clock.wait_sleeping_until(5)  # the watchdog: idle deadline 0 + 5 s
        clock.advance(4)
        await client.ws.send(json.dumps({"type": "KeepAlive"}))  # resets the timer
        await record.wait_received(1)
        clock.advance(4)
        await clock.wait_sleeping_until(9)  # woke at 8, idle since 4: sleeps on
        await client.ws.send(silence(100))  # audio resets it too
        await record.wait_received(2)
        clock.advance(4.5)
        await clock.wait_sleeping_until(13)
        assert client.ws.close_code is None
        clock.advance(1)
        code, reason = await client.closed()
    assert code == 3006 and reason is not None and "5 s" in reason
    assert emulator.sessions[0].billed_seconds == pytest.approx(13.5)


async def test_three_hour_cap_closes_3008(
    make_emulator: Callable[..., StreamingEmulator],
) -> None:
    clock = ManualClock()
    emulator = make_emulator(clock=clock)
    async with emulator.serve() as server:
        client = await open_client(server.url)
        begin = await client.next_of("Begin")
        assert begin["expires_at"] == int(clock.time()) + 10800
        await clock.wait_sleeping_until(10800)
        clock.advance(10799)
        assert clock.deadlines == [10800]
        assert client.ws.close_code is None
        clock.advance(1)
        code, reason = await client.closed()
    assert (code, reason) == (3008, "Session Expired: Maximum session duration exceeded")
    assert client.of_type("Error")[0]["error_code"] == 3008
    assert client.of_type("Termination") == []
    assert emulator.sessions[0].billed_seconds == pytest.approx(10800)


async def test_rate_limit_closes_3009(make_emulator: Callable[..., StreamingEmulator]) -> None:
    behaviour = StreamingBehaviour(processing_delay_s=0.0, max_sessions_per_minute=1)
    clock = ManualClock()
    async with make_emulator(behaviour=behaviour, clock=clock).serve() as server:
        first = await open_client(server.url)
        await first.next_of("Begin")
        second = await open_client(server.url)
        assert await second.closed() == (
            3009,
            "Unauthorized Connection: Too many concurrent sessions",
        )
        clock.advance(60)
        third = await open_client(server.url)
        await third.next_of("Begin")


async def test_processing_delay_holds_turns_back(
    make_emulator: Callable[..., StreamingEmulator],
) -> None:
    behaviour = StreamingBehaviour(processing_delay_s=0.3)
    async with make_emulator(["Hi."], behaviour=behaviour).serve() as server:
        client = await open_client(server.url)
        await client.next_of("Begin")
        loop = asyncio.get_running_loop()
        await client.ws.send(tone(200) + silence(200))
        sent = loop.time()
        await client.next_of("Turn")
        assert loop.time() - sent >= 0.3
        await client.terminate()
        await client.closed()
    assert [m["type"] for m in client.messages][-2:] == ["Turn", "Termination"]


async def test_legacy_switch_sends_no_error_frames(
    make_emulator: Callable[..., StreamingEmulator],
) -> None:
    behaviour = StreamingBehaviour(processing_delay_s=0.0, legacy=True)
    async with make_emulator(behaviour=behaviour).serve() as server:
        client = await open_client(server.url)
        await client.next_of("Begin")
        await client.ws.send(silence(10))
        assert (await client.closed())[0] == 3007
    assert client.of_type("Error") == []


async def test_temporary_token_works_once(make_emulator: Callable[..., StreamingEmulator]) -> None:
    emulator = make_emulator(api_keys={"good"})
    async with emulator.serve() as server:
        status, body = await http_get(server, "/v3/token?expires_in_seconds=60", "good")
        assert status == 200 and body["expires_in_seconds"] == 60
        token = body["token"]
        first = await open_client(server.url, f"speech_model=u3-rt-pro&token={token}", key=None)
        await first.next_of("Begin")
        await first.ws.close()
        again = await open_client(server.url, f"speech_model=u3-rt-pro&token={token}", key=None)
        assert (await again.closed())[0] == 1008


async def test_token_in_header_and_token_limits(
    make_emulator: Callable[..., StreamingEmulator],
) -> None:
    clock = ManualClock()
    emulator = make_emulator(api_keys={"good"}, clock=clock)
    async with emulator.serve() as server:
        assert (await http_get(server, "/v3/token?expires_in_seconds=60", None))[0] == 401
        assert (await http_get(server, "/v3/token?expires_in_seconds=0", "good"))[0] == 400
        status, body = await http_get(server, "/v3/token?expires_in_seconds=601", "good")
        assert status == 400 and "error" in body
        assert (
            await http_get(
                server, "/v3/token?expires_in_seconds=9&max_session_duration_seconds=59", "good"
            )
        )[0] == 400
        _, body = await http_get(
            server, "/v3/token?expires_in_seconds=10&max_session_duration_seconds=60", "good"
        )
        capped = body["token"]
        _, body = await http_get(server, "/v3/token?expires_in_seconds=10", "good")
        late = body["token"]
        client = await open_client(server.url, key=capped)  # token in the header
        begin = await client.next_of("Begin")
        assert begin["expires_at"] == int(clock.time()) + 60  # the token's cap
        clock.advance(11)
        stale = await open_client(server.url, key=late)  # window passed
        assert (await stale.closed())[0] == 1008
        clock.advance(49)
        assert (await client.closed())[0] == 3008


async def test_unknown_model_switch(make_emulator: Callable[..., StreamingEmulator]) -> None:
    behaviour = StreamingBehaviour(processing_delay_s=0.0, reject_unknown_model=False)
    async with make_emulator(behaviour=behaviour).serve() as server:
        client = await open_client(server.url, "speech_model=nova-3")
        await client.next_of("Begin")
        await client.terminate()
        assert (await client.closed())[0] == 1000


async def test_rate_limit_legacy_1008_switch(
    make_emulator: Callable[..., StreamingEmulator],
) -> None:
    behaviour = StreamingBehaviour(
        processing_delay_s=0.0, max_sessions_per_minute=0, rate_limit_legacy_1008=True
    )
    async with make_emulator(behaviour=behaviour).serve() as server:
        client = await open_client(server.url)
        code, reason = await client.closed()
    assert (code, reason) == (1008, "Unauthorized Connection: Too many concurrent sessions")
