"""Starlette: read the signed-in user from a request, and guard endpoints.

from asgi_oauth_guard.integrations.starlette import get_identity, requires_login

@requires_login
async def profile(request: Request) -> Response:
    user = get_identity(request)  # never None here
    ...

app = OAuthGuard(Starlette(routes=[Route("/profile", profile)]), issuer=..., ...)
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import HTTPConnection, Request

from asgi_oauth_guard import (
    SCOPE_KEY,
    GuardState,
    Identity,
    ProviderUnavailable,
    Reason,
    ReloginRequired,
    StoreUnavailable,
)

__all__ = ["get_identity", "get_state", "get_token", "requires_login"]

Endpoint = TypeVar("Endpoint", bound=Callable[[Request], Awaitable[Any]])


def get_state(conn: HTTPConnection) -> GuardState:
    """The guard's state for this request; ``RuntimeError`` when no :class:`OAuthGuard` wraps the app."""
    state = conn.scope.get(SCOPE_KEY)
    if not isinstance(state, GuardState):
        raise RuntimeError(
            "no OAuthGuard in front of this app: wrap it, e.g. app = OAuthGuard(app, issuer=..., ...)"
        )
    return state


def get_identity(conn: HTTPConnection) -> Identity | None:
    """The signed-in user of this request, or ``None``."""
    return get_state(conn).identity


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
    """

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Any:
        state = get_state(request)
        if state.identity is None:
            reason = state.reason if isinstance(state.reason, Reason) else Reason.login_required
            return await state.guard.relogin_response(request, reason)
        try:
            return await endpoint(request)
        except (ReloginRequired, ProviderUnavailable, StoreUnavailable) as exc:
            return await state.guard.response_for(request, exc)

    return guarded  # type: ignore[return-value]
