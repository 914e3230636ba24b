"""FastAPI: the signed-in user as a dependency, on any app or ``APIRouter``.

    from asgi_oauth_guard.integrations import fastapi as guard

    app = FastAPI()
    guard.install(app)  # anonymous requests get exactly the guard's re-login response
    app.add_middleware(OAuthGuard, issuer=..., ...)  # so `fastapi run` and `fastapi dev` serve the guard

    @app.get("/api/me")
    async def me(user: guard.CurrentUser) -> dict[str, str]:
        return {"sub": user.sub}

    @app.get("/api/reports")
    async def reports(user: Annotated[Identity, Depends(guard.RequireScopes("reports:read"))]) -> ...: ...

``CurrentUser`` answers anonymous requests like the guard does (a 303 to the login path for browsers, a 401
JSON for API calls) and marks the route as secured by the guard's session cookie in the OpenAPI schema.
"""

import json
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, Security, WebSocket, WebSocketException
from fastapi.security import APIKeyCookie
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from asgi_oauth_guard import Identity, Reason

from . import starlette
from .starlette import get_state

__all__ = [
    "AccessToken",
    "CurrentUser",
    "LoginRequired",
    "OptionalUser",
    "RequireRecentSignIn",
    "RequireScopes",
    "access_token",
    "current_user",
    "install",
    "optional_user",
    "session_cookie",
]

session_cookie = APIKeyCookie(
    name="guard_session",
    scheme_name="OAuthGuardSession",
    description="The session cookie that asgi-oauth-guard sets after signing in at its login path.",
    auto_error=False,
)
"""The OpenAPI security scheme of routes that need a user (the guard's default cookie name)."""

_KEPT_HEADERS = ("location", "www-authenticate", "cache-control", "pragma", "retry-after")


class LoginRequired(starlette.LoginRequired):
    """Raised by :data:`CurrentUser` for anonymous requests; carries the guard's re-login response.

    With :func:`install`, that response is sent as is. Without it, FastAPI's default handler still answers
    with the same status and headers, and the guard's JSON under ``detail``.
    """

    def __init__(self, response: ASGIApp, reason: Reason) -> None:
        super().__init__(reason, response)
        self.detail = {"error": "login_required", "reason": reason.value}  # type: ignore[assignment]
        if isinstance(response, Response):
            self.status_code = response.status_code
            self.headers = {k: v for k, v in response.headers.items() if k in _KEPT_HEADERS}
            if isinstance(response, JSONResponse):
                self.detail = json.loads(bytes(response.body))


class _WebSocketLoginRequired(WebSocketException):
    """An anonymous handshake on a websocket route: refused with close code 1008 (and, with
    :func:`install`, with the guard's refusal: a 401 JSON where the server supports denial responses)."""

    def __init__(self, reason: Reason) -> None:
        self.login_reason = reason
        super().__init__(code=1008, reason=reason.value)


async def optional_user(conn: HTTPConnection) -> Identity | None:
    """The signed-in user, or ``None``."""
    return get_state(conn).identity


async def current_user(
    conn: HTTPConnection, _cookie: Annotated[str | None, Security(session_cookie)] = None
) -> Identity:
    """The signed-in user; anonymous requests get the guard's re-login response (:class:`LoginRequired`),
    and anonymous handshakes on websocket routes are refused before they are accepted."""
    state = get_state(conn)
    if state.identity is None:
        reason = state.reason if isinstance(state.reason, Reason) else Reason.login_required
        if isinstance(conn, WebSocket):
            raise _WebSocketLoginRequired(reason)
        assert isinstance(conn, Request)
        raise LoginRequired(await state.guard.relogin_response(conn, reason), reason)
    return state.identity


CurrentUser = Annotated[Identity, Depends(current_user)]
"""The signed-in user (claims, access token, expiry); anonymous requests never reach the route."""

OptionalUser = Annotated[Identity | None, Depends(optional_user)]
"""The signed-in user or ``None``: for pages that show something to everyone."""


async def access_token(user: CurrentUser) -> str:
    """The signed-in user's access token, refreshed by the guard if it was due."""
    return user.access_token


AccessToken = Annotated[str, Depends(access_token)]
"""The signed-in user's access token; anonymous requests never reach the route."""


class RequireScopes:
    """A dependency: the signed-in user, whose access token carries every one of ``scopes``.

    ``Depends(RequireScopes("reports:read"))``, as a parameter or in ``dependencies=[...]``. Anonymous
    requests get the guard's re-login response; a user without the scopes gets 403 ``insufficient_scope``
    (RFC 6750), and a websocket handshake is closed with 1008. The token's scopes are the ones the
    provider granted, or, when its token answer named none, the ones the guard asked for (RFC 6749
    section 5.1).
    """

    def __init__(self, *scopes: str) -> None:
        if not scopes or any(not s or " " in s for s in scopes):
            raise ValueError("RequireScopes needs one or more scope names, e.g. RequireScopes('read:x')")
        self.scopes = frozenset(scopes)

    async def __call__(self, conn: HTTPConnection, user: CurrentUser) -> Identity:
        _, auth = get_state(conn).user_and_auth
        if not self.scopes <= set(auth.scopes):
            needed = " ".join(sorted(self.scopes))
            if isinstance(conn, WebSocket):  # refused before it is accepted (RFC 6455: policy violation)
                raise WebSocketException(code=1008, reason=f"insufficient_scope: {needed}")
            raise HTTPException(
                status_code=403,
                detail={"error": "insufficient_scope", "scope": needed},
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{needed}"'},
            )
        return user


class RequireRecentSignIn:
    """A dependency: the signed-in user, who authenticated at the provider at most ``max_age`` seconds
    ago (and with one of ``acr_values``, when given): step-up for a sensitive route.

    ``Depends(RequireRecentSignIn(max_age=300))``. Otherwise page loads go to a sign-in that asks the
    provider for a fresh (or stronger) authentication and come back; API calls get a 401
    ``insufficient_user_authentication`` (RFC 9470) with the ``login_url``. The guard checks the new ID
    token's ``auth_time`` and ``acr``. The provider's ``login_params`` must allow ``max_age`` (and these
    ``acr_values``).
    """

    def __init__(self, *, max_age: int | None = None, acr_values: tuple[str, ...] = ()) -> None:
        if max_age is None and not acr_values:
            raise ValueError("RequireRecentSignIn needs max_age= (seconds) or acr_values=")
        if max_age is not None and (not isinstance(max_age, int) or isinstance(max_age, bool) or max_age < 0):
            raise ValueError("RequireRecentSignIn(max_age=...) is a whole number of seconds")
        self.max_age = max_age
        self.acr_values = tuple(acr_values)

    async def __call__(self, request: Request, user: CurrentUser) -> Identity:
        guard = get_state(request).guard
        if guard.needs_step_up(user, max_age=self.max_age, acr_values=self.acr_values):
            response = guard.step_up_response(request, user, max_age=self.max_age, acr_values=self.acr_values)
            raise LoginRequired(response, Reason.login_required)
        return user


def install(app: FastAPI) -> None:
    """Answer :class:`LoginRequired` with the guard's own response, and a
    :class:`~asgi_oauth_guard.ReloginRequired` raised in a route (by ``GuardAuth``) with the re-login
    response for its reason; a provider or store outage raised there gets the guard's 503. An anonymous
    handshake on a websocket route gets the guard's refusal."""
    starlette.install(app)
    app.add_exception_handler(_WebSocketLoginRequired, _refuse_websocket)


async def _refuse_websocket(websocket: WebSocket, exc: Exception) -> None:
    assert isinstance(exc, _WebSocketLoginRequired)
    refusal = get_state(websocket).guard.websocket_refusal(websocket.scope, exc.login_reason)
    await refusal(websocket.scope, websocket.receive, websocket.send)
