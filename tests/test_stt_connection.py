"""One socket's driver on a fake socket: audio goes out at once, and waits in order when it must."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from recorder.stt.connection import SttConnection
from recorder.stt.events import Closed, Event, SocketClosed
from recorder.stt.pacer import Pacer
from recorder.stt.protocol import SttProtocol
from recorder.stt.resend import ResendBuffer, SocketMap
from recorder.stt.settings import DEFAULT_RETRY

BPS = 32_000
CHUNK = 3_200  # 100 ms
BEGIN = json.dumps({"type": "Begin", "id": "s1", "expires_at": 1})


class FakeSocket:
    """What SttConnection uses of a WireSocket, with the writes in order."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.sent: list[bytes | str] = []
        self.paused = False
        self.is_open = True
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self.on_close: Any = None
        self.on_text: Any = None
        self._resumed = asyncio.Event()
        self.wrote = asyncio.Event()

    def receive(self, on_text: Any) -> None:
        self.on_text = on_text

    def send_binary(self, data: bytes) -> None:
        assert self.is_open and not self.paused  # a paused socket takes no audio from us
        self.sent.append(data)
        self.wrote.set()

    def send_text(self, text: str) -> None:
        self.sent.append(text)
        self.wrote.set()

    async def drain(self) -> None:
        await self._resumed.wait()

    def resume(self) -> None:
        self.paused = False
        self._resumed.set()

    def lose(self, code: int) -> None:
        """TCP goes, as WireSocket.connection_lost reports it."""
        self.is_open = False
        self.close_code, self.close_reason = code, ""
        self.closed.set_result(None)
        if self.on_close is not None:
            self.on_close()

    def close(self) -> None:
        self.lose(1000)

    def abort(self) -> None:
        if not self.closed.done():
            self.lose(1006)


async def opened(stopping: list[bool]) -> tuple[SttConnection, FakeSocket, ResendBuffer, Any]:
    socket = FakeSocket()
    buffer = ResendBuffer(
        sample_bytes=2,
        min_bytes=BPS // 20,
        max_bytes=BPS,
        silence=0,
        resend_max_bytes=BPS * 30,
        backlog_max_bytes=BPS * 30,
    )
    events: list[Event] = []
    link = SttConnection(
        socket,  # type: ignore[arg-type]
        SttProtocol(),
        buffer=buffer,
        socket_map=SocketMap(0),
        pacer=Pacer(bytes_per_second=BPS, realtime_factor=1.0, max_lead_s=30.0),
        wake=asyncio.Event(),
        is_stopping=lambda: stopping[0],
        emit=events.append,
        on_begin=lambda: None,
        bytes_per_second=BPS,
        retry=dataclasses.replace(DEFAULT_RETRY, terminate_timeout_s=30.0),
        speech_model="u3-rt-pro",
        name="test",
    )
    run = asyncio.create_task(link.run({}))
    await asyncio.sleep(0)  # run() listens
    socket.on_text(BEGIN)
    await asyncio.sleep(0)  # run() resumes on Begin, before this task
    assert link._running
    assert link.write_now(0, bytes([1]) * CHUNK)
    return link, socket, buffer, run


async def test_live_audio_and_a_stop_need_no_sender_task() -> None:
    stopping = [False]
    link, socket, _, run = await opened(stopping)
    assert link.write_now(CHUNK, bytes([2]) * CHUNK)
    stopping[0] = True
    link.kick()  # the stream stops with nothing queued: Terminate goes at once
    assert link._sender is None
    assert socket.sent == [bytes([1]) * CHUNK, bytes([2]) * CHUNK, '{"type": "Terminate"}']
    assert link.terminate_sent
    socket.lose(1000)
    closed, lifetime = await asyncio.wait_for(run, 5)
    assert isinstance(closed, Closed) and lifetime is not None


async def test_audio_queued_behind_backpressure_goes_out_in_order_then_terminate() -> None:
    stopping = [False]
    link, socket, buffer, run = await opened(stopping)
    socket.paused = True
    assert not link.write_now(CHUNK, bytes([2]) * CHUNK)
    for n in (2, 3):
        buffer.queue(n * CHUNK - CHUNK, bytes([n]) * CHUNK)
    link.kick()  # cannot send now: the sender task waits for the drain
    assert link._sender is not None
    stopping[0] = True
    link.kick()
    for _ in range(10):  # the sender task runs, and waits for the drain
        await asyncio.sleep(0)
    assert socket.sent == [bytes([1]) * CHUNK]
    socket.resume()
    while len(socket.sent) < 4:
        socket.wrote.clear()
        await asyncio.wait_for(socket.wrote.wait(), 5)
    assert socket.sent == [
        bytes([1]) * CHUNK,
        bytes([2]) * CHUNK,
        bytes([3]) * CHUNK,
        '{"type": "Terminate"}',
    ]
    assert not buffer.pending
    socket.lose(1000)
    await asyncio.wait_for(run, 5)
    assert link._sender is None  # stopped with the socket


async def test_a_close_before_begin_ends_run_without_a_begin() -> None:
    socket = FakeSocket()
    events: list[Event] = []
    link = SttConnection(
        socket,  # type: ignore[arg-type]
        SttProtocol(),
        buffer=ResendBuffer(
            sample_bytes=2,
            min_bytes=1600,
            max_bytes=BPS,
            silence=0,
            resend_max_bytes=BPS,
            backlog_max_bytes=BPS,
        ),
        socket_map=SocketMap(0),
        pacer=Pacer(bytes_per_second=BPS, realtime_factor=1.0, max_lead_s=1.0),
        wake=asyncio.Event(),
        is_stopping=lambda: False,
        emit=events.append,
        on_begin=lambda: None,
        bytes_per_second=BPS,
        retry=DEFAULT_RETRY,
        speech_model="u3-rt-pro",
        name="test",
    )
    socket.lose(3009)  # refused before run() even listened
    closed, lifetime = await asyncio.wait_for(link.run({}), 5)
    assert (closed.code, lifetime) == (3009, None)
    assert not any(isinstance(event, SocketClosed) for event in events)
