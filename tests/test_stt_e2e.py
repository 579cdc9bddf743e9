"""SttStream end to end against the streaming emulator, speaking tone code."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import math
import random

import pytest

from recorder.clock import ManualClock
from recorder.emulator.faults import Fault, FaultPlan
from recorder.emulator.streaming.records import StreamingBehaviour
from recorder.emulator.streaming.server import StreamingEmulator
from recorder.errors import SttRejected
from recorder.stt.events import Closed, Disposition, FinalTranscript, SocketOpened
from recorder.stt.settings import BufferSettings, ConnectSettings, PacingSettings, RetrySettings
from recorder.stt.stream import SttStream
from recorder.tonecode import encode_words
from tests.support.timing import TIMEOUT

pytestmark = pytest.mark.slow  # real sockets and paced audio: make test-fast skips them

KEY = "e2e-key"
SPEED = 20.0  # audio clock speed, the same for the client and the emulator's pacing rule
TEXT = (
    "Hello there friends. How are you all doing today? Let's ship the beta on Friday! "
    "Alpha bravo charlie delta. Echo foxtrot golf hotel india."
)
SENTENCES = [
    "Hello there friends.",
    "How are you all doing today?",
    "Let's ship the beta on Friday!",
    "Alpha bravo charlie delta.",
    "Echo foxtrot golf hotel india.",
]


def emulator(**kwargs) -> StreamingEmulator:
    kwargs.setdefault("behaviour", StreamingBehaviour(processing_delay_s=0.01))
    return StreamingEmulator(api_keys={KEY}, realtime_factor=SPEED, **kwargs)


def make_session(url: str, **kwargs) -> SttStream:
    """An SttStream from flat keywords: each goes to the settings object with that field."""
    fields = {
        "url": url,
        "api_key": KEY,
        "realtime_factor": SPEED,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        **kwargs,
    }
    connect, pacing, retry, buffers = (
        kind(**{f.name: fields.pop(f.name) for f in dataclasses.fields(kind) if f.name in fields})
        for kind in (ConnectSettings, PacingSettings, RetrySettings, BufferSettings)
    )
    assert not fields, f"unknown stream settings: {sorted(fields)}"
    return SttStream(connect, pacing=pacing, retry=retry, buffers=buffers)


async def transcribe(url: str, pcm: bytes, **kwargs) -> list:
    """Send ``pcm`` in 10 ms frames as fast as the caller can, stop, return every event."""
    s = make_session(url, **kwargs)
    await s.start()

    async def collect() -> list:
        return [event async for event in s.events()]

    reader = asyncio.create_task(collect())
    for at in range(0, len(pcm), 320):
        s.send(pcm[at : at + 320])
    async with asyncio.timeout(TIMEOUT * 4):
        await s.stop()
        return await reader


def final_words(events: list) -> list[tuple[str, int, int]]:
    """Every final word as (text, caller start ms, caller end ms)."""
    return [
        (w.text, e.audio_offset_ms + w.start_ms, e.audio_offset_ms + w.end_ms)
        for e in events
        if isinstance(e, FinalTranscript)
        for w in e.words
    ]


async def test_three_sentences_three_finals_with_text_and_times():
    text = " ".join(SENTENCES[:3])
    pcm, words = encode_words(text)
    emu = emulator()
    async with emu.serve() as server:
        events = await transcribe(server.url, pcm)
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert [f.transcript for f in finals] == SENTENCES[:3]
    assert [f.turn_order for f in finals] == [0, 1, 2]
    assert all(f.is_formatted and f.language_code == "en" for f in finals)
    got = final_words(events)
    assert [w for w, _, _ in got] == [w.text for w in words]
    for (_, start, end), want in zip(got, words, strict=True):
        assert abs(start - want.start_ms) <= 20 and abs(end - want.end_ms) <= 20
    assert len(emu.sessions) == 1 and emu.sessions[0].close_code == 1000
    assert events[-1].billed_seconds is not None  # SocketClosed after Termination


def _fault_points(seed: int, total_s: float, n: int) -> list[float]:
    rng = random.Random(seed)
    return sorted(rng.uniform(0.3, total_s - 0.3) for _ in range(n))


@pytest.mark.parametrize("code", [1006, 1011, 3005, 3009, 1000])
@pytest.mark.parametrize("seed", [1, 2])
async def test_drops_at_random_points_lose_no_word(code, seed):
    pcm, words = encode_words(TEXT)
    total_s = len(pcm) / 32000
    points = _fault_points(seed * 100 + code, total_s, 2)
    # Connection 0 fails at points[0] of its audio, connection 1 (which starts with the
    # replay) at a second point; the rest run clean.
    faults = {
        i: (Fault.drop(at_audio_s=at) if code == 1006 else Fault.close(code, at_audio_s=at),)
        for i, at in enumerate([points[0], points[1] - points[0] + 0.2])
    }
    emu = emulator(faults=FaultPlan(per_connection=faults))
    async with emu.serve() as server:
        events = await transcribe(server.url, pcm)
    got = final_words(events)
    assert [w for w, _, _ in got] == [w.text for w in words], f"faults at {points}"
    for (_, start, _), want in zip(got, words, strict=True):
        assert abs(start - want.start_ms) <= 20  # caller positions survive the replay
    opened = [e for e in events if isinstance(e, SocketOpened)]
    assert len(opened) == 3 == len(emu.sessions)
    assert [c.disposition for c in events if isinstance(c, Closed)] == [
        Disposition.RETRY,
        Disposition.RETRY,
        Disposition.DONE,
    ]
    # Replay never rewinds past audio already finalised, and never runs ahead of the caller.
    assert opened[1].audio_offset_ms <= emu.sessions[0].audio_seconds * 1000


async def test_session_cap_3008_reopens_and_loses_no_word():
    pcm, words = encode_words(" ".join(SENTENCES[:3]))
    # The cap is wall-clock: 0.25 s is 5 s of audio at SPEED (the audio is 7.4 s), so one
    # session is capped; a loaded machine still transcribes something in each session.
    emu = emulator(behaviour=StreamingBehaviour(processing_delay_s=0.01, session_cap_s=0.25))
    async with emu.serve() as server:
        events = await transcribe(server.url, pcm)
    assert [w for w, _, _ in final_words(events)] == [w.text for w in words]
    closes = [c for c in events if isinstance(c, Closed)]
    assert closes[0].code == 3008 and closes[0].disposition is Disposition.REOPEN


async def test_bad_key_is_rejected_once_with_a_clear_message():
    emu = emulator()
    async with emu.serve() as server:
        s = make_session(server.url, api_key="wrong-key")
        with pytest.raises(SttRejected) as info:
            await s.start()
    message = str(info.value)
    assert "code 1008" in message and "Unauthorized Connection" in message
    assert "check ASSEMBLYAI_API_KEY" in message and "wrong-key" not in message
    assert len(emu.sessions) == 1  # no retry loop


async def test_stalled_termination_is_waited_for_a_bounded_time():
    pcm, _ = encode_words(SENTENCES[0])
    emu = emulator(faults=FaultPlan(default=(Fault.stall(on_terminate=True),)))
    async with emu.serve() as server:
        s = make_session(server.url, terminate_timeout_s=0.5)
        await s.start()
        s.send(pcm)
        started = asyncio.get_running_loop().time()
        await s.stop()
        elapsed = asyncio.get_running_loop().time() - started
    assert 0.5 <= elapsed < 0.5 + len(pcm) / 32000 / SPEED + 1.5
    assert len(emu.sessions) == 1 and s.error is None


async def test_inactivity_close_reopens_when_speech_returns():
    first, _ = encode_words(SENTENCES[0])
    second, words_2 = encode_words(SENTENCES[1])
    clock = ManualClock()
    emu = StreamingEmulator(
        api_keys={KEY},
        realtime_factor=math.inf,  # the manual clock does not move on its own
        clock=clock,
        behaviour=StreamingBehaviour(processing_delay_s=0.01),
    )
    async with emu.serve() as server:
        s = make_session(server.url, inactivity_timeout_s=5)
        await s.start()
        events: list = []
        got_final, got_close = asyncio.Event(), asyncio.Event()

        async def read() -> None:
            async for event in s.events():
                events.append(event)
                if isinstance(event, FinalTranscript):
                    got_final.set()
                if isinstance(event, Closed):
                    got_close.set()

        reader = asyncio.create_task(read())
        s.send(first)
        await asyncio.wait_for(got_final.wait(), TIMEOUT)
        clock.advance(6)  # no audio for longer than inactivity_timeout
        await asyncio.wait_for(got_close.wait(), TIMEOUT)
        assert len(emu.sessions) == 1  # nothing reopens while the participant is quiet
        s.send(second)
        await s.stop()
        await reader
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert [f.transcript for f in finals] == SENTENCES[:2]
    assert finals[1].start_ms == len(first) // 32 + words_2[0].start_ms
    assert [e.disposition for e in events if isinstance(e, Closed)] == [
        Disposition.REOPEN_ON_AUDIO,
        Disposition.DONE,
    ]
    assert len(emu.sessions) == 2


def _sixty_seconds_of_speech() -> str:
    """Distinct words (so a duplicate or a loss is visible), sentences of 4-7 words."""
    rng = random.Random(60)
    names = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()
    sentences, n = [], 0
    while len(sentences) < 20:
        size = rng.randint(4, 7)
        sentences.append(
            " ".join(f"{names[(n + i) % len(names)]}{n + i}" for i in range(size)) + "."
        )
        n += size
    return " ".join(sentences)


@pytest.mark.slow
@pytest.mark.parametrize("code", [1006, 1011, 3005, 3009, 1000])
async def test_twenty_drops_in_a_minute_lose_no_word(code):
    """A drop at 20 random points of a 60 s stream loses no word, per retryable code."""
    pcm, words = encode_words(_sixty_seconds_of_speech())
    assert 55 <= len(pcm) / 32000 <= 75
    rng = random.Random(code)
    # Connection i fails after a random 1.5-3 s of its own audio (replayed audio included),
    # so the 20 drops land at random points all along the stream.
    faults = {
        i: (
            Fault.drop(at_audio_s=rng.uniform(1.5, 3.0))
            if code == 1006
            else Fault.close(code, at_audio_s=rng.uniform(1.5, 3.0)),
        )
        for i in range(20)
    }
    emu = emulator(faults=FaultPlan(per_connection=faults))
    async with emu.serve() as server:
        # Drops this dense often kill a few sockets in a row before any sentence ends;
        # the quick-failure guard (tested on its own) would rightly give up on that.
        # transcribe() hands over the whole minute at once; hold all of it unsent.
        events = await transcribe(server.url, pcm, quick_failure_limit=50, backlog_max_s=120)
    retries = [c for c in events if isinstance(c, Closed) and c.disposition is Disposition.RETRY]
    assert len(retries) == 20  # every injected drop happened
    got = final_words(events)
    assert [w for w, _, _ in got] == [w.text for w in words]  # each word exactly once, in order
    for (_, start, end), want in zip(got, words, strict=True):
        assert abs(start - want.start_ms) <= 20 and abs(end - want.end_ms) <= 20


async def test_a_finished_streams_sockets_are_freed_by_reference_counts() -> None:
    # With hundreds of speakers a socket opens and closes every few seconds each; one
    # left in a reference cycle waits for a full garbage collection, which pauses every
    # participant's audio (70-200 ms at 500 speakers when every socket was left so).
    from websockets.client import ClientProtocol
    from websockets.protocol import State

    from recorder.stt.connection import SttConnection
    from recorder.stt.wire import WireSocket

    def alive() -> list[str]:
        # A socket's protocol ends CLOSED (the upgrade's template, one per URL, never opens).
        return [
            type(o).__name__
            for o in gc.get_objects()
            if isinstance(o, WireSocket | SttConnection | SttStream)
            or (isinstance(o, ClientProtocol) and o.state is State.CLOSED)
        ]

    pcm, _ = encode_words(" ".join(SENTENCES[:2]))
    gc.collect()
    gc.disable()
    try:
        assert alive() == []
        async with emulator().serve() as server:
            events = await transcribe(server.url, pcm)
            assert [e.transcript for e in events if isinstance(e, FinalTranscript)] == (
                SENTENCES[:2]
            )
            del events
            await asyncio.sleep(0)  # the transport's last callbacks
            assert alive() == []
    finally:
        gc.enable()
