"""Which webhook URLs may be called: http(s), and public addresses only unless allowed.

A webhook URL is chosen by an API client, and the service calls it from inside
the network it runs in; a URL resolving to loopback, a private range, link-local
(cloud metadata at 169.254.169.254) or another non-global address would let a
client reach internal services. Checked when an endpoint is added and again
before every delivery (DNS may change); ``allow_private`` (tests, trusted
setups) lifts the address rule.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["TargetRefused", "check_target"]


class TargetRefused(ValueError):
    """The URL may not receive webhooks; the message says why."""


async def check_target(url: str, *, allow_private: bool) -> None:
    """Check a webhook URL.

    Raises:
        TargetRefused: not http(s), no host, unresolvable, or a non-public address.
    """
    if len(url) > 2000:
        raise TargetRefused("the webhook URL is longer than 2000 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"a webhook URL is http:// or https:// with a host, got {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"the webhook URL has a bad port: {url!r}") from exc
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise TargetRefused(f"cannot resolve {parts.hostname!r}: {exc.strerror or exc}") from exc
    if allow_private:
        return
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise TargetRefused(
                f"{parts.hostname!r} resolves to {address}, a private or local address; "
                "webhooks go to public addresses unless allowed (--allow-private-targets)"
            )
