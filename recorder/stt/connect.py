"""Open one streaming socket and translate websockets/OS errors at this seam.

:func:`map_exceptions` is the one place where foreign exceptions become
:class:`~recorder.errors.SttRejected` (retrying will not help) or
:class:`~recorder.errors.SttConnectionError` (retry with backoff), like
httpcore's ``map_exceptions``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)

from recorder import __version__
from recorder.errors import SttConnectionError, SttRejected
from recorder.wirelog import wire_logger

__all__ = ["FOREIGN_EXCEPTIONS", "WIRE_LOGGER", "map_exceptions", "open_socket", "redact_url"]

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
) -> ClientConnection:
    """Open one streaming socket (the upgrade only; ``Begin`` is read by the caller).

    A server that stops answering pings (a stalled socket: connected, silent)
    is dropped ``ping_timeout_s`` after a ping (close code 1011), so the stream
    reconnects instead of waiting forever
    (https://websockets.readthedocs.io/en/stable/topics/keepalive.html).

    Compression is off: PCM barely compresses and permessage-deflate costs about
    4x the client CPU (docs/architecture.md, "Decisions and measurements").

    Raises:
        SttRejected: see :func:`map_exceptions`.
        SttConnectionError: see :func:`map_exceptions`.
    """
    with map_exceptions(redact_url(url)):
        return await connect(
            url,
            additional_headers=dict(headers),
            compression=None,
            open_timeout=open_timeout_s,
            close_timeout=close_timeout_s,
            ping_interval=ping_interval_s,
            ping_timeout=ping_timeout_s,
            user_agent_header=f"recorder/{__version__}",
            # Server frames are JSON turns, far below 1 MiB.
            max_size=2**20,
            logger=WIRE_LOGGER,
        )
