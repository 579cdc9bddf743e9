"""The opening handshake's common case without websockets' general HTTP machinery.

A socket is opened per turn, so building the upgrade request (``Headers``,
``build_host``, ``serialize``) and parsing the answer (a generator per line,
``Headers``, ``parse_connection``/``parse_upgrade``) were a few percent of
the event loop at 200 speakers. Here the request is websockets' own, built
once per URL and headers and reused with each socket's fresh key, and an
answer is accepted only when it is plainly a good ``101`` that websockets
would accept too. Anything else (another status, an odd or doubtful header)
is handed to websockets' parser untouched, which raises exactly what it
always did.
"""

from __future__ import annotations

import functools
import re

from websockets.client import ClientProtocol
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS
from websockets.uri import parse_uri
from websockets.utils import accept_key

__all__ = ["MAX_ANSWER_BYTES", "is_plain_upgrade", "request_bytes"]

#: An answer whose header block has not ended within this many bytes goes to websockets.
MAX_ANSWER_BYTES = 16384

# websockets.http11's rules for a header name and value (RFC 7230 §3.2).
_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
# Headers whose presence needs websockets' negotiation (we offer neither).
_NEGOTIATED = (b"sec-websocket-extensions", b"sec-websocket-protocol")


@functools.lru_cache(maxsize=64)
def _request_around_key(
    url: str, headers: tuple[tuple[str, str], ...], user_agent: str
) -> tuple[bytes, bytes]:
    """The bytes before and after the key's value in websockets' upgrade request for ``url``."""
    protocol = ClientProtocol(parse_uri(url))
    request = protocol.connect()
    request.headers.update(headers)
    request.headers.setdefault("User-Agent", user_agent)
    serialized = request.serialize()
    at = serialized.index(f"\r\nSec-WebSocket-Key: {protocol.key}\r\n".encode())
    at += len("\r\nSec-WebSocket-Key: ")
    return serialized[:at], serialized[at + len(protocol.key) :]


def request_bytes(
    url: str, headers: tuple[tuple[str, str], ...], user_agent: str, key: str
) -> bytes:
    """The upgrade request websockets' ``ClientProtocol.connect`` would send with ``key``.

    Args:
        url: the socket's URL.
        headers: extra headers, added as ``Request.headers.update`` adds them.
        user_agent: the ``User-Agent`` unless ``headers`` name one.
        key: this socket's ``Sec-WebSocket-Key``.
    """
    before, after = _request_around_key(url, headers, user_agent)
    return b"".join((before, key.encode(), after))


def is_plain_upgrade(head: bytes, key: str) -> bool:
    """Whether ``head`` (status line and headers, CRLF CRLF included) is a good 101 answer.

    True only when websockets would accept it too: ``HTTP/1.1 101``, well-formed
    headers, one ``Upgrade: websocket``, one ``Connection: Upgrade``, one
    correct ``Sec-WebSocket-Accept``, and no extension or subprotocol.
    False means "let websockets decide", not "refused".
    """
    lines = head[:-4].split(b"\r\n")
    if len(lines) - 1 > MAX_NUM_HEADERS or max(map(len, lines)) + 2 > MAX_LINE_LENGTH:
        return False
    status = lines[0].split(b" ", 2)
    if len(status) != 3 or status[:2] != [b"HTTP/1.1", b"101"] or not _VALUE.fullmatch(status[2]):
        return False
    found: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        value = value.strip(b" \t")
        if not colon or not _NAME.fullmatch(name) or not _VALUE.fullmatch(value):
            return False
        name = name.lower()
        if name in found or name in _NEGOTIATED:
            return False  # a repeated header: let websockets judge it
        found[name] = value
    return (
        found.get(b"upgrade", b"").lower() == b"websocket"
        and found.get(b"connection", b"").lower() == b"upgrade"
        and found.get(b"sec-websocket-accept") == accept_key(key).encode()
    )
