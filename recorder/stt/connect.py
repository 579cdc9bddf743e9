"""Open one streaming socket and translate websockets/OS errors at this seam.

:func:`map_exceptions` is the one place where foreign exceptions become
:class:`~recorder.errors.SttRejected` (retrying will not help) or
:class:`~recorder.errors.SttConnectionError` (retry with backoff), like
httpcore's ``map_exceptions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)

from recorder import __version__
from recorder.errors import SttConnectionError, SttRejected
from recorder.stt.wire import WireSocket, open_wire
from recorder.wirelog import wire_logger

__all__ = [
    "FOREIGN_EXCEPTIONS",
    "KEY_CHECK_TIMEOUT_S",
    "WIRE_LOGGER",
    "KeyCheck",
    "KeyRejected",
    "check_api_key",
    "map_exceptions",
    "open_socket",
    "redact_url",
    "token_url",
]

# Every foreign exception type map_exceptions catches (tests check each one maps).
FOREIGN_EXCEPTIONS: tuple[type[BaseException], ...] = (
    InvalidStatus,
    InvalidURI,
    InvalidHandshake,
    ConnectionClosed,
    WebSocketException,
    TimeoutError,
    OSError,
    EOFError,
)

_KEY_HINT = "check ASSEMBLYAI_API_KEY (or the temporary token)"


#: The logger handed to websockets for STT sockets, with secrets redacted.
WIRE_LOGGER = wire_logger("recorder.stt.wire")


@contextlib.contextmanager
def map_exceptions(url_for_messages: str) -> Iterator[None]:
    """Translate websockets and socket errors raised while connecting.

    Args:
        url_for_messages: the URL without its query string (which may hold a token).

    Raises:
        SttRejected: the server refused the upgrade with a status retrying cannot fix.
        SttConnectionError: anything transient (refused, reset, timeout, 5xx, 429).
    """
    try:
        yield
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise SttRejected(
                f"the server refused the credentials (HTTP {status})", code=status, hint=_KEY_HINT
            ) from exc
        if status in (404, 410):
            raise SttRejected(
                f"no streaming v3 endpoint at {url_for_messages} (HTTP {status})",
                code=status,
                hint="check the stt url; it must end in /v3/ws",
            ) from exc
        if 400 <= status < 500 and status not in (408, 429):
            raise SttRejected(
                f"the server rejected the connection request (HTTP {status})",
                code=status,
                hint="check the stt url and settings",
            ) from exc
        raise SttConnectionError(
            f"the speech-to-text service answered HTTP {status} at {url_for_messages}"
        ) from exc
    except InvalidURI as exc:
        raise SttRejected(
            f"{url_for_messages!r} is not a websocket url", hint="use a ws:// or wss:// url"
        ) from exc
    except (InvalidHandshake, ConnectionClosed, WebSocketException, EOFError) as exc:
        raise SttConnectionError(
            f"the websocket handshake with {url_for_messages} failed: {exc}"
        ) from exc
    except TimeoutError as exc:
        raise SttConnectionError(f"timed out connecting to {url_for_messages}") from exc
    except OSError as exc:
        raise SttConnectionError(
            f"could not connect to {url_for_messages}: {exc.strerror or exc}"
        ) from exc


def redact_url(url: str) -> str:
    """The URL without its query string, which may carry a temporary token."""
    return url.split("?", 1)[0]


async def open_socket(
    url: str,
    headers: Mapping[str, str],
    *,
    open_timeout_s: float,
    close_timeout_s: float,
    ping_interval_s: float | None = 20.0,
    ping_timeout_s: float | None = 20.0,
) -> WireSocket:
    """Open one streaming socket (the upgrade only; ``Begin`` is read by the caller).

    A server that stops answering pings (a stalled socket: connected, silent)
    is dropped ``ping_timeout_s`` after a ping (close code 1011), so the stream
    reconnects instead of waiting forever
    (https://websockets.readthedocs.io/en/stable/topics/keepalive.html).

    Compression is off: PCM barely compresses and permessage-deflate costs about
    4x the client CPU (docs/architecture.md, "Decisions and measurements").
    It goes through ``HTTPS_PROXY``/``HTTP_PROXY`` when set (``NO_PROXY`` honoured).

    Raises:
        SttRejected: see :func:`map_exceptions`.
        SttConnectionError: see :func:`map_exceptions`.
    """
    with map_exceptions(redact_url(url)):
        return await open_wire(
            url,
            headers,
            open_timeout_s=open_timeout_s,
            close_timeout_s=close_timeout_s,
            ping_interval_s=ping_interval_s,
            ping_timeout_s=ping_timeout_s,
            user_agent=f"recorder/{__version__}",
            # Server frames are JSON turns, far below 1 MiB.
            max_size=2**20,
            logger=WIRE_LOGGER,
        )


# -- checking the key before joining -------------------------------------------------

#: How long the key check waits for the token endpoint before carrying on without it.
KEY_CHECK_TIMEOUT_S = 3.0


class KeyRejected(SttRejected):
    """The key was refused before any session was opened (the token endpoint said 401/403)."""

    def __str__(self) -> str:
        if self.code is None:  # refused here, by the local check: never sent
            return f"the API key is malformed ({self.reason}; it was not sent); {self.hint}"
        return f"the speech-to-text service refused the API key ({self.reason}); {self.hint}"


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What the token endpoint said about the key.

    Attributes:
        is_verified: the service accepted the key.
        is_reachable: the host answered and was serving (not a network error, 429 or 5xx).
        problem: why the key could not be verified, or None.
    """

    is_verified: bool
    is_reachable: bool = True
    problem: str | None = None


def token_url(streaming_url: str) -> str:
    """The temporary-token endpoint beside a streaming endpoint.

    ``wss://HOST/v3/ws`` gives ``https://HOST/v3/token`` (``ws://`` gives
    ``http://``); the streaming URL's query (an emulator's knobs) is dropped
    (docs/providers.md, "Streaming: speech models, key check and pacing").
    """
    parts = urlsplit(streaming_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    base = parts.path.rsplit("/", 1)[0] if "/" in parts.path else ""
    return urlunsplit((scheme, parts.netloc, f"{base}/token", "expires_in_seconds=60", ""))


async def check_api_key(
    streaming_url: str, api_key: str, *, timeout_s: float = KEY_CHECK_TIMEOUT_S
) -> KeyCheck:
    """Ask the temporary-token endpoint whether the key is good, opening no session.

    ``GET /v3/token`` with the key answers 200 with a token for a good key and 401
    for a bad one; no streaming session is opened, so nothing is billed. The
    token is not used.

    Returns:
        Verified, or not verified with the reason (unreachable, an HTTP error
        other than 401/403, no token endpoint at that host): the caller carries on.

    Raises:
        KeyRejected: the service refused the key (HTTP 401 or 403), or the key
            holds characters no key has (spaces, control or non-ASCII).
    """
    if not api_key.isascii() or not api_key.isprintable() or " " in api_key:
        raise KeyRejected("it holds spaces, control or non-ASCII characters", hint=_KEY_HINT)
    url = token_url(streaming_url)
    request = urllib.request.Request(  # noqa: S310 - the scheme is http(s), built above
        url,
        headers={"Authorization": api_key, "User-Agent": f"recorder/{__version__}"},
    )
    where = redact_url(url)
    try:
        status, body = await asyncio.wait_for(
            asyncio.to_thread(_fetch, request, timeout_s), timeout_s + 1.0
        )
    except TimeoutError:
        return KeyCheck(False, False, f"no answer from {where} within {timeout_s:g} s")
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        return KeyCheck(False, False, f"cannot reach {where} ({reason})")
    except (http.client.HTTPException, ValueError) as exc:
        return KeyCheck(
            False, True, f"{where} gave an unreadable answer ({exc.__class__.__name__})"
        )
    if status in (401, 403):
        raise KeyRejected(f"HTTP {status}", code=status, hint=_KEY_HINT)
    if status == 200:
        try:
            token = json.loads(body).get("token")
        except (ValueError, AttributeError):
            token = None
        if isinstance(token, str) and token:
            return KeyCheck(True)
        return KeyCheck(False, True, f"{where} answered without a token")
    # 429 and 5xx: the service is there but not serving; anything else: no token endpoint.
    serving = status != 429 and status < 500
    return KeyCheck(False, serving, f"{where} answered HTTP {status}")


def _fetch(request: urllib.request.Request, timeout_s: float) -> tuple[int, bytes]:
    """One blocking GET (run in a thread): the status and at most 64 KiB of body."""
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return int(response.status), response.read(65536)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, b""
