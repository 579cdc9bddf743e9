"""The wire's own cut of server frames against websockets reading every byte (RFC 6455 §5).

Each case drives two sockets on fake transports with the same bytes, split the
same way: one cuts frames itself (the default), the other leaves every byte to
websockets (``parse_frames = False``, the behaviour before). Texts handed on,
frames written back (pongs, the close reply) and the close code must agree.
"""

from __future__ import annotations

import asyncio
import random
import struct
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.uri import parse_uri
from websockets.utils import accept_key

from recorder.stt.wire import WireSocket

MAX_SIZE = 4096


class Writes:
    """Records writes; closing only marks it (the test calls connection_lost)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.aborted

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


class FakeTransport(Writes, asyncio.Transport):
    """An asyncio stream transport (the selector loop's are its subclasses)."""


class OtherLoopsTransport(Writes):
    """A stream transport of another event loop: uvloop's do not subclass asyncio's."""


class Opened:
    """A socket past a plain 101 answer, with what it handed on and wrote."""

    def __init__(self, *, parse_frames: bool, transport: Writes | None = None) -> None:
        protocol = ClientProtocol(parse_uri("ws://stt.test/v3/ws"), max_size=MAX_SIZE)
        self.wire = WireSocket(protocol, ping_interval_s=None, ping_timeout_s=None)
        self.wire.parse_frames = parse_frames
        self.transport = transport or FakeTransport()
        self.wire.connection_made(self.transport)  # type: ignore[arg-type]
        self.texts: list[str] = []
        self.error: BaseException | None = None
        self.wire.expect_upgrade()
        self.wire.data_received(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(protocol.key).encode()
            + b"\r\n\r\n"
        )
        self.transport.writes.clear()  # the upgrade request is not compared
        self.wire.receive(self.texts.append)

    def feed(self, data: bytes) -> None:
        if self.error is None:  # asyncio drops a transport whose protocol raised
            try:
                self.wire.data_received(data)
            except Exception as exc:  # noqa: BLE001 - compared between the two sockets
                self.error = exc

    def end(self) -> Any:
        """TCP ends; what both sides must agree on."""
        self.wire.connection_lost(None)
        return (
            self.texts,
            [unmask(data) for data in self.transport.writes],
            self.wire.close_code,
            self.wire.close_reason,
            type(self.error).__name__ if self.error else None,
            self.transport.aborted,
        )


def unmask(data: bytes) -> tuple[int, bytes]:
    """A client frame written back: (first header byte, unmasked payload)."""
    length, at = data[1] & 0x7F, 2
    if length == 126:
        (length,), at = struct.unpack("!H", data[2:4]), 4
    elif length == 127:
        (length,), at = struct.unpack("!Q", data[2:10]), 10
    key, payload = data[at : at + 4], data[at + 4 : at + 4 + length]
    return data[0], bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(opcode: Opcode, data: bytes = b"", *, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin=fin).serialize(mask=False)


def close_frame(code: int, reason: str) -> bytes:
    return frame(Opcode.CLOSE, Close(code, reason).serialize())


def both(pieces: list[bytes]) -> tuple[Any, Any]:
    """Feed the same pieces to a cutting socket and a websockets-only one."""
    cut, reference = Opened(parse_frames=True), Opened(parse_frames=False)
    for piece in pieces:
        cut.feed(piece)
        reference.feed(piece)
    return cut.end(), reference.end()


def splits(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 6))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


async def test_texts_in_one_read_and_byte_by_byte() -> None:
    data = frame(Opcode.TEXT, b'{"type": "Begin"}') + frame(Opcode.TEXT, b"x" * 300)
    whole, reference = both([data])
    assert whole == reference
    assert whole[0] == ['{"type": "Begin"}', "x" * 300]
    one_by_one, _ = both([data[i : i + 1] for i in range(len(data))])
    assert one_by_one == reference


async def test_a_fragmented_text_with_a_ping_between_its_fragments() -> None:
    data = (
        frame(Opcode.TEXT, b'{"a": ', fin=False)
        + frame(Opcode.PING, b"p1")
        + frame(Opcode.CONT, b"1", fin=False)
        + frame(Opcode.CONT, b"}")
        + frame(Opcode.TEXT, b"after")
    )
    for pieces in ([data], [data[i : i + 1] for i in range(len(data))]):
        cut, reference = both(pieces)
        assert cut == reference
        assert cut[0] == ['{"a": 1}', "after"]
        assert cut[1] == [(0x80 | Opcode.PONG.value, b"p1")]


async def test_a_text_inside_a_fragmented_message_fails_as_websockets_says() -> None:
    data = frame(Opcode.TEXT, b"a", fin=False) + frame(Opcode.TEXT, b"b")
    cut, reference = both([data])
    assert cut == reference
    assert cut[1] == [
        (0x80 | Opcode.CLOSE.value, Close(1002, "expected a continuation frame").serialize())
    ]


async def test_a_close_frame_is_answered_and_what_follows_is_dropped() -> None:
    data = frame(Opcode.TEXT, b"last") + close_frame(4001, "asked") + frame(Opcode.TEXT, b"no")
    cut, reference = both([data])
    assert cut == reference
    texts, writes, code, reason, _, _ = cut
    assert texts == ["last"]
    assert writes == [(0x80 | Opcode.CLOSE.value, Close(4001, "asked").serialize())]
    assert (code, reason) == (4001, "asked")


async def test_a_ping_is_answered_with_its_payload() -> None:
    cut, reference = both([frame(Opcode.PING, b"\x00\x01\x02"), frame(Opcode.TEXT, b"t")])
    assert cut == reference
    assert cut[0] == ["t"]
    assert cut[1] == [(0x80 | Opcode.PONG.value, b"\x00\x01\x02")]


@pytest.mark.parametrize(
    "data",
    [
        Frame(Opcode.TEXT, b"masked").serialize(mask=True),  # servers must not mask
        frame(Opcode.TEXT, b"z" * (MAX_SIZE + 1)),  # 1009
        frame(Opcode.TEXT, b"z" * 100)[:3],  # cut off: the connection ends mid-frame
        bytes([0x83, 0x00]),  # a reserved opcode
        bytes([0xC1, 0x01]) + b"x",  # RSV1 without an extension
        frame(Opcode.CONT, b"orphan"),
        bytes([Opcode.PING.value, 0x01]) + b"p",  # a fragmented control frame
    ],
)
async def test_frames_websockets_fails_fail_the_same_way(data: bytes) -> None:
    text = frame(Opcode.TEXT, b"before")
    cut, reference = both([text + data + frame(Opcode.TEXT, b"after")])
    assert cut == reference
    assert cut[0][0] == "before"
    split, _ = both([text, data[:1], data[1:]])
    assert split == reference


async def test_invalid_utf8_raises_as_before() -> None:
    cut, reference = both([frame(Opcode.TEXT, b"\xff\xfe")])
    assert cut == reference
    assert cut[4] == "UnicodeDecodeError"


async def test_our_own_close_leaves_the_rest_to_websockets() -> None:
    cut, reference = Opened(parse_frames=True), Opened(parse_frames=False)
    for opened in (cut, reference):
        opened.feed(frame(Opcode.TEXT, b"one"))
        opened.wire.close(1000, "done")
        opened.feed(frame(Opcode.TEXT, b"two") + close_frame(1000, "done"))
    assert cut.end() == reference.end()
    assert cut.texts == ["one", "two"]


@pytest.mark.parametrize("seed", range(40))
async def test_random_frame_streams_agree(seed: int) -> None:
    rng = random.Random(seed)
    data = b""
    fragmented = False
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        payload = rng.randbytes(rng.choice([0, 1, 5, 125, 126, 127, 300, 70_000]) % 5000)
        text = payload.hex()[: len(payload)].encode()
        if kind < 0.5:
            data += frame(Opcode.CONT if fragmented else Opcode.TEXT, text)
            fragmented = False
        elif kind < 0.65:
            data += frame(Opcode.CONT if fragmented else Opcode.TEXT, text, fin=False)
            fragmented = True
        elif kind < 0.75:
            data += frame(Opcode.PING, payload[:125])
        elif kind < 0.82:
            data += frame(Opcode.PONG, payload[:125])
        elif kind < 0.87:
            data += frame(Opcode.BINARY, payload)
        elif kind < 0.92:
            data += close_frame(rng.choice([1000, 1011, 3008, 4001]), "r" * rng.randint(0, 20))
        elif kind < 0.96:
            data += frame(Opcode.TEXT, text)  # inside a fragmented message: a failure
        else:
            data += rng.randbytes(rng.randint(1, 20))  # garbage
    pieces = splits(data, rng)
    cut, reference = both(pieces)
    assert cut == reference


async def test_a_stream_transport_of_another_event_loop_is_taken() -> None:
    # It once had to be an asyncio.Transport: under uvloop every socket failed to open.
    opened = Opened(parse_frames=True, transport=OtherLoopsTransport())
    assert opened.wire.is_open
    opened.wire.send_binary(b"audio")
    assert [unmask(data) for data in opened.transport.writes] == [(0x82, b"audio")]
