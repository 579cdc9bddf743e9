"""The Voice Agent emulator against the documented protocol, driven by a raw websockets client.

See docs/providers.md, "Voice Agent: protocol".
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from recorder.emulator.agent.config import CURRENT_VOICES, AgentBehaviour, AgentFaults
from recorder.emulator.agent.server import VoiceAgentEmulator
from recorder.emulator.agent.voice import extractive_reply, synthesize
from recorder.tonecode import decode, encode
from tests.support.timing import TIMEOUT

KEY = "emulator-key"
BEARER = {"Authorization": f"Bearer {KEY}"}
GREETING = "Here is the recap. Ana agreed to ship the beta on Friday."


def emulator(**kwargs: Any) -> VoiceAgentEmulator:
    kwargs.setdefault("realtime_factor", math.inf)
    kwargs.setdefault("api_keys", {KEY})
    return VoiceAgentEmulator(**kwargs)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        frame = await ws.recv()
    assert isinstance(frame, str)  # every server frame is JSON text (item 20)
    message = json.loads(frame)
    assert isinstance(message.get("type"), str)
    return message  # type: ignore[no-any-return]


async def receive_until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = await receive(ws)
        messages.append(message)
        if message["type"] == kind:
            return messages


async def closed(ws: ClientConnection) -> tuple[int | None, list[dict[str, Any]]]:
    """Read every frame until the server closes; the close code and the frames."""
    frames = []
    try:
        while True:
            frames.append(await receive(ws))
    except ConnectionClosed:
        pass
    return ws.close_code, frames


async def send(ws: ClientConnection, message: dict[str, Any] | str) -> None:
    await ws.send(message if isinstance(message, str) else json.dumps(message))


def update(**session: Any) -> dict[str, Any]:
    return {"type": "session.update", "session": session}


def audio_of(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(m["data"]) for m in messages if m["type"] == "reply.audio")


@pytest.fixture
async def served() -> AsyncIterator[tuple[VoiceAgentEmulator, str]]:
    agent = emulator()
    async with agent.serve() as server:
        yield agent, server.url


async def ready(url: str, **session: Any) -> ClientConnection:
    ws = await connect(url, additional_headers=BEARER, compression=None)
    await send(ws, update(**session))
    message = await receive(ws)
    assert message["type"] == "session.ready", message
    return ws


# Item 1: authentication.


@pytest.mark.parametrize(
    ("headers", "behaviour", "code"),
    [
        ({}, AgentBehaviour(), "UNAUTHORIZED"),
        ({"Authorization": "Bearer wrong"}, AgentBehaviour(), "UNAUTHORIZED"),
        ({"Authorization": KEY}, AgentBehaviour(), "UNAUTHORIZED"),  # raw key, no Bearer
        ({}, AgentBehaviour(lowercase_codes=True), "unauthorized"),
    ],
)
async def test_bad_credentials_get_one_error_then_1008(
    headers: dict[str, str], behaviour: AgentBehaviour, code: str
) -> None:
    agent = emulator(behaviour=behaviour)
    async with agent.serve() as server, connect(server.url, additional_headers=headers) as ws:
        close_code, frames = await closed(ws)
    assert close_code == 1008
    assert [frame["type"] for frame in frames] == ["session.error"]
    assert frames[0]["code"] == code


async def test_raw_key_switch_accepts_a_key_without_bearer() -> None:
    agent = emulator(behaviour=AgentBehaviour(accept_raw_key=True))
    async with agent.serve() as server:
        async with connect(server.url, additional_headers={"Authorization": KEY}) as ws:
            await send(ws, update())
            assert (await receive(ws))["type"] == "session.ready"


# Item 2: temporary tokens.


async def http_get(host: str, port: int, target: str, auth: str | None) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection(host, port)
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}"]
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    async with asyncio.timeout(TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        body = await reader.readexactly(length)
    writer.close()
    await writer.wait_closed()
    return int(head.split()[1]), json.loads(body)


async def test_token_endpoint_and_single_use_tokens() -> None:
    agent = emulator()
    async with agent.serve() as server:
        host, port = server.host, server.port
        path = "/v1/token?expires_in_seconds=60"
        assert (await http_get(host, port, path, None))[0] == 401
        assert (await http_get(host, port, path, "Bearer nope"))[0] == 401
        assert (await http_get(host, port, "/v1/token", f"Bearer {KEY}"))[0] == 400
        bad_window = "/v1/token?expires_in_seconds=601"
        assert (await http_get(host, port, bad_window, f"Bearer {KEY}"))[0] == 400
        bad_cap = path + "&max_session_duration_seconds=59"
        assert (await http_get(host, port, bad_cap, f"Bearer {KEY}"))[0] == 400
        status, body = await http_get(host, port, path, KEY)  # raw key accepted here
        assert status == 200 and body["expires_in_seconds"] == 60
        status, body = await http_get(host, port, path, f"Bearer {KEY}")
        assert status == 200
        token_url = f"{server.url}?token={body['token']}"
        async with connect(token_url) as ws:
            await send(ws, update())
            assert (await receive(ws))["type"] == "session.ready"
        async with connect(token_url) as ws:  # already used
            close_code, frames = await closed(ws)
        assert close_code == 1008 and frames[0]["code"] == "UNAUTHORIZED"


# Items 3-8: session.update and input rules.


async def test_silent_until_the_first_frame_then_ready_with_a_session_id(
    served: tuple[VoiceAgentEmulator, str],
) -> None:
    _, url = served
    async with connect(url, additional_headers=BEARER) as ws:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await ws.recv()
        await send(ws, update(system_prompt="Be brief."))
        message = await receive(ws)
    assert message["type"] == "session.ready"
    assert re.fullmatch(r"sess_[0-9a-f]{32}", message["session_id"])


async def test_agent_id_rules(served: tuple[VoiceAgentEmulator, str]) -> None:
    _, url = served
    async with connect(url, additional_headers=BEARER) as ws:
        await send(ws, update(agent_id="a1", system_prompt="x"))
        assert (await receive(ws))["code"] == "invalid_config"
        await send(ws, update(agent_id="a1"))
        close_code, frames = await closed(ws)
    assert frames[0]["code"] == "agent_not_found" and close_code == 1008
    ws = await ready(url)
    async with ws:
        await send(ws, update(agent_id="a1"))
        assert (await receive(ws))["code"] == "agent_id_not_first"


async def test_voice_catalogue(served: tuple[VoiceAgentEmulator, str]) -> None:
    _, url = served
    assert len(CURRENT_VOICES) == 21 and "ivy" in CURRENT_VOICES
    async with connect(url, additional_headers=BEARER) as ws:
        await send(ws, update(output={"voice": "claire"}))
        error = await receive(ws)
        assert (error["code"], error["param"]) == ("invalid_value", "output.voice")
        await send(ws, update(output={"voice": "tyler"}))  # the socket stayed open
        assert (await receive(ws))["type"] == "session.ready"


async def test_mutable_and_immutable_updates(served: tuple[VoiceAgentEmulator, str]) -> None:
    agent, url = served
    ws = await ready(url, greeting="Hi.", system_prompt="one")
    async with ws:
        await receive_until(ws, "reply.done")  # the greeting
        await send(
            ws,
            update(
                system_prompt="two",
                tools=[],
                input={"keyterms": ["Ana"], "turn_detection": {"min_silence": 800}},
                output={"volume": 60},
            ),
        )
        assert (await receive(ws))["type"] == "session.updated"
        for field, session in [
            ("greeting", {"greeting": "Bye."}),
            ("output.voice", {"output": {"voice": "james"}}),
            ("output.format", {"output": {"format": {"encoding": "audio/pcmu"}}}),
        ]:
            await send(ws, update(system_prompt=f"after {field}", **session))
            error = await receive(ws)
            assert (error["type"], error["code"], error["param"]) == (
                "session.error",
                "immutable_field",
                field,
            )
        await send(ws, {"type": "session.end"})
        await closed(ws)
    await agent.sessions[0].closed.wait()
    config = agent.sessions[0].config
    assert config is not None
    assert (config.greeting, config.voice, config.output_encoding) == ("Hi.", "ivy", "audio/pcm")
    assert config.system_prompt == "after output.format"  # other fields were applied
    assert config.volume == 60 and config.keyterms == ("Ana",)


@pytest.mark.parametrize(
    "frame", ["{not json", json.dumps({"no": "type"}), json.dumps({"type": "reply.cancel"})]
)
async def test_bad_frames_are_invalid_format_and_the_socket_stays_open(
    served: tuple[VoiceAgentEmulator, str], frame: str
) -> None:
    _, url = served
    ws = await ready(url)
    async with ws:
        await send(ws, frame)
        assert (await receive(ws))["code"] == "invalid_format"
        await ws.send(b"\x00\x01")  # binary frames too (item 20)
        assert (await receive(ws))["code"] == "invalid_format"
        await send(ws, {"type": "reply.create", "instructions": "Read this: still here."})
        messages = await receive_until(ws, "reply.done")
    assert [m["text"] for m in messages if m["type"] == "transcript.agent"] == ["still here."]


async def test_undocumented_events_switch() -> None:
    agent = emulator(behaviour=AgentBehaviour(accept_undocumented=True))
    async with agent.serve() as server:
        ws = await ready(server.url)
        async with ws:
            await send(ws, {"type": "conversation.message", "role": "user", "content": "hi"})
            await send(ws, {"type": "reply.cancel"})
            await send(ws, {"type": "session.end"})
            close_code, frames = await closed(ws)
    assert [f["type"] for f in frames] == ["session.ended"] and close_code == 1000


async def test_input_audio_rules(served: tuple[VoiceAgentEmulator, str]) -> None:
    agent, url = served
    pcm = bytes(4_800)  # 100 ms at 24 kHz
    async with connect(url, additional_headers=BEARER) as ws:
        await send(ws, {"type": "input.audio", "audio": base64.b64encode(pcm).decode()})
        await send(ws, update())
        assert (await receive(ws))["type"] == "session.ready"  # early audio: silently dropped
        await send(ws, {"type": "input.audio", "audio": "!!not base64"})
        assert (await receive(ws))["code"] == "invalid_audio"
        await send(ws, {"type": "input.audio", "audio": base64.b64encode(b"abc").decode()})
        assert (await receive(ws))["code"] == "invalid_audio"  # odd length for PCM16
        await send(ws, {"type": "input.audio", "audio": base64.b64encode(pcm).decode()})
        await send(ws, {"type": "session.end"})
        close_code, frames = await closed(ws)
    assert frames[-1]["type"] == "session.ended" and close_code == 1000
    assert frames[-1]["audio_duration_seconds"] == pytest.approx(0.1)
    assert agent.sessions[0].input_audio_ms == pytest.approx(100)


# Items 9, 10, 13, 15, 22: replies, audio and the clean end.


async def test_greeting_reply_and_clean_end_in_the_documented_order(
    served: tuple[VoiceAgentEmulator, str],
) -> None:
    agent, url = served
    async with connect(url, additional_headers=BEARER) as ws:
        await send(ws, update(greeting=GREETING, system_prompt="Speak only when asked."))
        messages = await receive_until(ws, "reply.done")
        await send(ws, {"type": "session.end"})
        close_code, tail = await closed(ws)
    types = [m["type"] for m in messages]
    # Golden greeting-only sequence (docs/providers.md, "Voice Agent: protocol").
    assert types[:2] == ["session.ready", "reply.started"]
    assert set(types[2:-2]) == {"reply.audio"} and len(types[2:-2]) >= 1
    assert types[-2:] == ["transcript.agent", "reply.done"]
    transcript, done = messages[-2:]
    assert transcript["text"] == GREETING and transcript["interrupted"] is False
    assert done["status"] == "completed"
    assert [w.text for w in decode(audio_of(messages), 24_000)] == GREETING.split()
    assert len(audio_of(messages)) == len(encode(GREETING, 24_000))  # duration from the text
    assert [m["type"] for m in tail] == ["session.ended"] and close_code == 1000
    ended = tail[0]
    assert ended["audio_duration_seconds"] is None and ended["session_duration_seconds"] >= 0
    assert agent.sessions[0].is_end_received


async def test_reply_create_speaks_the_instructions_or_an_extractive_recap(
    served: tuple[VoiceAgentEmulator, str],
) -> None:
    _, url = served
    prompt = "Transcript:\n[00:00:01] Ana: Ship Friday. Really.\n[00:00:09] Bo: Fix login"
    ws = await ready(url, system_prompt=prompt)
    async with ws:
        await send(ws, {"type": "reply.create", "instructions": "Read this aloud: Hello there."})
        first = await receive_until(ws, "reply.done")
        await send(ws, {"type": "reply.create"})
        second = await receive_until(ws, "reply.done")
    text = [m["text"] for m in first + second if m["type"] == "transcript.agent"]
    assert text == ["Hello there.", "Ana said: Ship Friday. Bo said: Fix login."]
    assert extractive_reply(None, None) == "There is nothing to recap yet."


@pytest.mark.parametrize(("encoding", "rate"), [("audio/pcmu", 8_000), ("audio/pcma", 8_000)])
async def test_telephony_output_is_8_bit_8_khz(
    served: tuple[VoiceAgentEmulator, str], encoding: str, rate: int
) -> None:
    _, url = served
    ws = await ready(url, greeting=GREETING, output={"format": {"encoding": encoding}})
    async with ws:
        messages = await receive_until(ws, "reply.done")
    audio = audio_of(messages)
    expected = synthesize(GREETING).duration_ms * rate / 1000  # one byte per sample
    assert abs(len(audio) - expected) <= 2
    assert len(set(audio)) > 8  # real companded signal, not silence


async def test_volume_scales_and_zero_is_silence(served: tuple[VoiceAgentEmulator, str]) -> None:
    _, url = served
    levels = []
    for volume in (100, 50, 0):
        ws = await ready(url, greeting=GREETING, output={"volume": volume})
        async with ws:
            audio = np.frombuffer(audio_of(await receive_until(ws, "reply.done")), "<i2")
        levels.append(float(np.max(np.abs(audio))))
    assert levels[1] == pytest.approx(levels[0] / 2, rel=0.01) and levels[2] == 0


async def test_audio_is_paced_by_the_realtime_factor_in_chunks() -> None:
    factor = 20.0
    agent = emulator(realtime_factor=factor, behaviour=AgentBehaviour(chunk_ms=50))
    loop = asyncio.get_running_loop()
    async with agent.serve() as server:
        ws = await ready(server.url)
        async with ws:
            await send(ws, {"type": "reply.create", "instructions": f"Read it: {GREETING}"})
            started = loop.time()
            messages = await receive_until(ws, "reply.done")
            elapsed = loop.time() - started
    chunks = [base64.b64decode(m["data"]) for m in messages if m["type"] == "reply.audio"]
    assert all(len(chunk) == 2_400 for chunk in chunks[:-1])  # 50 ms at 24 kHz
    audio_s = sum(map(len, chunks)) / 48_000
    assert audio_s / factor * 0.8 < elapsed < audio_s / factor + 1.0


# Items 10 and 12: interruption.


async def test_reply_create_during_a_reply_cancels_it_with_the_switch() -> None:
    agent = emulator(realtime_factor=5.0, behaviour=AgentBehaviour(create_cancels_reply=True))
    async with agent.serve() as server:
        ws = await ready(server.url)
        async with ws:
            await send(ws, {"type": "reply.create", "instructions": f"Read it: {GREETING}"})
            await receive_until(ws, "reply.audio")
            await send(ws, {"type": "reply.create", "instructions": "Read it: Second."})
            # Interrupted: reply.done then transcript.agent (docs order); then the new reply.
            messages = await receive_until(ws, "transcript.agent")
            messages += await receive_until(ws, "reply.done")
    done = [m["status"] for m in messages if m["type"] == "reply.done"]
    texts = [(m["text"], m["interrupted"]) for m in messages if m["type"] == "transcript.agent"]
    assert done == ["interrupted", "completed"]
    assert texts[1] == ("Second.", False)
    heard, interrupted = texts[0]
    assert interrupted and GREETING.startswith(heard) and heard != GREETING


def speech_b64(text: str) -> list[str]:
    pcm = encode(text, 24_000)
    return [base64.b64encode(pcm[i : i + 4_800]).decode() for i in range(0, len(pcm), 4_800)]


@pytest.mark.parametrize("done_first", [True, False])
async def test_barge_in_from_input_speech(done_first: bool) -> None:
    behaviour = AgentBehaviour(interrupt_done_first=done_first)
    agent = emulator(realtime_factor=2.0, behaviour=behaviour)
    async with agent.serve() as server:
        ws = await ready(server.url)
        async with ws:
            await send(ws, {"type": "reply.create", "instructions": f"Read it: {GREETING}"})
            await receive_until(ws, "reply.audio")
            for chunk in speech_b64("okay"):  # a back-channel never interrupts
                await send(ws, {"type": "input.audio", "audio": chunk})
            for chunk in speech_b64("Wait stop."):
                await send(ws, {"type": "input.audio", "audio": chunk})
            messages = await receive_until(ws, "input.speech.started")
            tail = [await receive(ws), await receive(ws)]
    types = [m["type"] for m in tail]
    expected = ["reply.done", "transcript.agent"]
    assert types == (expected if done_first else expected[::-1])
    transcript = next(m for m in tail if m["type"] == "transcript.agent")
    assert transcript["interrupted"] is True and GREETING.startswith(transcript["text"])
    assert next(m for m in tail if m["type"] == "reply.done")["status"] == "interrupted"
    assert "reply.done" not in [m["type"] for m in messages]  # not cut by the back-channel
    assert agent.sessions[0].replies[0].status == "interrupted"


async def test_interrupt_response_false_lets_the_reply_finish() -> None:
    agent = emulator(realtime_factor=4.0)
    async with agent.serve() as server:
        ws = await ready(server.url, input={"turn_detection": {"interrupt_response": False}})
        async with ws:
            await send(ws, {"type": "reply.create", "instructions": f"Read it: {GREETING}"})
            await receive_until(ws, "reply.audio")
            for chunk in speech_b64("Wait stop."):
                await send(ws, {"type": "input.audio", "audio": chunk})
            messages = await receive_until(ws, "reply.done")
    assert messages[-1]["status"] == "completed"
    transcript = next(m for m in messages if m["type"] == "transcript.agent")
    assert transcript["text"] == GREETING and transcript["interrupted"] is False
    assert "input.speech.started" in [m["type"] for m in messages]  # heard, not obeyed


async def test_a_user_turn_gets_transcripts_and_an_answer() -> None:
    agent = emulator()
    async with agent.serve() as server:
        ws = await ready(server.url, input={"turn_detection": {"min_silence": 800}})
        async with ws:
            for chunk in speech_b64("Can you repeat that?"):  # ends with 1.2 s of silence
                await send(ws, {"type": "input.audio", "audio": chunk})
            messages = await receive_until(ws, "reply.done")
    types = [m["type"] for m in messages]
    assert types[:5] == ["input.speech.started"] + ["transcript.user.delta"] * 4
    deltas = [m["text"] for m in messages if m["type"] == "transcript.user.delta"]
    assert deltas == ["Can", "Can you", "Can you repeat", "Can you repeat that?"]  # cumulative
    assert types[5:8] == ["input.speech.stopped", "transcript.user", "reply.started"]
    assert messages[6]["text"] == "Can you repeat that?" and messages[6]["item_id"]
    answer = next(m for m in messages if m["type"] == "transcript.agent")
    assert answer["text"] == "You said: Can you repeat that?"


async def test_session_end_mid_reply_interrupts_it_then_ends() -> None:
    agent = emulator(realtime_factor=4.0)
    async with agent.serve() as server:
        ws = await ready(server.url)
        async with ws:
            await send(ws, {"type": "reply.create", "instructions": f"Read it: {GREETING}"})
            await receive_until(ws, "reply.audio")
            await send(ws, {"type": "session.end"})
            close_code, frames = await closed(ws)
    types = [f["type"] for f in frames if f["type"] != "reply.audio"]
    assert types == ["reply.done", "transcript.agent", "session.ended"] and close_code == 1000


# Items 16, 18, 19: cap, resume and faults.


async def test_session_cap_without_warning() -> None:
    agent = emulator(behaviour=AgentBehaviour(session_cap_s=0.3))
    async with agent.serve() as server:
        ws = await ready(server.url)
        async with ws:
            close_code, frames = await closed(ws)
    assert [f.get("code", f["type"]) for f in frames] == ["session_expired", "session.ended"]
    assert close_code == 1008


async def test_resume_always_fails(served: tuple[VoiceAgentEmulator, str]) -> None:
    _, url = served
    async with connect(url, additional_headers=BEARER) as ws:
        await send(ws, {"type": "session.resume", "session_id": "sess_" + "0" * 32})
        close_code, frames = await closed(ws)
    assert frames[0]["code"] == "session_not_found" and close_code == 1008
    assert frames[0]["message"] == "Session not found or grace window has expired"


@pytest.mark.parametrize(("code", "close_code"), [("INTERNAL_ERROR", 1011), ("server_error", 1008)])
async def test_setup_faults(code: str, close_code: int) -> None:
    agent = emulator(faults=AgentFaults(connect_error=(code, close_code)))
    async with agent.serve() as server, connect(server.url, additional_headers=BEARER) as ws:
        received_code, frames = await closed(ws)
    assert received_code == close_code and [f["code"] for f in frames] == [code]


async def test_drop_mid_reply_is_a_1006_without_session_ended() -> None:
    agent = emulator(faults=AgentFaults(drop_after_chunks=2))
    async with agent.serve() as server:
        ws = await ready(server.url)
        async with ws:
            await send(ws, {"type": "reply.create"})
            close_code, frames = await closed(ws)
    assert close_code == 1006
    assert [f["type"] for f in frames].count("reply.audio") == 2
    assert "session.ended" not in [f["type"] for f in frames]


async def test_agent_timeout_without_a_session_update() -> None:
    agent = emulator(behaviour=AgentBehaviour(ready_timeout_s=0.2))
    async with agent.serve() as server, connect(server.url, additional_headers=BEARER) as ws:
        close_code, frames = await closed(ws)
    assert [f["code"] for f in frames] == ["agent_timeout"] and close_code == 1011


async def test_strict_tools_switch() -> None:
    nested = [{"type": "function", "function": {"name": "f"}}]
    agent = emulator(behaviour=AgentBehaviour(strict_tools=True))
    async with agent.serve() as server:
        async with connect(server.url, additional_headers=BEARER) as ws:
            await send(ws, update(tools=nested))
            assert (await receive(ws))["code"] == "invalid_config"
            await send(ws, update(tools=[{"type": "function", "name": "f"}]))
            assert (await receive(ws))["type"] == "session.ready"
        ws = await ready(server.url)
        async with ws:
            await send(ws, {"type": "tool.result", "call_id": "nope", "result": "{}"})
            assert (await receive(ws))["code"] == "invalid_format"  # item 14: unknown call_id


async def test_records_every_client_frame(served: tuple[VoiceAgentEmulator, str]) -> None:
    agent, url = served
    ws = await ready(url)
    async with ws:
        await send(ws, {"type": "input.audio", "audio": base64.b64encode(bytes(2_400)).decode()})
        await send(ws, {"type": "session.end"})
        await closed(ws)
    record = agent.sessions[0]
    await record.closed.wait()
    assert record.received_types() == ["session.update", "input.audio", "session.end"]
    assert record.received[1]["audio_ms"] == pytest.approx(50)
    assert record.sent_types() == ["session.ready", "session.ended"]
    assert record.close_code == 1000


async def test_early_audio_is_buffered_with_the_switch() -> None:
    agent = emulator(behaviour=AgentBehaviour(buffer_early_audio=True))
    async with agent.serve() as server:
        async with connect(server.url, additional_headers=BEARER) as ws:
            await send(
                ws, {"type": "input.audio", "audio": base64.b64encode(bytes(4_800)).decode()}
            )
            await send(ws, update())
            assert (await receive(ws))["type"] == "session.ready"
            await send(ws, {"type": "session.end"})
            close_code, frames = await closed(ws)
    assert frames[-1]["audio_duration_seconds"] == pytest.approx(0.1) and close_code == 1000


async def test_bursts_send_several_chunks_back_to_back() -> None:
    factor = 5.0
    behaviour = AgentBehaviour(chunk_ms=50, burst_chunks=4)
    agent = emulator(realtime_factor=factor, behaviour=behaviour)
    loop = asyncio.get_running_loop()
    async with agent.serve() as server:
        ws = await ready(server.url)
        async with ws:
            await send(ws, {"type": "reply.create", "instructions": "Read it: One two three."})
            arrivals = []
            while True:
                message = await receive(ws)
                if message["type"] == "reply.audio":
                    arrivals.append(loop.time())
                if message["type"] == "reply.done":
                    break
    gaps = np.diff(arrivals)
    burst_period = 4 * 0.050 / factor  # 40 ms between bursts, ~0 inside one
    assert len(arrivals) >= 8
    assert np.sum(gaps > burst_period / 2) == pytest.approx((len(arrivals) - 1) // 4, abs=1)
