"""Reading requests the guard owns, strictly: bounded, UTF-8, no repeated parameters. And computing URLs."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl

from starlette.types import Scope

from ._paths import Prefixes, route_path
from ._protocol import MAX_PARAM_LENGTH

MAX_QUERY_LENGTH = 8192
MAX_FIELDS = 20


class BadRequest(Exception):
    """A request the guard refuses with a 400; the message is safe to show (it never echoes values)."""


def query_params(scope: Scope) -> dict[str, str]:
    raw: bytes = scope.get("query_string", b"")
    if len(raw) > MAX_QUERY_LENGTH:
        raise BadRequest("The query string is too long.")
    try:
        pairs = parse_qsl(
            raw.decode("ascii"), keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict"
        )
    except UnicodeDecodeError:
        raise BadRequest("The query string is not valid UTF-8 or ASCII.") from None
    except ValueError:
        raise BadRequest("The query string has too many parameters.") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise BadRequest(
                f"The parameter {name!r} is repeated." if len(name) <= 32 else "A parameter is repeated."
            )
        if len(value) > MAX_PARAM_LENGTH:
            raise BadRequest(
                f"The parameter {name!r} is too long." if len(name) <= 32 else "A parameter is too long."
            )
        params[name] = value
    return params


def headers_map(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


# What ``str.strip()`` takes off a latin-1 text: a value read as bytes is trimmed as its text would be.
_BLANKS = bytes(c for c in range(256) if chr(c).isspace())


def cookie(scope: Scope, name: str) -> str | None:
    """One cookie's value from the Cookie headers, without parsing the others."""
    value = find_cookie(scope["headers"], (name + "=").encode("latin-1"))
    return None if value is None else value.decode("latin-1")


def find_cookie(headers: Iterable[tuple[bytes, bytes]], prefix: bytes) -> bytes | None:
    """The value of the first cookie named by ``prefix`` (``b"name="``) in the Cookie headers (HTTP/2 may
    split them), or ``None``: bytes, as the server passed them, with blanks and quotes around it taken
    off. On the hot path the value is the key the guard remembers a session by, so it is never decoded,
    and the app's other cookies are never looked at."""
    for key, value in headers:
        if key != b"cookie":
            continue
        at = value.find(prefix)
        while at >= 0:
            if at == 0 or value[at - 1] in b"; ":
                end = value.find(b";", at)
                return value[at + len(prefix) : end if end >= 0 else len(value)].strip(_BLANKS).strip(b'"')
            at = value.find(prefix, at + 1)
    return None


class ForwardedTrust:
    """Whether to believe ``X-Forwarded-Proto``/``-Host`` from a peer: only from configured proxies."""

    def __init__(self, proxies: Sequence[str]) -> None:
        self._any = "*" in proxies
        self._networks = [ipaddress.ip_network(p, strict=False) for p in proxies if p != "*"]

    def trusts(self, scope: Scope) -> bool:
        if self._any:
            return True
        client = scope.get("client")
        if not client or not self._networks:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self._networks)


def request_origin(scope: Scope, trust: ForwardedTrust) -> str:
    """``scheme://host[:port]`` of the request as the browser saw it.

    The scheme is the server's (uvicorn sets it from ``X-Forwarded-Proto`` for the peers in its
    ``--forwarded-allow-ips``); from a peer in ``trusted_proxies``, ``X-Forwarded-Proto`` and
    ``X-Forwarded-Host`` override the scheme and ``Host``. Of a header sent several times or with several
    comma-separated values, the last one counts: the one the nearest proxy added, never the client's."""
    host = ""
    hosts = 0
    proto = fhost = b""
    for key, value in scope["headers"]:
        if key == b"host":
            host = value.decode("latin-1")
            hosts += 1
        elif key == b"x-forwarded-proto":
            proto = value
        elif key == b"x-forwarded-host":
            fhost = value
    if hosts > 1:
        raise BadRequest("The request has more than one Host header.")
    scheme = scope.get("scheme", "http")
    if (proto or fhost) and trust.trusts(scope):
        forwarded = _nearest(proto).lower()
        if forwarded in ("http", "https"):
            scheme = forwarded
        if _nearest(fhost):
            host = _nearest(fhost)
    if not host:
        server = scope.get("server")
        if server:
            host = f"{server[0]}:{server[1]}" if server[1] not in (80, 443) else str(server[0])
        else:
            raise BadRequest("The request has no Host header.")
    if not _valid_host(host):
        raise BadRequest("The Host header is not valid.")
    return f"{scheme}://{host}"


def _nearest(value: bytes) -> str:
    """The last of a header's comma-separated values: the one the nearest proxy added."""
    return value.decode("latin-1").rsplit(",", 1)[-1].strip()


def _valid_host(host: str) -> bool:
    # Underscores are not valid in DNS names, but they are in Docker and Compose service names.
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]")
    return 0 < len(host) <= 255 and all(c in allowed for c in host)


def root_path(scope: Scope) -> str:
    return str(scope.get("root_path", "")).rstrip("/")


def full_path(scope: Scope) -> str:
    """The request's path and query as the browser sent it (the root path once), as a ``next`` target."""
    path = root_path(scope) + route_path(scope)
    qs: bytes = scope.get("query_string", b"")
    return path + ("?" + qs.decode("latin-1") if qs else "")


def is_browser_navigation(scope: Scope, api_prefixes: Prefixes, headers: Mapping[str, str]) -> bool:
    """A person's browser loading a page (answer with a redirect or a page), not an API call (answer JSON)."""
    if scope["method"] not in ("GET", "HEAD"):
        return False
    if api_prefixes.covers_any(route_path(scope)):
        return False
    if headers.get("x-requested-with", "").lower() == "xmlhttprequest":
        return False
    mode = headers.get("sec-fetch-mode")
    if mode is not None:
        return mode == "navigate"
    accept = headers.get("accept", "")
    if "text/html" in accept:
        return True
    return "json" not in accept
