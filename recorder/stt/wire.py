"""One STT websocket as an asyncio protocol over websockets' sans-I/O client.

:class:`WireSocket` feeds the bytes of its transport to a
``websockets.client.ClientProtocol`` and writes what the protocol says to
send straight back to the transport: no reader task, no sender task, no
message queue. Text frames (the server's JSON) are handed to a callback as
they are parsed, several per read; an audio chunk is one ``transport.write``.
This keeps a few hundred sockets in one process cheap
(docs/architecture.md, "Decisions and measurements"; websockets' sans-I/O
layer: https://websockets.readthedocs.io/en/stable/howto/sansio.html).

Audio frames are framed here rather than by ``Protocol.send_binary``, whose
``Frame.serialize`` reads ``os.urandom`` (a system call) for every frame's
masking key: the keys come from one ``os.urandom`` read per 1,024 frames,
still a strong source as RFC 6455 §5.3 asks, and the payload is masked by
websockets' C ``apply_mask``. Control and text frames go through the protocol.

The upgrade request is websockets' own, built once per URL, and a plainly
good ``101`` answer is checked here rather than by websockets' HTTP parser
(:mod:`recorder.stt.upgrade`): a socket is opened per turn.

Server frames are cut here too: a whole, final, unmasked text frame (the
server's JSON, RFC 6455 §5.2) is decoded and handed on directly, and every
other whole frame (fragments, ping, pong, close, anything odd) is handed to
the protocol alone, so its parser always starts on a frame boundary and
decides exactly as it did when it read every byte. A header it must judge at
once (masked, too big) hands it the rest of the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import ssl
import struct
from collections.abc import Callable, Mapping
from typing import cast

from websockets.asyncio.client import connect_http_proxy
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import Proxy, WebSocketURI, parse_proxy, parse_uri

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

from recorder.stt.proxy import proxy_for
from recorder.stt.upgrade import MAX_ANSWER_BYTES, is_plain_upgrade, request_bytes

__all__ = ["HIGH_WATER", "WireSocket", "open_wire", "tls_context"]

#: Above this many unsent bytes the transport pauses us (asyncio's flow control).
HIGH_WATER = 64 * 1024

_KEY_POOL_BYTES = 4096  # 1,024 masking keys per os.urandom call
_HEAD_SHORT = struct.Struct("!BB")
_HEAD_MEDIUM = struct.Struct("!BBH")
_HEAD_LONG = struct.Struct("!BBQ")
_BINARY_FIN = 0x80 | Opcode.BINARY.value
_TEXT_FIN = 0x80 | Opcode.TEXT.value


class WireSocket(asyncio.Protocol):
    """A client websocket driven on the transport's callbacks.

    Text messages that arrive before :meth:`receive` names their handler (the
    server may send its first message in the same packet as the handshake's
    answer) are held and handed over then.

    Args:
        protocol: a fresh ``ClientProtocol`` (state CONNECTING).
        ping_interval_s: ping period (None: no keepalive).
        ping_timeout_s: how long a ping may go unanswered before the socket fails (1011).
        close_timeout_s: how long to wait for the server to close TCP after the close frames.
    """

    #: Cut server frames here (see the module's docstring); False leaves every byte to
    #: websockets (tests compare the two).
    parse_frames = True

    def __init__(
        self,
        protocol: ClientProtocol,
        *,
        ping_interval_s: float | None = 20.0,
        ping_timeout_s: float | None = 20.0,
        close_timeout_s: float = 1.0,
    ) -> None:
        self.protocol = protocol
        self._on_text: Callable[[str], None] | None = None
        self._early: list[str] = []
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._close_timeout_s = close_timeout_s
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = self._loop.create_future()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        # Called as TCP goes, after :attr:`closed` resolves: a waiter woken by it
        # directly resumes one loop iteration sooner than one chained to the future.
        self.on_close: Callable[[], None] | None = None
        self.paused = False
        self._drain: asyncio.Future[None] | None = None
        self._fragments: list[bytes] = []
        self._ping_handle: asyncio.TimerHandle | None = None
        self._ping_sent: bytes | None = None
        self._close_handle: asyncio.TimerHandle | None = None
        self._keys = b""
        self._key_at = 0
        # The upgrade's answer so far, while :meth:`expect_upgrade` reads it (see upgrade.py).
        self._answer: bytearray | None = None
        # Once our own answer check opened the socket, the bytes of a frame not yet whole
        # (see _parse); None while websockets parses every frame.
        self._frames: bytes | None = None

    # -- state ------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """The handshake succeeded and no close frame was sent or received."""
        return self.protocol.state is State.OPEN

    @property
    def close_code(self) -> int | None:
        """As websockets reports it: None until closed, 1006 when no close frame came."""
        return self.protocol.close_code

    @property
    def close_reason(self) -> str | None:
        """The close frame's reason (None until closed)."""
        return self.protocol.close_reason

    def write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    def receive(self, on_text: Callable[[str], None]) -> None:
        """Hand every text message to ``on_text`` from now on (those held first)."""
        self._on_text = on_text
        early, self._early = self._early, []
        for text in early:
            on_text(text)

    # -- sending ----------------------------------------------------------------

    def send_binary(self, data: bytes) -> None:
        """One audio message: a single write of header, masking key and masked payload.

        Raises:
            RuntimeError: the socket is not open (the caller checks :attr:`is_open`).
        """
        transport = self.transport
        if transport is None or self.protocol.state is not State.OPEN:
            raise RuntimeError("the websocket is not open")
        at = self._key_at
        if at >= len(self._keys):
            self._keys, at = os.urandom(_KEY_POOL_BYTES), 0
        key = self._keys[at : at + 4]
        self._key_at = at + 4
        length = len(data)
        if length < 126:
            head = _HEAD_SHORT.pack(_BINARY_FIN, 0x80 | length)
        elif length < 65536:
            head = _HEAD_MEDIUM.pack(_BINARY_FIN, 0x80 | 126, length)
        else:
            head = _HEAD_LONG.pack(_BINARY_FIN, 0x80 | 127, length)
        transport.write(b"".join((head, key, apply_mask(data, key))))

    def send_text(self, text: str) -> None:
        """One text message (a control message), through the protocol."""
        self.protocol.send_text(text.encode())
        self._flush()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; :attr:`closed` resolves once TCP is closed."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self._flush()
        elif self.transport is not None and self.protocol.state is State.CONNECTING:
            self.transport.abort()

    def abort(self) -> None:
        """Drop TCP at once."""
        if self.transport is not None:
            self.transport.abort()

    async def drain(self) -> None:
        """Wait until the transport takes writes again (returns at once unless paused)."""
        if self.paused:
            if self._drain is None:
                self._drain = self._loop.create_future()
            await asyncio.shield(self._drain)

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    transport.write_eof()
            else:
                transport.close()
        if self._close_handle is None and self.protocol.close_expected():
            self._close_handle = self._loop.call_later(self._close_timeout_s, transport.abort)

    # -- keepalive ----------------------------------------------------------------

    def _schedule_ping(self) -> None:
        if self._ping_interval_s is not None and not self.closed.done():
            self._ping_handle = self._loop.call_later(self._ping_interval_s, self._ping)

    def _ping(self) -> None:
        if self.protocol.state is not State.OPEN:
            return
        self._ping_sent = os.urandom(4)
        self.protocol.send_ping(self._ping_sent)
        self._flush()
        if self._ping_timeout_s is None:
            self._schedule_ping()
        else:
            self._ping_handle = self._loop.call_later(self._ping_timeout_s, self._ping_missed)

    def _ping_missed(self) -> None:
        if self._ping_sent is not None and self.protocol.state is State.OPEN:
            self.protocol.logger.info("! timed out waiting for keepalive pong")
            self.protocol.fail(1011, "keepalive ping timeout")
            self._flush()
            self.abort()

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """TCP (and TLS) is up: write through it from now on."""
        # A stream transport (uvloop's is one, though not an asyncio.Transport subclass).
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)

    def expect_upgrade(self) -> None:
        """Read the upgrade's answer here, handing websockets only what is not plainly good."""
        self._answer = bytearray()

    def _read_answer(self, data: bytes) -> bytes:
        """Take answer bytes; return what the protocol is to parse (b"" while the head is open)."""
        answer = self._answer
        assert answer is not None
        answer += data
        end = answer.find(b"\r\n\r\n")
        if end < 0 and len(answer) <= MAX_ANSWER_BYTES:
            return b""  # the head goes on
        self._answer = None
        protocol = self.protocol
        if end < 0 or not is_plain_upgrade(bytes(answer[: end + 4]), protocol.key):
            return bytes(answer)  # websockets parses it as it always did
        # What ClientProtocol.parse does after a good answer: OPEN, then frames.
        protocol.state = State.OPEN
        protocol.parser = protocol.parse()
        next(protocol.parser)
        self.handshake.set_result(None)
        self._schedule_ping()
        if self.parse_frames:
            self._frames = b""
        return bytes(answer[end + 4 :])

    def data_received(self, data: bytes) -> None:
        """Hand on messages; feed the protocol what it must judge (pings, closes, oddities)."""
        if self._answer is not None:
            data = self._read_answer(data)
            if not data:
                return
        if self._frames is not None:
            self._parse(data)
        else:
            self._feed(data)

    def _parse(self, data: bytes) -> None:
        """Cut whole frames: final text frames are handed on here, the rest fed to the protocol.

        Only while the protocol is OPEN (its parser idle on a frame boundary);
        from a closing handshake, or a header the protocol must judge at once
        (masked, too big), everything it has not seen goes to it.
        """
        pending = self._frames
        buf = pending + data if pending else data
        size = len(buf)
        at = 0
        protocol = self.protocol
        max_size = protocol.max_size
        hand_over = False
        while at < size:
            if protocol.state is not State.OPEN:
                hand_over = True
                break
            if size - at < 2:
                break
            length = buf[at + 1]  # with the mask bit set (a masked server frame): >= 128
            if length < 126:
                start = at + 2
            elif length == 126:
                if size - at < 4:
                    break
                length = (buf[at + 2] << 8) | buf[at + 3]
                start = at + 4
            elif length == 127:
                if size - at < 10:
                    break
                length = int.from_bytes(buf[at + 2 : at + 10], "big")
                start = at + 10
            else:
                hand_over = True
                break
            fragment = protocol.cur_size
            if max_size is not None and length > max_size - (fragment or 0):
                hand_over = True
                break
            end = start + length
            if end > size:
                break
            if buf[at] == _TEXT_FIN and fragment is None:
                text = buf[start:end].decode()
                if self._on_text is not None:
                    self._on_text(text)
                else:
                    self._early.append(text)
            else:
                self._feed(buf[at:end])  # a whole frame: the parser stays on a boundary
            at = end
        if hand_over:
            self._frames = None
            self._feed(buf[at:])
        else:
            self._frames = buf[at:]  # the start of a frame whose rest comes later

    def _feed(self, data: bytes) -> None:
        """The protocol parses ``data``; pongs and the close reply go out; frames are handled."""
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        self._flush()  # pongs, the close reply
        for event in events:
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Response) and not self.handshake.done():
                if protocol.handshake_exc is None:
                    self.handshake.set_result(None)
                    self._schedule_ping()
                else:
                    self.handshake.set_exception(protocol.handshake_exc)

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or (opcode is Opcode.CONT and self._fragments):
            if not frame.fin:
                self._fragments.append(bytes(frame.data))
                return
            data = bytes(frame.data)
            if self._fragments:
                data = b"".join((*self._fragments, data))
                self._fragments.clear()
            if self._on_text is not None:
                self._on_text(data.decode())
            else:
                self._early.append(data.decode())
        elif opcode is Opcode.PONG and bytes(frame.data) == self._ping_sent:
            self._ping_sent = None
            if self._ping_handle is not None:
                self._ping_handle.cancel()
            self._schedule_ping()

    def _give_up_answer(self) -> None:
        """The connection ends before the answer's head did: websockets judges what came."""
        if self._answer is not None:
            answer, self._answer = bytes(self._answer), None
            self.protocol.receive_data(answer)  # no head: at most a handshake_exc, no event

    def _give_up_frames(self) -> None:
        """The connection ends inside a frame: the protocol gets its start, as it always did."""
        pending, self._frames = self._frames, None
        if pending:
            self.protocol.receive_data(pending)  # not a whole frame: no event

    def eof_received(self) -> bool | None:
        """The server half-closed: the protocol decides what follows."""
        self._give_up_answer()
        self._give_up_frames()
        self.protocol.receive_eof()
        self.protocol.events_received()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """TCP is gone: settle the handshake, the drain waiter and :attr:`closed`."""
        self._give_up_answer()
        self._give_up_frames()
        self.protocol.receive_eof()  # idempotent: the protocol is CLOSED after it
        # The protocol ends parked in its own parser generator, which holds it: a cycle
        # (see below). Closing the generator, never stepped once CLOSED, breaks it.
        self.protocol.parser.close()
        for handle in (self._ping_handle, self._close_handle):
            if handle is not None:
                handle.cancel()
        if not self.handshake.done():
            error = self.protocol.handshake_exc or exc
            if error is None:
                error = InvalidHandshake("connection closed during the opening handshake")
            self.handshake.set_exception(error)
            self.handshake.exception()  # retrieved: whoever awaits it raises it
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self.closed.set_result(None)
        on_close = self.on_close
        # The callbacks are bound methods of our owner, which holds us: a cycle that would
        # leave every socket's objects to the full garbage collection (a pause of every
        # participant's audio) rather than to their reference counts (as asyncpg found:
        # https://github.com/MagicStack/asyncpg/pull/1049).
        self._on_text = self.on_close = None
        if on_close is not None:
            on_close()

    def pause_writing(self) -> None:
        """The transport's buffer passed the high-water mark."""
        self.paused = True

    def resume_writing(self) -> None:
        """The transport's buffer drained: wake whoever waits in :meth:`drain`."""
        self.paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The client TLS settings every socket shares (verified, the system's CAs).

    Building one loads the CA store, tens of ms of CPU: once per socket, with a
    socket per turn, that was more than the audio cost at 200 speakers.
    """
    return ssl.create_default_context()


# Every socket of a meeting opens the same URL; a WebSocketURI is never changed after parsing.
_parse_uri = functools.lru_cache(maxsize=64)(parse_uri)


async def open_wire(
    url: str,
    headers: Mapping[str, str],
    *,
    open_timeout_s: float,
    close_timeout_s: float,
    ping_interval_s: float | None,
    ping_timeout_s: float | None,
    user_agent: str,
    max_size: int,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> WireSocket:
    """Connect TCP (TLS for ``wss``), do the opening handshake, return the open socket.

    Raises what websockets' own client raises for the same failures
    (``InvalidURI``, ``InvalidStatus``, ``InvalidHandshake``, ``OSError``,
    ``TimeoutError``), so the caller maps them in one place.
    """
    uri = _parse_uri(url)
    loop = asyncio.get_running_loop()
    protocol = ClientProtocol(uri, extensions=None, max_size=max_size, logger=logger)
    wire: WireSocket | None = None

    def factory() -> WireSocket:
        nonlocal wire
        wire = WireSocket(
            protocol,
            ping_interval_s=ping_interval_s,
            ping_timeout_s=ping_timeout_s,
            close_timeout_s=close_timeout_s,
        )
        return wire

    context = tls_context() if uri.secure else None
    proxy = proxy_for(uri)  # HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as websockets' connect()
    try:
        async with asyncio.timeout(open_timeout_s):
            if proxy is None:
                await loop.create_connection(
                    factory,
                    uri.host,
                    uri.port,
                    ssl=context,
                    server_hostname=uri.host if context is not None else None,
                )
            else:
                await _through_proxy(factory(), uri, parse_proxy(proxy), context, user_agent)
            assert wire is not None
            if protocol.debug:  # websockets logs the request and answer (the logger redacts)
                request = protocol.connect()
                request.headers.update(headers)
                request.headers.setdefault("User-Agent", user_agent)
                protocol.send_request(request)
                wire._flush()
            else:
                assert wire.transport is not None
                wire.expect_upgrade()
                wire.transport.write(
                    request_bytes(url, tuple(headers.items()), user_agent, protocol.key)
                )
            await wire.handshake
    except BaseException:
        if wire is not None:
            wire.abort()
        raise
    return wire


async def _through_proxy(
    wire: WireSocket,
    uri: WebSocketURI,
    proxy: Proxy,
    context: ssl.SSLContext | None,
    user_agent: str,
) -> None:
    """Tunnel through an HTTP(S) proxy (CONNECT), then TLS to the server, as websockets does.

    https://websockets.readthedocs.io/en/stable/topics/proxies.html
    """
    if not proxy.scheme.startswith("http"):
        raise OSError(f"a {proxy.scheme} proxy is not supported for speech-to-text sockets")
    transport: asyncio.BaseTransport = await connect_http_proxy(
        proxy,
        uri,
        user_agent_header=user_agent,
        ssl=tls_context() if proxy.scheme == "https" else None,
    )
    transport.set_protocol(wire)
    if context is not None:
        upgraded = await asyncio.get_running_loop().start_tls(
            transport,  # type: ignore[arg-type]
            wire,
            context,
            server_hostname=uri.host,
        )
        assert upgraded is not None
        transport = upgraded
    wire.connection_made(transport)
