"""Standard Webhooks signatures (https://www.standardwebhooks.com/, "Signature scheme").

Each message carries ``webhook-id`` (the same on every retry), ``webhook-timestamp``
(Unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``
keyed with the endpoint's secret, written ``whsec_<base64 key>``. Receivers can
check it with any Standard Webhooks library.

Endpoint secrets are derived: HMAC-SHA256 of the endpoint's id and random salt under
the server's ``RECORDER_WEBHOOK_KEY``. The database holds only the salt, so a copy
of it cannot sign, and the secret can be shown again by whoever holds the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["SECRET_PREFIX", "derive_secret", "sign", "verify"]

SECRET_PREFIX = "whsec_"


def derive_secret(server_key: str, endpoint_id: int, salt: str) -> str:
    """The ``whsec_...`` secret of one endpoint."""
    digest = hmac.new(
        server_key.encode("utf-8"), f"recorder webhook {endpoint_id} {salt}".encode(), "sha256"
    ).digest()
    return SECRET_PREFIX + base64.b64encode(digest).decode("ascii")


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for a message."""
    content = f"{message_id}.{timestamp}.".encode() + body
    mac = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def verify(secret: str, message_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """Whether any ``v1`` signature in ``header`` matches (constant-time comparison)."""
    expected = sign(secret, message_id, timestamp, body).encode()
    return any(hmac.compare_digest(expected, part.encode()) for part in header.split())
