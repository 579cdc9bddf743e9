"""Fault injection in the streaming emulator: closes, HTTP refusals, drops, stalls, bad frames."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import websockets
from test_emulator_support import make_stand_in_emulator, open_client, silence, speech

from recorder.emulator.faults import Fault, FaultPlan
from recorder.emulator.streaming.server import StreamingEmulator


@pytest.fixture
def make_emulator() -> Callable[..., StreamingEmulator]:
    return make_stand_in_emulator


@pytest.mark.parametrize(
    ("fault", "code", "reason"),
    [
        (Fault.close(3005, after_chunks=2), 3005, "Session Cancelled: An error occurred"),
        (
            Fault.close(3008, at_audio_s=0.3),
            3008,
            "Session Expired: Maximum session duration exceeded",
        ),
        (Fault.close(4000, "custom", after_chunks=1), 4000, "custom"),
    ],
)
async def test_close_fault(
    make_emulator: Callable[..., StreamingEmulator], fault: Fault, code: int, reason: str
) -> None:
    emulator = make_emulator(faults=FaultPlan(default=(fault,)))
    async with emulator.serve() as server:
        client = await open_client(server.url)
        await client.next_of("Begin")
        for _ in range(5):
            try:
                await client.ws.send(silence(100))
            except websockets.ConnectionClosed:
                break
        assert await client.closed() == (code, reason)
    assert client.of_type("Error")[0]["error_code"] == code


async def test_fault_before_begin_on_one_connection_only(
    make_emulator: Callable[..., StreamingEmulator],
) -> None:
    plan = FaultPlan(per_connection={1: (Fault.close(3009),), 2: (Fault.close(1011),)})
    emulator = make_emulator(faults=plan)
    async with emulator.serve() as server:
        results = []
        for _ in range(4):
            client = await open_client(server.url)
            try:
                await client.next_of("Begin")
                await client.ws.close()
            except AssertionError:
                pass
            results.append(await client.closed())
    assert [code for code, _ in results] == [1000, 3009, 1011, 1000]
    assert results[1][1] == "Unauthorized Connection: Too many concurrent sessions"
    assert [record.session_id is None for record in emulator.sessions] == [False, True, True, False]


@pytest.mark.parametrize("status", [401, 503])
async def test_reject_http_fault(
    make_emulator: Callable[..., StreamingEmulator], status: int
) -> None:
    emulator = make_emulator(faults=FaultPlan(per_connection={0: (Fault.reject_http(status),)}))
    async with emulator.serve() as server:
        with pytest.raises(websockets.InvalidStatus) as caught:
            await open_client(server.url)
        assert caught.value.response.status_code == status
        client = await open_client(server.url)
        await client.next_of("Begin")
        await client.ws.close()
    assert emulator.http_rejections == [(0, status)]
    assert [record.index for record in emulator.sessions] == [1]


async def test_drop_fault_gives_1006(make_emulator: Callable[..., StreamingEmulator]) -> None:
    emulator = make_emulator(faults=FaultPlan(default=(Fault.drop(after_chunks=1),)))
    async with emulator.serve() as server:
        client = await open_client(server.url)
        await client.next_of("Begin")
        await client.ws.send(silence(100))
        code, _ = await client.closed()
    assert code == 1006
    assert client.of_type("Error") == []


async def test_stall_fault_never_answers(make_emulator: Callable[..., StreamingEmulator]) -> None:
    emulator = make_emulator(faults=FaultPlan(default=(Fault.stall(on_terminate=True),)))
    async with emulator.serve() as server:
        client = await open_client(server.url)
        await client.next_of("Begin")
        await client.send_audio(speech(["Hello"]))
        await client.terminate()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.next_of("Termination")
        await client.ws.close()
    assert client.of_type("Termination") == []


async def test_stall_on_audio(make_emulator: Callable[..., StreamingEmulator]) -> None:
    emulator = make_emulator(faults=FaultPlan(default=(Fault.stall(after_chunks=1),)))
    async with emulator.serve() as server:
        client = await open_client(server.url)
        await client.next_of("Begin")
        await client.send_audio(speech(["Hello", "there."]) + silence(300))
        await client.terminate()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.next_of("Turn")
        await client.ws.close()


async def test_malformed_json_fault(make_emulator: Callable[..., StreamingEmulator]) -> None:
    emulator = make_emulator(faults=FaultPlan(default=(Fault.malformed_json(after_chunks=1),)))
    async with emulator.serve() as server:
        client = await open_client(server.url)
        await client.next_of("Begin")
        await client.send_audio(speech(["Hello", "there."]) + silence(300))
        await client.terminate()
        assert (await client.closed())[0] == 1000
    assert len(client.raw) == len(client.messages) + 1
    assert client.raw[1] == '{"type": "Turn", "transcript": '
    assert client.of_type("Turn")[0]["transcript"] == "Hello there."


async def test_malformed_json_before_begin(
    make_emulator: Callable[..., StreamingEmulator],
) -> None:
    emulator = make_emulator(faults=FaultPlan(default=(Fault.malformed_json(),)))
    async with emulator.serve() as server:
        client = await open_client(server.url)
        await client.next_of("Begin")
        await client.terminate()
        assert (await client.closed())[0] == 1000
    assert client.raw[0] == '{"type": "Turn", "transcript": '
    assert [m["type"] for m in client.messages] == ["Begin", "Termination"]


async def test_delay_termination_fault(make_emulator: Callable[..., StreamingEmulator]) -> None:
    emulator = make_emulator(faults=FaultPlan(default=(Fault.delay_termination(0.4),)))
    async with emulator.serve() as server:
        client = await open_client(server.url)
        await client.next_of("Begin")
        loop = asyncio.get_running_loop()
        await client.terminate()
        asked = loop.time()
        await client.next_of("Termination")
        assert loop.time() - asked >= 0.4
        assert (await client.closed())[0] == 1000
