"""Which proxy an STT socket goes through, read from the proxy variables alone.

websockets' ``get_proxy`` asks urllib, whose ``getproxies_environment`` and
``proxy_bypass_environment`` each walk the whole of ``os.environ`` (decoding
every name and value): with a socket opened per turn that was a tenth of the
event loop's time at 200 speakers. :func:`proxy_for` gives the same answer
from the few variables that can matter, read afresh at every open so a
changed environment still counts.

Same rules as websockets 15's ``get_proxy`` on Linux: ``no_proxy`` first;
then ``wss_proxy``, ``socks_proxy``, ``https_proxy`` for ``wss://`` (``ws_``,
``socks_``, ``https_``, ``http_proxy`` for ``ws://``); a lowercase variable
beats its uppercase twin, and an empty lowercase one turns the proxy off;
``HTTP_PROXY`` is ignored under CGI (``REQUEST_METHOD`` set, CVE-2016-1000110).
``all_proxy`` is not read, as websockets does not read it. Unlike urllib,
mixed-case names (``Https_Proxy``) are not read.
"""

from __future__ import annotations

import os
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed

from websockets.uri import WebSocketURI

__all__ = ["proxy_for"]

_SECURE_SCHEMES = ("wss", "socks", "https")
_PLAIN_SCHEMES = ("ws", "socks", "https", "http")


def _variable(scheme: str) -> str | None:
    """``<scheme>_proxy`` as urllib reads it, or None when unset or turned off."""
    environ = os.environ
    lower = environ.get(f"{scheme}_proxy")
    if lower is not None:
        return lower or None  # lowercase wins, even empty
    if scheme == "http" and "REQUEST_METHOD" in environ:
        return None
    return environ.get(f"{scheme.upper()}_PROXY") or None


def proxy_for(uri: WebSocketURI) -> str | None:
    """The proxy URL to connect through, or None to connect directly."""
    no_proxy = _variable("no")
    if no_proxy is not None and proxy_bypass_environment(
        f"{uri.host}:{uri.port}", {"no": no_proxy}
    ):
        return None
    for scheme in _SECURE_SCHEMES if uri.secure else _PLAIN_SCHEMES:
        proxy = _variable(scheme)
        if proxy is not None:
            if scheme == "socks" and proxy.startswith("http://"):
                proxy = "socks5h://" + proxy[7:]
            return proxy
    return None
