"""The FastAPI example: ``uvicorn examples.fastapi_app:app`` (settings: see ``examples/_settings.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.types import ASGIApp

from asgi_oauth_guard import OAuthGuard
from asgi_oauth_guard.integrations import fastapi as guard
from asgi_oauth_guard.integrations.starlette import get_state
from asgi_oauth_guard.testing import OAuthTestProvider

from ._pages import home_page, me_json, public_page
from ._settings import Settings, setup


def create_app(
    settings: Settings | None = None,
    *,
    idp: OAuthTestProvider | None = None,
    clock: Callable[[], float] = time.time,
) -> ASGIApp:
    env = setup(settings, idp=idp, clock=clock)
    demo = env.idp is not None
    api = FastAPI(title="asgi-oauth-guard FastAPI example")
    guard.install(api)

    @api.get("/", response_class=HTMLResponse)
    async def home(request: Request, user: guard.OptionalUser) -> str:
        return home_page(
            "FastAPI", user, get_state(request).reason, now=env.clock(), demo=demo, root=_root(request)
        )

    @api.get("/public", response_class=HTMLResponse)
    async def public(request: Request) -> str:
        return public_page("FastAPI", root=_root(request))

    router = APIRouter(prefix="/api", tags=["api"])

    @router.get("/me")
    async def me(user: guard.CurrentUser) -> dict[str, Any]:
        return me_json(user, now=env.clock(), show_token=demo)

    api.include_router(router)

    @api.websocket("/ws")
    async def whoami_socket(websocket: WebSocket, user: guard.CurrentUser) -> None:
        """The signed-in user's sub first, then an echo; anonymous handshakes are refused (close 1008)."""
        await websocket.accept()
        await websocket.send_text(user.sub)
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            pass

    if demo:

        @api.post("/demo/expire", include_in_schema=False)
        async def expire_token(request: Request, user: guard.CurrentUser) -> RedirectResponse:
            await env.expire_token()
            return RedirectResponse(_root(request) + "/", status_code=303)

        @api.post("/demo/revoke", include_in_schema=False)
        async def revoke_grant(request: Request, user: guard.CurrentUser) -> RedirectResponse:
            await env.revoke_grant(user.sub)
            return RedirectResponse(_root(request) + "/", status_code=303)

    return env.serve(OAuthGuard(api, **env.guard_options()))


def _root(request: Request) -> str:
    """Where the app is mounted (``Mount("/app", ...)``, ``uvicorn --root-path /app``): links start there."""
    return str(request.scope.get("root_path", "")).rstrip("/")


app = create_app()
