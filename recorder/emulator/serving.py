"""What the emulators' servers share: websockets options and JSON responses."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

from recorder.wirelog import wire_logger

__all__ = ["json_response", "server_options"]


def server_options() -> dict[str, Any]:
    """Keyword arguments for ``websockets.asyncio.server.serve`` shared by the emulators."""
    return {
        # websockets' own limit stays at its 1 MiB default so other emulators on the same
        # port keep theirs; the streaming session enforces 128 KB itself
        # (docs/providers.md, "Streaming: audio").
        "max_size": 2**20,
        # PCM barely compresses and deflate costs the client CPU about 4x
        # (docs/architecture.md, "Decisions and measurements").
        "compression": None,
        # Clients send their key in the handshake; it must not reach a debug log.
        "logger": wire_logger("recorder.emulator.websocket"),
    }


def json_response(connection: ServerConnection, status: int, body: dict[str, Any]) -> Response:
    """An HTTP response with a JSON body, for endpoints served next to the sockets."""
    response = connection.respond(status, json.dumps(body))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response
