"""The upgrade's common case: websockets' own request, and only answers websockets accepts."""

from __future__ import annotations

from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.uri import parse_uri
from websockets.utils import accept_key

from recorder.stt.upgrade import is_plain_upgrade, request_bytes

URL = "wss://streaming.example.com/v3/ws?speech_model=u3-rt-pro&token=t"


def websockets_request(url: str, headers: dict[str, str], user_agent: str) -> tuple[bytes, str]:
    protocol = ClientProtocol(parse_uri(url))
    request = protocol.connect()
    request.headers.update(headers)
    request.headers.setdefault("User-Agent", user_agent)
    return request.serialize(), protocol.key


def websockets_accepts(head: bytes, key: str) -> bool:
    protocol = ClientProtocol(parse_uri(URL))
    protocol.key = key
    protocol.receive_data(head)
    return protocol.handshake_exc is None and bool(protocol.events_received())


def test_the_request_is_websockets_own_with_each_key() -> None:
    for url, headers, user_agent in [
        (URL, {"Authorization": "key"}, "recorder/1"),
        ("ws://127.0.0.1:8765/v3/ws", {}, "recorder/1"),
        ("ws://[::1]:80/", {"User-Agent": "mine", "X-A": "1"}, "recorder/1"),
    ]:
        for _ in range(2):  # the second comes from the cache, with another key
            expected, key = websockets_request(url, headers, user_agent)
            assert request_bytes(url, tuple(headers.items()), user_agent, key) == expected


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD = [
    "HTTP/1.1 101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Accept: {accept_key(KEY)}",
]


def head(lines: list[str]) -> bytes:
    return "\r\n".join([*lines, "", ""]).encode()


def test_a_plain_good_answer_is_taken() -> None:
    assert is_plain_upgrade(head(GOOD), KEY)
    assert is_plain_upgrade(head([*GOOD[:1], "date: today", *GOOD[1:], "X-Empty:"]), KEY)
    assert is_plain_upgrade(head(["HTTP/1.1 101 ", "upgrade:WebSocket", *GOOD[2:]]), KEY)


def test_anything_else_is_left_to_websockets() -> None:
    others = [
        ["HTTP/1.1 401 Unauthorized", *GOOD[1:]],
        ["HTTP/1.0 101 Switching Protocols", *GOOD[1:]],
        ["HTTP/1.1 101", *GOOD[1:]],
        GOOD[:3],
        [*GOOD[:3], f"Sec-WebSocket-Accept: {accept_key('other')}"],
        [*GOOD, GOOD[3]],
        [*GOOD, "Upgrade: websocket"],
        [GOOD[0], "Connection: keep-alive, Upgrade", GOOD[1], GOOD[3]],
        [*GOOD, "Sec-WebSocket-Extensions: permessage-deflate"],
        [*GOOD, "Sec-WebSocket-Protocol: chat"],
        [*GOOD, "Bad Name: x"],
        [*GOOD, "no colon"],
        [*GOOD, "X-Control: a\x01b"],
        [*GOOD, *(f"X-{i}: y" for i in range(130))],
        [*GOOD, "X-Long: " + "y" * 9000],
    ]
    for lines in others:
        assert not is_plain_upgrade(head(lines), KEY), lines


_other_line = st.sampled_from(
    [
        "Upgrade: h2c",
        "Connection: close",
        "Sec-WebSocket-Accept: x",
        "Sec-WebSocket-Extensions: permessage-deflate",
        "Server: s",
        "Bad Name: x",
        "X-Tab:\tv\t",
        ": empty name",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([GOOD[0], "HTTP/1.1 101 OK", "HTTP/1.1 200 OK", "HTTP/1.1 101"]),
    st.lists(st.sampled_from(GOOD[1:]), max_size=4),  # the needed ones, missing or repeated
    st.lists(_other_line, max_size=2),
    st.randoms(use_true_random=False),
)
def test_an_answer_taken_here_is_one_websockets_accepts(
    status: str, needed: list[str], others: list[str], random: Random
) -> None:
    lines = needed + others
    random.shuffle(lines)
    answer = head([status, *lines])
    if is_plain_upgrade(answer, KEY):
        assert websockets_accepts(answer, KEY)
