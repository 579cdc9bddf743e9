"""The official ``assemblyai`` SDK's v3 streaming clients, unpatched, against the emulator.

The SDK builds ``{api_host}/v3/ws?...`` when ``api_host`` starts with ``ws://``
(``_build_uri`` in ``assemblyai/streaming/v3/_base.py``); a bare ``host:port``
would become ``wss://``, which a plain loopback server cannot answer.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from assemblyai.streaming.v3 import (
    AsyncStreamingClient,
    BeginEvent,
    SpeechStartedEvent,
    StreamingClient,
    StreamingClientOptions,
    StreamingError,
    StreamingEvents,
    StreamingParameters,
    StreamingSessionParameters,
    TerminationEvent,
    TurnEvent,
)
from test_emulator_support import TIMEOUT

from recorder import tonecode
from recorder.emulator.streaming.server import RunningServer, StreamingEmulator

TEXT = "Hello there. How are you today? Let's ship the beta on Friday!"
SENTENCES = ["Hello there.", "How are you today?", "Let's ship the beta on Friday!"]
KEY = "sdk-key"


def audio_chunks() -> Iterator[bytes]:
    pcm = tonecode.encode(TEXT, 16000)
    pcm += bytes(-len(pcm) % 3200)  # whole 100 ms frames
    for start in range(0, len(pcm), 3200):
        yield pcm[start : start + 3200]


@pytest.fixture
async def emulator() -> StreamingEmulator:
    # The SDK's write thread sends as fast as it can: relax the pacing rule.
    return StreamingEmulator(api_keys={KEY}, realtime_factor=1000.0)


@pytest.fixture
async def server(emulator: StreamingEmulator) -> AsyncIterator[RunningServer]:
    async with emulator.serve() as running:
        yield running


def host_of(server: RunningServer) -> str:
    return f"ws://{server.host}:{server.port}"


class Collector:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.errors: list[StreamingError] = []
        self.done = threading.Event()
        self.failed = threading.Event()

    def register(self, client: Any) -> None:
        for kind in (StreamingEvents.Begin, StreamingEvents.SpeechStarted, StreamingEvents.Turn):
            client.on(kind, lambda _client, event: self.events.append(event))
        client.on(StreamingEvents.Termination, self._on_termination)
        client.on(StreamingEvents.Error, self._on_error)

    def _on_error(self, _client: Any, error: StreamingError) -> None:
        self.errors.append(error)
        self.failed.set()

    def _on_termination(self, _client: Any, event: TerminationEvent) -> None:
        self.events.append(event)
        self.done.set()


def check_events(collector: Collector, emulator: StreamingEmulator) -> None:
    assert collector.errors == []
    events = collector.events
    assert isinstance(events[0], BeginEvent)
    assert events[0].id == emulator.sessions[0].session_id
    turns = [event for event in events if isinstance(event, TurnEvent)]
    assert [turn.transcript for turn in turns if turn.end_of_turn] == SENTENCES
    assert [turn.turn_order for turn in turns] == [0, 1, 2]
    assert all(turn.language_code == "en" for turn in turns)
    started = [event for event in events if isinstance(event, SpeechStartedEvent)]
    assert [s.timestamp for s in started] == [turn.words[0].start for turn in turns]
    termination = events[-1]
    assert isinstance(termination, TerminationEvent)
    audio_s = sum(len(chunk) for chunk in audio_chunks()) / 32000
    assert termination.audio_duration_seconds == round(audio_s)


async def test_sync_streaming_client(emulator: StreamingEmulator, server: RunningServer) -> None:
    collector = Collector()

    def run_client() -> None:
        client = StreamingClient(StreamingClientOptions(api_key=KEY, api_host=host_of(server)))
        collector.register(client)
        client.connect(
            StreamingParameters(
                speech_model="u3-rt-pro", sample_rate=16000, language_detection=True
            )
        )
        client.stream(audio_chunks())
        client.disconnect(terminate=True)

    await asyncio.wait_for(asyncio.to_thread(run_client), TIMEOUT * 2)
    assert collector.done.is_set()
    check_events(collector, emulator)
    record = emulator.sessions[0]
    await asyncio.wait_for(record.closed.wait(), TIMEOUT)
    assert record.close_code == 1000
    assert record.params is not None and record.params.language_detection is True


async def test_async_streaming_client(emulator: StreamingEmulator, server: RunningServer) -> None:
    collector = Collector()
    client = AsyncStreamingClient(StreamingClientOptions(api_key=KEY, api_host=host_of(server)))
    collector.register(client)
    await client.connect(
        StreamingParameters(speech_model="u3-rt-pro", sample_rate=16000, language_detection=True)
    )
    await client.stream(audio_chunks())
    await client.disconnect(terminate=True)
    assert collector.done.is_set()
    check_events(collector, emulator)


async def test_sdk_sees_a_wrong_key_as_1008(server: RunningServer) -> None:
    collector = Collector()
    client = AsyncStreamingClient(StreamingClientOptions(api_key="wrong", api_host=host_of(server)))
    collector.register(client)
    await client.connect(StreamingParameters(speech_model="u3-rt-pro", sample_rate=16000))
    assert await asyncio.to_thread(collector.failed.wait, TIMEOUT)
    await client.disconnect()
    assert collector.errors[0].code == 1008
    assert not any(isinstance(event, BeginEvent) for event in collector.events)


async def test_async_client_control_messages(
    emulator: StreamingEmulator, server: RunningServer
) -> None:
    collector = Collector()
    client = AsyncStreamingClient(StreamingClientOptions(api_key=KEY, api_host=host_of(server)))
    collector.register(client)
    await client.connect(
        StreamingParameters(
            speech_model="u3-rt-pro",
            sample_rate=16000,
            keyterms_prompt=["Agora", "recorder"],
            format_turns=True,
            inactivity_timeout=60,
        )
    )
    await client.set_params(
        StreamingSessionParameters(keyterms_prompt=["beta"], max_turn_silence=2000)
    )
    await client.keep_alive()
    pcm = tonecode.encode("Let's ship the beta on")  # no terminal punctuation
    pcm += bytes(-len(pcm) % 3200)
    await client.stream(pcm[i : i + 3200] for i in range(0, len(pcm), 3200))
    await client.force_endpoint()
    await client.disconnect(terminate=True)
    assert collector.done.is_set() and collector.errors == []
    finals = [e for e in collector.events if isinstance(e, TurnEvent) and e.end_of_turn]
    assert [final.transcript for final in finals] == ["Let's ship the beta on"]
    record = emulator.sessions[0]
    assert record.params is not None
    assert record.params.keyterms_prompt == ("beta",)
    assert record.params.max_turn_silence_ms == 2000
    assert record.params.inactivity_timeout_s == 60
    texts = [frame.text for frame in record.received if frame.kind == "text"]
    assert [text and json.loads(text)["type"] for text in texts] == [
        "UpdateConfiguration",
        "KeepAlive",
        "ForceEndpoint",
        "Terminate",
    ]
