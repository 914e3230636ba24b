"""The app's own origins, and whether a request provably comes from one of them.

Used where a browser would otherwise act for another site with the user's cookies: the sign-out route
(logout CSRF) and WebSocket handshakes (cross-site WebSocket hijacking; a browser sends ``Origin`` on
every handshake, and a WebSocket is not covered by the same-origin policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal
from urllib.parse import urlsplit

from starlette.types import Scope

from ._http import BadRequest, ForwardedTrust, request_origin

__all__ = ["OwnOrigins", "normal_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_WEBSOCKET_SCHEMES = {"ws": "http", "wss": "https"}

Verdict = Literal["same", "cross", "unknown"]


def normal_origin(value: str) -> str | None:
    """``scheme://host[:port]``, lowercased and without a default port; ``None`` for anything that is not a
    plain http(s) origin (``null``, a path, credentials, a bad port)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = _WEBSOCKET_SCHEMES.get(parts.scheme.lower(), parts.scheme.lower())
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


class OwnOrigins:
    """The origins this app is served at: the configured public one (from ``public_url``/``redirect_uri``)
    or else the request's own (Host, or forwarded headers from trusted proxies), plus ``allowed``."""

    def __init__(self, *, public_url: str | None, allowed: Sequence[str], trust: ForwardedTrust) -> None:
        parts = urlsplit(public_url) if public_url is not None else None
        self._public = normal_origin(f"{parts.scheme}://{parts.netloc}") if parts is not None else None
        self._allowed = frozenset(o for o in (normal_origin(a) for a in allowed) if o is not None)
        self._trust = trust

    def includes(self, scope: Scope, origin: str) -> bool:
        """Whether ``origin`` (an ``Origin`` header's value) is one of this app's origins."""
        value = normal_origin(origin)
        if value is None:
            return False
        if value in self._allowed or value == self._public:
            return True
        if self._public is not None:
            return False
        try:
            own = normal_origin(request_origin(scope, self._trust))
        except BadRequest:
            return False
        return value == own

    def verdict(self, scope: Scope) -> Verdict:
        """Where the request comes from, by ``Origin``, else ``Sec-Fetch-Site``: one of our origins
        (``same``), another (``cross``), or the request does not say (``unknown``: an old browser, or no
        browser at all)."""
        origin = fetch_site = None
        for name, value in scope["headers"]:
            if name == b"origin":
                if origin is not None:
                    return "cross"  # two Origin headers: no browser sends that
                origin = value.decode("latin-1")
            elif name == b"sec-fetch-site":
                fetch_site = value.decode("latin-1").strip().lower()
        if origin is not None:
            return "same" if self.includes(scope, origin) else "cross"
        if fetch_site is not None:
            # "same-site" is a sibling subdomain, another origin; "none" is the user typing the URL,
            # which is never a POST.
            return "same" if fetch_site == "same-origin" else "cross"
        return "unknown"
