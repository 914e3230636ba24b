"""The Starlette example: ``uvicorn examples.starlette_app:app`` (settings: see ``examples/_settings.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp

from asgi_oauth_guard import OAuthGuard
from asgi_oauth_guard.integrations.starlette import get_identity, get_state, requires_login
from asgi_oauth_guard.testing import OAuthTestProvider

from ._pages import home_page, me_json, public_page
from ._settings import Settings, setup
from ._socket import whoami_socket


def create_app(
    settings: Settings | None = None,
    *,
    idp: OAuthTestProvider | None = None,
    clock: Callable[[], float] = time.time,
) -> ASGIApp:
    env = setup(settings, idp=idp, clock=clock)

    async def home(request: Request) -> HTMLResponse:
        state = get_state(request)
        page = home_page(
            "Starlette",
            state.identity,
            state.reason,
            now=env.clock(),
            demo=env.idp is not None,
            root=_root(request),
        )
        return HTMLResponse(page)

    @requires_login
    async def me(request: Request) -> JSONResponse:
        identity = get_identity(request)
        assert identity is not None
        return JSONResponse(me_json(identity, now=env.clock(), show_token=env.idp is not None))

    async def public(request: Request) -> HTMLResponse:
        return HTMLResponse(public_page("Starlette", root=_root(request)))

    @requires_login
    async def expire_token(request: Request) -> RedirectResponse:
        await env.expire_token()
        return RedirectResponse(_root(request) + "/", status_code=303)

    @requires_login
    async def revoke_grant(request: Request) -> RedirectResponse:
        identity = get_identity(request)
        assert identity is not None
        await env.revoke_grant(identity.sub)
        return RedirectResponse(_root(request) + "/", status_code=303)

    routes = [
        Route("/", home),
        Route("/api/me", me),
        Route("/public", public),
        WebSocketRoute("/ws", whoami_socket),
    ]
    if env.idp is not None:
        routes += [
            Route("/demo/expire", expire_token, methods=["POST"]),
            Route("/demo/revoke", revoke_grant, methods=["POST"]),
        ]
    return env.serve(OAuthGuard(Starlette(routes=routes), **env.guard_options()))


def _root(request: Request) -> str:
    """Where the app is mounted (``Mount("/app", ...)``, ``uvicorn --root-path /app``): links start there."""
    return str(request.scope.get("root_path", "")).rstrip("/")


app = create_app()
