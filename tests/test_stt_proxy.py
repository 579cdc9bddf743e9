"""The STT socket's proxy lookup gives websockets' answer from the proxy variables alone."""

from __future__ import annotations

import os

import pytest
from websockets.uri import get_proxy, parse_uri

from recorder.stt.proxy import proxy_for

URLS = ("wss://streaming.example.com/v3/ws", "ws://127.0.0.1:8765/v3/ws")

ENVIRONMENTS: list[dict[str, str]] = [
    {},
    {"HTTPS_PROXY": "http://up:3128"},
    {"https_proxy": "http://low:3128", "HTTPS_PROXY": "http://up:3128"},
    {"https_proxy": "", "HTTPS_PROXY": "http://up:3128"},  # empty lowercase: off
    {"HTTPS_PROXY": ""},
    {"HTTP_PROXY": "http://plain:3128"},
    {"HTTP_PROXY": "http://plain:3128", "REQUEST_METHOD": "GET"},  # CGI: ignored
    {"http_proxy": "http://plain:3128", "REQUEST_METHOD": "GET"},
    {"WSS_PROXY": "http://wss:3128", "WS_PROXY": "http://ws:3128", "HTTPS_PROXY": "http://s:1"},
    {"SOCKS_PROXY": "http://socks:1080", "HTTPS_PROXY": "http://s:1"},
    {"socks_proxy": "socks5://socks:1080"},
    {"ALL_PROXY": "http://all:3128"},  # websockets does not read it
    {"HTTPS_PROXY": "http://up:3128", "HTTP_PROXY": "http://plain:3128", "NO_PROXY": "*"},
    {"HTTPS_PROXY": "http://up:3128", "HTTP_PROXY": "http://p:1", "no_proxy": "example.com"},
    {"HTTPS_PROXY": "http://up:3128", "HTTP_PROXY": "http://p:1", "NO_PROXY": ".example.com"},
    {"HTTPS_PROXY": "http://up:3128", "HTTP_PROXY": "http://p:1", "NO_PROXY": "a.org, 127.0.0.1"},
    {"HTTPS_PROXY": "http://up:3128", "HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1:8765"},
    {"HTTPS_PROXY": "http://up:3128", "HTTP_PROXY": "http://p:1", "no_proxy": "", "NO_PROXY": "*"},
    {"HTTPS_PROXY": "http://up:3128", "NO_PROXY": "ample.com"},  # a suffix, not a domain
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_same_proxy_as_websockets(
    url: str, environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    uri = parse_uri(url)
    assert proxy_for(uri) == get_proxy(uri)


def test_a_changed_environment_counts_at_the_next_open(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = parse_uri(URLS[0])
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    assert proxy_for(uri) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://up:3128")
    assert proxy_for(uri) == "http://up:3128"
    monkeypatch.setenv("NO_PROXY", "streaming.example.com")
    assert proxy_for(uri) is None
