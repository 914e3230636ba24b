"""Starlette: read the signed-in user from a request, and guard endpoints.

from starlette.authentication import requires
from asgi_oauth_guard.integrations.starlette import install, require_identity

async def profile(request: Request) -> Response:
    user = require_identity(request)  # an Identity; anonymous users get the guard's re-login response
    ...

@requires("authenticated")  # Starlette's own: request.user and request.auth come from the guard
async def account(request: Request) -> Response: ...

starlette_app = Starlette(routes=[Route("/profile", profile), Route("/account", account)])
install(starlette_app)
app = OAuthGuard(starlette_app, issuer=..., ...)
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp
from starlette.websockets import WebSocket

from asgi_oauth_guard import (
    SCOPE_KEY,
    GuardState,
    Identity,
    ProviderUnavailable,
    Reason,
    ReloginRequired,
    StoreUnavailable,
)

from ._asgi import GuardError, reason_of

__all__ = [
    "LoginRequired",
    "get_identity",
    "get_state",
    "get_token",
    "install",
    "require_identity",
    "require_recent_sign_in",
    "requires_login",
]

Endpoint = TypeVar("Endpoint", bound=Callable[[Any], Awaitable[Any]])


class LoginRequired(HTTPException):
    """Raised by :func:`require_identity` for an anonymous request: answered with the guard's re-login
    response by :func:`install`'s handler and by :func:`requires_login`. Without either, Starlette's own
    handler answers a plain 401."""

    def __init__(self, reason: Reason, response: ASGIApp | None = None) -> None:
        self.reason = reason
        self.response = response
        headers = {"Cache-Control": "no-store", "WWW-Authenticate": 'Bearer error="login_required"'}
        super().__init__(status_code=401, detail="login_required", headers=headers)


def get_state(conn: HTTPConnection) -> GuardState:
    """The guard's state for this request; ``RuntimeError`` when no :class:`OAuthGuard` wraps the app."""
    state = conn.scope.get(SCOPE_KEY)
    if not isinstance(state, GuardState):
        raise RuntimeError(
            "no OAuthGuard in front of this app: wrap it, app = OAuthGuard(app, issuer=..., ...), or add it, "
            "app.add_middleware(OAuthGuard, issuer=..., ...), and serve that app (uvicorn module:app)"
        )
    return state


def get_identity(conn: HTTPConnection) -> Identity | None:
    """The signed-in user of this request, or ``None``."""
    return get_state(conn).identity


def require_identity(conn: HTTPConnection) -> Identity:
    """The signed-in user of this request; for an anonymous one, raise :class:`LoginRequired`, which
    :func:`install` answers with the guard's re-login response (a redirect, or a 401 JSON for API calls)."""
    state = get_state(conn)
    if state.identity is None:
        raise LoginRequired(reason_of(state))
    return state.identity


def require_recent_sign_in(
    request: Request, *, max_age: int | None = None, acr_values: Sequence[str] = ()
) -> Identity:
    """The signed-in user, who authenticated at the provider at most ``max_age`` seconds ago (and with
    one of ``acr_values``, when given): step-up for a sensitive page. Otherwise raise
    :class:`LoginRequired` carrying :meth:`~asgi_oauth_guard.OAuthGuard.step_up_response`, which
    :func:`install` answers: a sign-in asking the provider for it, then back here (the guard checks the
    new ID token's ``auth_time`` and ``acr``). The provider's ``login_params`` must allow ``max_age``
    (and these ``acr_values``)."""
    identity = require_identity(request)
    guard = get_state(request).guard
    if guard.needs_step_up(identity, max_age=max_age, acr_values=acr_values):
        response = guard.step_up_response(request, identity, max_age=max_age, acr_values=acr_values)
        raise LoginRequired(Reason.login_required, response)
    return identity


def get_token(conn: HTTPConnection) -> str | None:
    """The signed-in user's access token (fresh: the guard refreshed it if it was due), or ``None``."""
    identity = get_state(conn).identity
    return identity.access_token if identity is not None else None


def requires_login(endpoint: Endpoint) -> Endpoint:
    """Answer the guard's re-login response instead of calling ``endpoint`` for anonymous users.

    Browsers get a redirect to the login path, API calls a 401 JSON (as configured on the guard). The reason
    is the guard's (for example ``refresh_rejected`` after the provider revoked the grant), or
    ``login_required``. A :class:`~asgi_oauth_guard.ReloginRequired` raised inside the endpoint (from
    :class:`~asgi_oauth_guard.GuardAuth`) gets the same answer with its reason; a provider or store
    outage raised there gets the guard's 503, not a 500.

    On a WebSocket endpoint (``WebSocketRoute``), an anonymous handshake is refused before it is accepted
    (:meth:`~asgi_oauth_guard.OAuthGuard.websocket_refusal`: a 401, or close code 1008).
    """

    @functools.wraps(endpoint)
    async def guarded(conn: Any) -> Any:
        state = get_state(conn)
        if isinstance(conn, WebSocket):
            if state.identity is None:
                await _refuse(conn, reason_of(state))
                return None
            return await endpoint(conn)
        if state.identity is None:
            return await state.guard.relogin_response(conn, reason_of(state))
        try:
            return await endpoint(conn)
        except (LoginRequired, ReloginRequired, ProviderUnavailable, StoreUnavailable) as exc:
            return await _answer(conn, exc)

    return guarded  # type: ignore[return-value]


def install(app: Starlette) -> None:
    """Answer :class:`LoginRequired` with the guard's re-login response, a
    :class:`~asgi_oauth_guard.ReloginRequired` raised in an endpoint (by ``GuardAuth``) with the re-login
    response for its reason, and a provider or store outage raised there with the guard's 503. In a
    WebSocket endpoint that has not accepted yet, these refuse the handshake instead."""
    for error in (LoginRequired, ReloginRequired, ProviderUnavailable, StoreUnavailable):
        app.add_exception_handler(error, _handler)  # type: ignore[arg-type]  # it takes both kinds


async def _answer(
    request: Request, exc: LoginRequired | ReloginRequired | ProviderUnavailable | StoreUnavailable
) -> ASGIApp:
    guard = get_state(request).guard
    if isinstance(exc, LoginRequired):
        return exc.response or await guard.relogin_response(request, exc.reason)
    return await guard.response_for(request, exc)


# Starlette sends whatever ASGI app a handler returns; the guard's answer may be a custom one.


async def _handler(conn: HTTPConnection, exc: Exception) -> Response | None:
    assert isinstance(exc, (LoginRequired, ReloginRequired, ProviderUnavailable, StoreUnavailable))
    if isinstance(conn, WebSocket):
        await _refuse(conn, exc.reason if isinstance(exc, LoginRequired) else exc)
        return None
    assert isinstance(conn, Request)
    return await _answer(conn, exc)  # type: ignore[return-value]


async def _refuse(websocket: WebSocket, error: GuardError) -> None:
    """Refuse a handshake the endpoint has not accepted yet (after that, close it yourself)."""
    refusal = get_state(websocket).guard.websocket_refusal(websocket.scope, error)
    await refusal(websocket.scope, websocket.receive, websocket.send)
