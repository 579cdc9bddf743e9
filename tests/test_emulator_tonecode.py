"""The streaming emulator hearing the real synthetic speech codec, end to end over sockets."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator

import numpy as np
import pytest
import websockets
from test_emulator_support import RATE, open_client
from websockets.asyncio.client import connect

from recorder import tonecode
from recorder.emulator.server import EmulatorServer, serve_emulators
from recorder.emulator.streaming.records import StreamingBehaviour
from recorder.emulator.streaming.server import StreamingEmulator
from tests.support.timing import TIMEOUT

SENTENCES = ["Hello there.", "How are you today?", "Let's ship the beta on Friday!"]


@pytest.fixture
async def emulators() -> AsyncIterator[EmulatorServer]:
    streaming = StreamingEmulator(
        realtime_factor=math.inf, behaviour=StreamingBehaviour(processing_delay_s=0.0)
    )
    async with serve_emulators(streaming=streaming) as running:
        yield running


@pytest.mark.parametrize("chunk_ms", [50, 100, 1000])
async def test_three_sentences_three_finals_with_codec_times(
    emulators: EmulatorServer, chunk_ms: int
) -> None:
    lead = tonecode.silence(700)
    pcm, words = tonecode.encode_words(" ".join(SENTENCES), RATE, start_ms=700)
    client = await open_client(emulators.urls["streaming"])
    await client.next_of("Begin")
    await client.send_audio(lead + pcm, ms=chunk_ms)
    await client.terminate()
    assert (await client.closed())[0] == 1000
    finals = [m for m in client.of_type("Turn") if m["end_of_turn"]]
    assert [f["transcript"] for f in finals] == SENTENCES
    # Every sentence ends in . ? ! and is followed by 1.2 s: no partials, no forced finals.
    assert all(m["end_of_turn"] for m in client.of_type("Turn"))
    heard = [(w["text"], w["start"], w["end"]) for f in finals for w in f["words"]]
    expected = [(w.text, w.start_ms, w.end_ms) for w in words]
    assert [h[0] for h in heard] == [e[0] for e in expected]
    for (_, start, end), (_, start_ms, end_ms) in zip(heard, expected, strict=True):
        assert abs(start - start_ms) <= 10 and abs(end - end_ms) <= 10
    started = [m["timestamp"] for m in client.of_type("SpeechStarted")]
    assert started == [f["words"][0]["start"] for f in finals]


async def test_real_speech_becomes_a_placeholder(emulators: EmulatorServer) -> None:
    rng = np.random.default_rng(4)
    noise = (rng.normal(0, 6000, 2400 * RATE // 1000)).astype("<i2").tobytes()
    pcm = tonecode.silence(300) + noise + tonecode.silence(1300)
    client = await open_client(emulators.urls["streaming"])
    await client.send_audio(pcm)
    await client.terminate()
    await client.closed()
    final = [m for m in client.of_type("Turn") if m["end_of_turn"]][-1]
    assert final["transcript"] == "[speech 2.4 s]"
    assert final["words"][0]["start"] == pytest.approx(300, abs=10)


async def test_mid_sentence_pause_gives_one_partial(emulators: EmulatorServer) -> None:
    pcm = (
        tonecode.encode("Let's ship the beta on")
        + tonecode.silence(400)
        + tonecode.encode("Friday.")
    )
    client = await open_client(emulators.urls["streaming"])
    await client.send_audio(pcm)
    await client.terminate()
    await client.closed()
    turns = client.of_type("Turn")
    assert [(t["end_of_turn"], t["transcript"]) for t in turns] == [
        (False, "Let's ship the beta on\u2014"),
        (True, "Let's ship the beta on Friday."),
    ]
    assert {t["turn_order"] for t in turns} == {0}


async def test_serve_emulators_routes_and_records(emulators: EmulatorServer) -> None:
    base = f"ws://127.0.0.1:{emulators.port}"
    http = f"http://127.0.0.1:{emulators.port}"
    assert emulators.urls == {
        "streaming": f"{base}/v3/ws",
        "agent": f"{base}/v1/ws",
        "llm": f"{http}/v1",
        "async": http,
        "emulator": http,
    }
    client = await open_client(emulators.urls["streaming"])
    await client.next_of("Begin")
    await client.ws.close()
    record = emulators.streaming.sessions[0]
    await asyncio.wait_for(record.closed.wait(), TIMEOUT)
    assert record.close_code == 1000
    # The Voice Agent answers on the same port (its own protocol: session.update first).
    async with connect(
        emulators.urls["agent"], additional_headers={"Authorization": "Bearer k"}
    ) as agent:
        await agent.send(json.dumps({"type": "session.update", "session": {}}))
        first = json.loads(await asyncio.wait_for(agent.recv(), TIMEOUT))
    assert first["type"] == "session.ready"
    assert len(emulators.agent.sessions) == 1
    for path, status in [("/v2/realtime/ws", 410), ("/nowhere", 404)]:
        with pytest.raises(websockets.InvalidStatus) as caught:
            await connect(base + path)
        assert caught.value.response.status_code == status
