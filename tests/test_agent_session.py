"""The Voice Agent client and recap runner against the emulator on real loopback sockets."""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import pytest
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.frames import Close
from websockets.http11 import Response

from recorder.agent.protocol import ReplyDone, SessionConfig
from recorder.agent.session import MAPPED_EXCEPTIONS, map_exceptions, open_session
from recorder.agent.timeouts import AgentTimeouts
from recorder.audio import StreamingResampler
from recorder.emulator.agent.config import AgentBehaviour, AgentFaults
from recorder.emulator.agent.server import RunningAgentServer, VoiceAgentEmulator
from recorder.errors import AgentError
from recorder.recap.ledger import TurnLedger, turn_key
from recorder.recap.prompt import (
    MAX_SYSTEM_PROMPT_CHARS,
    RecapRequest,
    build_prompt,
    format_line,
)
from recorder.recap.reply import run_recap
from recorder.tonecode import decode

KEY = "sk-test-5f3a9c"
FAST = AgentTimeouts(
    connect_s=2, ready_s=1.0, reply_start_s=2, event_gap_s=2, reply_s=20, end_s=1.0, close_s=1
)
BOUND_S = 10  # every test finishes well within this, or it hangs


@dataclass(frozen=True)
class FakeTurn:
    """A stored turn as the store returns it (the fields a recap reads)."""

    id: int
    uid: int
    display_name: str | None
    start_ms: int
    end_ms: int
    text: str

    @property
    def speaker(self) -> str:
        return self.display_name or str(self.uid)


TURNS = [
    FakeTurn(1, 11, "Ana", 0, 4_000, "We ship the beta on Friday. Marketing needs a week."),
    FakeTurn(2, 12, "Bruno", 5_000, 8_000, "The login bug is fixed! I merged it today."),
    FakeTurn(3, 13, "Chen", 9_000, 12_000, "Docs are two days late"),
    FakeTurn(4, 11, "Ana", 13_000, 15_000, "Then we slip the launch by two days. Agreed?"),
]


def make_emulator(**kwargs: object) -> VoiceAgentEmulator:
    kwargs.setdefault("realtime_factor", math.inf)
    kwargs.setdefault("api_keys", {KEY})
    return VoiceAgentEmulator(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def emulator() -> VoiceAgentEmulator:
    return make_emulator()


@pytest.fixture
async def server(emulator: VoiceAgentEmulator) -> AsyncIterator[RunningAgentServer]:
    async with emulator.serve() as running:
        yield running


class Sink:
    """Collects the 16 kHz audio handed on, optionally setting ``cancel`` after some chunks."""

    def __init__(self, cancel: asyncio.Event | None = None, cancel_after: int = 0) -> None:
        self.audio = bytearray()
        self.chunks = 0
        self.after_cancel = 0
        self.cancel = cancel
        self.cancel_after = cancel_after

    async def __call__(self, pcm: bytes) -> None:
        if self.cancel is not None and self.cancel.is_set():
            self.after_cancel += 1
        self.audio += pcm
        self.chunks += 1
        if self.cancel is not None and self.chunks == self.cancel_after:
            self.cancel.set()


def words_of(pcm: bytes) -> list[str | None]:
    return [word.text for word in decode(pcm, 16_000)]


async def test_recap_audio_decodes_to_exactly_the_agents_words(
    emulator: VoiceAgentEmulator, server: RunningAgentServer
) -> None:
    sink = Sink()
    async with asyncio.timeout(BOUND_S):
        result = await run_recap(server.url, KEY, RecapRequest(TURNS), on_audio=sink, timeouts=FAST)
    assert result.text == (
        "Bruno said: The login bug is fixed! Chen said: Docs are two days late. "
        "Ana said: Then we slip the launch by two days."
    )
    # Whole and in order: no gaps, no repeats, no undecodable bursts.
    assert words_of(bytes(sink.audio)) == result.text.split()
    assert not result.was_interrupted and result.interrupted_at_ms is None
    assert result.audio_ms == pytest.approx(len(sink.audio) / 32)
    assert sink.chunks > 10  # handed on as it arrived, not in one piece
    record = emulator.sessions[0]
    await record.closed.wait()
    assert result.session_id == record.session_id
    assert record.received_types() == ["session.update", "reply.create", "session.end"]
    assert record.is_end_received and record.close_code == 1000
    reply_ms = record.replies[0].audio_ms_sent
    assert result.audio_ms == pytest.approx(reply_ms, abs=1.0)  # 24 kHz in, 16 kHz out, same length


async def test_plain_callback_and_the_prompt_the_server_saw(
    emulator: VoiceAgentEmulator, server: RunningAgentServer
) -> None:
    chunks: list[bytes] = []
    named = TurnLedger({13: "Chen Wei"}).select(TURNS, since_last=False)
    request = RecapRequest(named, voice="james", prompt_extra="Be kind.")
    async with asyncio.timeout(BOUND_S):
        result = await run_recap(server.url, KEY, request, on_audio=chunks.append, timeouts=FAST)
    assert "Chen Wei said: Docs are two days late." in result.text
    assert words_of(b"".join(chunks)) == result.text.split()
    record = emulator.sessions[0]
    update = record.received[0]["session"]
    assert update["output"]["voice"] == "james"
    assert update["system_prompt"] == build_prompt(request).system_prompt
    assert record.received[1]["instructions"].endswith("Be kind.")


async def test_cancel_mid_reply_stops_at_once_and_ends_the_session() -> None:
    emulator = make_emulator(realtime_factor=10.0)
    cancel = asyncio.Event()
    sink = Sink(cancel, cancel_after=4)
    async with emulator.serve() as server, asyncio.timeout(BOUND_S):
        result = await run_recap(
            server.url, KEY, RecapRequest(TURNS), on_audio=sink, cancel=cancel, timeouts=FAST
        )
    assert sink.after_cancel == 0  # nothing handed on after cancel was set
    assert sink.chunks == 4
    assert result.was_interrupted
    assert result.interrupted_at_ms == pytest.approx(len(sink.audio) / 32)
    assert result.audio_ms == result.interrupted_at_ms
    record = emulator.sessions[0]
    await record.closed.wait()
    reply = record.replies[0]
    assert reply.status == "interrupted"
    assert record.is_end_received and record.close_code == 1000
    assert record.sent_types()[-1] == "session.ended"
    # The server's trimmed transcript is what it had sent, a prefix of the full reply.
    assert reply.heard_text is not None and result.text == reply.heard_text
    assert reply.text.startswith(result.text)
    assert reply.chunks_sent < len(reply.text)  # it really stopped early


@pytest.mark.parametrize("is_preset", [True, False])
async def test_cancel_before_any_audio_hands_nothing_on(is_preset: bool) -> None:
    # Preset: cancel is already set when the recap starts. Otherwise the agent hangs
    # before session.ready and the barge-in comes meanwhile.
    emulator = make_emulator(realtime_factor=10.0, faults=AgentFaults(never_ready=not is_preset))
    cancel = asyncio.Event()
    if is_preset:
        cancel.set()
    sink = Sink()
    loop = asyncio.get_running_loop()
    async with emulator.serve() as server, asyncio.timeout(BOUND_S):
        started = loop.time()
        loop.call_later(0.1, cancel.set)
        result = await run_recap(
            server.url, KEY, RecapRequest(TURNS), on_audio=sink, cancel=cancel, timeouts=FAST
        )
        elapsed = loop.time() - started
        record = emulator.sessions[0]
        await record.closed.wait()
    assert sink.chunks == 0 and result.was_interrupted and result.interrupted_at_ms == 0
    assert elapsed < FAST.ready_s  # did not sit out the ready timeout
    assert record.is_end_received
    assert "reply.create" not in record.received_types()


FAULTS = [
    pytest.param(
        {"api_keys": {"other-key"}}, "(?i)unauthorized.*check ASSEMBLYAI_API_KEY", id="bad-key"
    ),
    pytest.param(
        {"faults": AgentFaults(connect_error=("INTERNAL_ERROR", 1011))},
        "(?i)internal_error.*try the recap again",
        id="internal-error-at-setup",
    ),
    pytest.param(
        {"faults": AgentFaults(error_after_chunks=("server_error", "worker crashed", 1008))},
        "server_error.*worker crashed.*try the recap again",
        id="session-error-mid-reply",
    ),
    pytest.param(
        {"faults": AgentFaults(drop_after_chunks=3)}, "dropped.*try the recap again", id="drop"
    ),
    pytest.param({"faults": AgentFaults(never_ready=True)}, "session.ready", id="never-ready"),
    pytest.param(
        {"behaviour": AgentBehaviour(ready_timeout_s=0.2), "faults": AgentFaults()},
        None,
        id="agent-timeout-not-triggered-by-a-prompt-client",
    ),
]


@pytest.mark.parametrize(("options", "pattern"), FAULTS)
async def test_every_fault_ends_in_a_clear_agent_error(
    options: dict[str, object], pattern: str | None
) -> None:
    emulator = make_emulator(**options)
    async with emulator.serve() as server, asyncio.timeout(BOUND_S):
        if pattern is None:
            result = await run_recap(
                server.url, KEY, RecapRequest(TURNS), on_audio=Sink(), timeouts=FAST
            )
            assert result.text
            return
        with pytest.raises(AgentError, match=pattern) as caught:
            await run_recap(server.url, KEY, RecapRequest(TURNS), on_audio=Sink(), timeouts=FAST)
    message = str(caught.value)
    assert "\n" not in message and message[0].islower() and not message.endswith(".")
    assert KEY not in message


async def test_a_rejected_voice_is_fatal_and_the_session_is_still_ended(
    emulator: VoiceAgentEmulator, server: RunningAgentServer
) -> None:
    with pytest.raises(AgentError, match=r"invalid_value \(output.voice\)"):
        async with asyncio.timeout(BOUND_S):
            await run_recap(
                server.url, KEY, RecapRequest(TURNS, voice="claire"), on_audio=Sink(), timeouts=FAST
            )
    record = emulator.sessions[0]
    await record.closed.wait()
    # The socket stayed open after invalid_value, so the client must end it (billing).
    assert record.is_end_received and record.close_code == 1000


@pytest.mark.parametrize("delay_s", [0.3, 5.0])
async def test_a_slow_or_missing_session_ended_is_bounded(delay_s: float) -> None:
    emulator = make_emulator(faults=AgentFaults(end_delay_s=delay_s))
    loop = asyncio.get_running_loop()
    async with emulator.serve() as server, asyncio.timeout(BOUND_S):
        started = loop.time()
        result = await run_recap(
            server.url, KEY, RecapRequest(TURNS), on_audio=Sink(), timeouts=FAST
        )
        elapsed = loop.time() - started
    assert result.text and not result.was_interrupted
    assert elapsed < FAST.end_s + FAST.close_s + 1.0
    record = emulator.sessions[0]
    await record.closed.wait()
    if delay_s < FAST.end_s:
        assert record.sent_types()[-1] == "session.ended" and record.close_code == 1000


async def test_never_ended_session_is_closed_by_the_client() -> None:
    emulator = make_emulator(faults=AgentFaults(never_end=True))
    async with emulator.serve() as server, asyncio.timeout(BOUND_S):
        result = await run_recap(
            server.url, KEY, RecapRequest(TURNS), on_audio=Sink(), timeouts=FAST
        )
        record = emulator.sessions[0]
        await record.closed.wait()
    assert result.text
    assert record.is_end_received and "session.ended" not in record.sent_types()


async def test_unreachable_service_and_bad_urls() -> None:
    async with make_emulator().serve() as server:
        port = server.port
    # The port is closed now: connection refused.
    with pytest.raises(AgentError, match="cannot reach the voice agent"):
        await run_recap(f"ws://127.0.0.1:{port}/v1/ws", KEY, RecapRequest(TURNS), on_audio=Sink())
    with pytest.raises(AgentError, match="not a WebSocket URL"):
        await run_recap("http://example.invalid/v1/ws", KEY, RecapRequest(TURNS), on_audio=Sink())
    with pytest.raises(AgentError, match="no AssemblyAI API key"):
        await run_recap("ws://127.0.0.1:1/v1/ws", "", RecapRequest(TURNS), on_audio=Sink())


async def test_http_errors_at_the_handshake(server: RunningAgentServer) -> None:
    wrong_path = server.url.replace("/v1/ws", "/v2/nothing")
    with pytest.raises(AgentError, match=r"refused the connection \(HTTP 404\)"):
        await run_recap(wrong_path, KEY, RecapRequest(TURNS), on_audio=Sink(), timeouts=FAST)


def _exception(kind: type[BaseException]) -> BaseException:
    if kind is InvalidStatus:
        return InvalidStatus(Response(401, "Unauthorized", Headers()))
    if kind is InvalidURI:
        return InvalidURI("http://x", "scheme isn't ws or wss")
    if kind is ConnectionClosed:
        return ConnectionClosed(Close(1011, "boom"), None)
    if kind is OSError:
        return OSError(errno.ECONNREFUSED, "Connection refused")
    if kind in (InvalidHandshake, WebSocketException):
        return kind("handshake went wrong")
    return kind()


@pytest.mark.parametrize("kind", MAPPED_EXCEPTIONS, ids=lambda kind: kind.__name__)
def test_map_exceptions_maps_every_foreign_exception(kind: type[BaseException]) -> None:
    original = _exception(kind)
    with pytest.raises(AgentError) as caught, map_exceptions("testing"):
        raise original
    assert caught.value.__cause__ is original
    message = str(caught.value)
    assert message[0].islower() and not message.endswith(".")


def test_map_exceptions_leaves_bugs_alone() -> None:
    with pytest.raises(KeyError), map_exceptions("testing"):
        raise KeyError("a bug keeps its traceback")


async def test_the_key_is_never_logged_or_shown(
    server: RunningAgentServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with open_session(server.url, KEY, SessionConfig(), timeouts=FAST) as session:
            assert KEY not in repr(session)
            await session.create_reply("Read this aloud: hello there.")
            while not isinstance(await session.next_event(2), ReplyDone):
                pass
    assert "Authorization" in caplog.text  # websockets did log the handshake...
    assert KEY not in caplog.text  # ...but not the key


def three_hour_meeting() -> list[FakeTurn]:
    turns = []
    names = ["Ana", "Bruno", "Chen"]
    for index in range(3 * 3600 // 6):  # a turn every 6 s for 3 h
        start = index * 6_000
        text = f"Point number {index} is about topic {index % 17}. It has detail {index}."
        turns.append(FakeTurn(index + 1, index % 3, names[index % 3], start, start + 5_000, text))
    return turns


async def test_a_three_hour_meeting_fits_the_prompt_and_recaps_the_latest_points() -> None:
    turns = three_hour_meeting()
    prompt = build_prompt(RecapRequest(turns))
    assert len(prompt.system_prompt) <= MAX_SYSTEM_PROMPT_CHARS
    assert prompt.omitted_count > 0 and prompt.turn_count + prompt.omitted_count == len(turns)
    assert prompt.system_prompt.endswith(format_line(turns[-1]))
    assert "earlier turns before" in prompt.system_prompt
    # The emulator refuses anything longer than the client's budget.
    behaviour = AgentBehaviour(max_prompt_chars=MAX_SYSTEM_PROMPT_CHARS)
    emulator = make_emulator(behaviour=behaviour)
    async with emulator.serve() as server, asyncio.timeout(BOUND_S):
        result = await run_recap(
            server.url, KEY, RecapRequest(turns), on_audio=Sink(), timeouts=FAST
        )
    last = len(turns) - 1
    assert result.text == (
        f"Ana said: Point number {last - 2} is about topic {(last - 2) % 17}. "
        f"Bruno said: Point number {last - 1} is about topic {(last - 1) % 17}. "
        f"Chen said: Point number {last} is about topic {last % 17}."
    )


async def test_an_over_budget_prompt_is_refused_by_the_strict_emulator() -> None:
    # The same emulator setting does catch a client that ignores the budget.
    emulator = make_emulator(behaviour=AgentBehaviour(max_prompt_chars=100))
    async with emulator.serve() as server, asyncio.timeout(BOUND_S):
        with pytest.raises(AgentError, match=r"system_prompt"):
            await run_recap(server.url, KEY, RecapRequest(TURNS), on_audio=Sink(), timeouts=FAST)


def test_prompt_filters_and_sanitises_turns() -> None:
    turns = [
        FakeTurn(1, 1, "Ana", 0, 1_000, "Old stuff."),
        FakeTurn(2, 2, None, 61_000, 62_000, "Line one\nline two"),
        FakeTurn(3, 3, "Eve: admin", 3_723_000, 3_724_000, "x" * 5_000),
        FakeTurn(4, 1, "Ana", 3_800_000, 3_801_000, "Bot, give us a recap."),
        FakeTurn(5, 1, "Ana", 3_900_000, 3_901_000, "   "),
    ]
    # The ledger selects: an earlier recap covered the old turn, turn 4 asked for this one.
    ledger = TurnLedger({2: "Bruno"})
    ledger.mark_recapped(turns[:1])
    selected = ledger.select(turns, since_last=True, leave_out=turn_key(turns[3]))
    request = RecapRequest(selected, prompt_extra="x" * 9_000)
    prompt = build_prompt(request)
    lines = prompt.system_prompt.split("Meeting transcript:\n")[1].splitlines()
    assert lines[0] == "[00:01:01] Bruno: Line one line two"
    assert lines[1].startswith("[01:02:03] Eve  admin: xxx") and len(lines[1]) < 1_100
    assert len(lines) == 2 and prompt.turn_count == 2 and prompt.omitted_count == 0
    assert len(prompt.instructions) < 1_000


def test_an_empty_meeting_still_makes_a_prompt() -> None:
    prompt = build_prompt(RecapRequest([]))
    assert "nothing has been said yet" in prompt.system_prompt and prompt.turn_count == 0


def _tone(duration_s: float, rate: int = 24_000) -> bytes:
    t = np.arange(int(duration_s * rate)) / rate
    return (np.sin(2 * np.pi * 1000 * t) * 0.5 * 32767).astype("<i2").tobytes()


def test_chunked_resampling_matches_one_call_above_60_db() -> None:
    pcm = _tone(3.0)
    whole = np.frombuffer(StreamingResampler(24_000, 16_000).process(pcm, last=True), "<i2")
    rng = random.Random(7)
    resampler = StreamingResampler(24_000, 16_000)
    out = bytearray()
    offset = 0
    while offset < len(pcm):
        size = rng.randrange(1, 4_000) * 2
        out += resampler.process(pcm[offset : offset + size])
        offset += size
    out += resampler.process(b"", last=True)
    chunked = np.frombuffer(bytes(out), "<i2")
    assert len(chunked) == len(whole) == 48_000
    signal = np.sum(whole.astype(np.float64) ** 2)
    noise = np.sum((whole.astype(np.float64) - chunked) ** 2)
    snr_db = math.inf if noise == 0 else 10 * math.log10(signal / noise)
    assert snr_db > 60


def test_the_resampler_costs_well_under_one_percent_of_real_time() -> None:
    pcm = _tone(60.0)
    chunk = 4_800  # 100 ms at 24 kHz, the emulator's reply.audio size
    resampler = StreamingResampler(24_000, 16_000)
    started = time.process_time()
    for offset in range(0, len(pcm), chunk):
        resampler.process(pcm[offset : offset + chunk])
    resampler.process(b"", last=True)
    assert (time.process_time() - started) / 60.0 < 0.01


async def test_a_reply_without_transcript_agent_still_returns_its_audio() -> None:
    emulator = make_emulator(faults=AgentFaults(omit_agent_transcript=True))
    sink = Sink()
    async with emulator.serve() as server, asyncio.timeout(BOUND_S):
        result = await run_recap(server.url, KEY, RecapRequest(TURNS), on_audio=sink, timeouts=FAST)
    assert result.text == "" and not result.was_interrupted
    assert words_of(bytes(sink.audio)) == emulator.sessions[0].replies[0].text.split()


async def test_a_reply_error_is_an_agent_error() -> None:
    emulator = make_emulator(faults=AgentFaults(reply_error=("llm_error", "upstream failure.")))
    async with emulator.serve() as server, asyncio.timeout(BOUND_S):
        with pytest.raises(AgentError, match=r"llm_error\): upstream failure; try the recap again"):
            await run_recap(server.url, KEY, RecapRequest(TURNS), on_audio=Sink(), timeouts=FAST)
    record = emulator.sessions[0]
    await record.closed.wait()
    assert record.is_end_received and record.close_code == 1000


async def test_recap_through_the_shared_emulator_server() -> None:
    from recorder.emulator.server import serve_emulators

    agent = make_emulator(realtime_factor=math.inf)
    sink = Sink()
    turns = three_hour_meeting()  # the biggest prompt, through the shared frame-size limit
    async with serve_emulators(agent=agent) as server, asyncio.timeout(BOUND_S):
        url = server.urls["agent"]
        result = await run_recap(url, KEY, RecapRequest(turns), on_audio=sink, timeouts=FAST)
    assert words_of(bytes(sink.audio)) == result.text.split()
    assert agent.sessions[0].close_code == 1000
