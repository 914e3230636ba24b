"""Response headers the guard adds: on its own answers, and on the app's answers to signed-in requests.

Two touch points, each one named function (STYLE 1): :func:`own` for every response the guard itself
answers (its routes, the re-login response, the 503 of an outage), and :func:`private_send`, the ``send``
wrapper for the app's responses to signed-in requests. Header tuples are built once, here.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["OWN_HEADERS", "own", "private_send"]

# The guard's pages hold sign-in links with ``next`` and ``reason``: no Referer to other sites, no
# content-type sniffing, never framed (clickjacking a sign-in or sign-out button).
OWN_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)
_OWN_NAMES = frozenset(name for name, _ in OWN_HEADERS)
_CACHE_CONTROL = (b"cache-control", b"private")
_VARY_COOKIE = (b"vary", b"Cookie")
# Lists, added to the app's list of headers in one step; never changed (each answer gets a new list).
_PRIVATE = [_CACHE_CONTROL, _VARY_COOKIE]
_CACHE_ONLY = [_CACHE_CONTROL]
_VARY_ONLY = [_VARY_COOKIE]


def own(response: ASGIApp) -> ASGIApp:
    """``response`` with the guard's security headers (a header it already has is kept as it is).

    A Starlette ``Response`` gets them in place, so integrations can still read its status and headers;
    any other ASGI app (a custom ``relogin=`` callable's answer) is wrapped."""
    if isinstance(response, Response):
        present = {name for name, _ in response.raw_headers}
        response.raw_headers.extend(h for h in OWN_HEADERS if h[0] not in present)
        return response

    async def with_own_headers(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_own(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {bytes(name).lower() for name, _ in headers}
                if not present >= _OWN_NAMES:
                    headers.extend(h for h in OWN_HEADERS if h[0] not in present)
                    message = {**message, "headers": headers}
            await send(message)

        await response(scope, receive, send_own)

    return with_own_headers


def private_send(send: Send) -> Send:
    """``send`` for the app's answer to a signed-in request: ``Cache-Control: private`` unless the app set a
    ``Cache-Control``, and ``Cookie`` added to ``Vary`` unless it names ``Cookie`` or ``*`` already; so no
    shared cache hands one user's page to another.

    A coroutine function, though a plain one returning ``send``'s awaitable would save a coroutine per
    message: adapters check (asgiref's ``async_to_sync`` warns on a ``send`` that is not one)."""

    async def send_private(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers", ())
            if type(headers) is not list:  # any iterable: read once, and what is sent is what was read
                headers = list(headers)
                message = {**message, "headers": headers}
            cache_control = False
            vary: bytes | None = None
            for name, value in headers:
                # Only two names matter: a name of another length is not lowered (an allocation each).
                size = len(name)
                if size == 13:
                    if name.lower() == b"cache-control":  # bytes, or a bytearray: both compare to bytes
                        cache_control = True
                elif size == 4 and name.lower() == b"vary":
                    vary = bytes(value) if vary is None else vary + b"," + bytes(value)
            extra: list[tuple[bytes, bytes]] | None
            if vary is None:
                extra = _PRIVATE if not cache_control else _VARY_ONLY
            elif {v.strip().lower() for v in vary.split(b",")} & {b"cookie", b"*"}:
                extra = None if cache_control else _CACHE_ONLY
            else:
                extra = _VARY_ONLY if cache_control else _PRIVATE
            if extra is not None:
                # A new message (the app's may be sent again), copied as a dict where it is one: cheaper.
                if type(message) is dict:
                    message = message.copy()
                    message["headers"] = headers + extra
                else:
                    message = {**message, "headers": headers + extra}
        await send(message)

    return send_private
