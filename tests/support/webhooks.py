"""Webhook receivers for tests: a Standard Webhooks signature check and a recording receiver.

Shared by the webhook tests and the service's end-to-end fleet test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from tests.support.timing import TIMEOUT

__all__ = ["Receiver", "standard_webhooks_verify"]


def standard_webhooks_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks check, written from its specification, not from our code."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        part.split(",", 1)[1] == expected
        for part in headers["webhook-signature"].split(" ")
        if part.startswith("v1,")
    )


@dataclass
class Receiver:
    """An ASGI app that records each request (204), or refuses each (500) while ``failing``."""

    failing: bool = False
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    refused: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status = 500 if self.failing else 204
        async with self.changed:
            if self.failing:
                self.refused += 1
            else:
                self.received.append((headers, body))
            self.changed.notify_all()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def wait(self, predicate: Any) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), TIMEOUT * 3)

    def kinds(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.received]
