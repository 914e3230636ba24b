"""The Flask example: ``uvicorn examples.flask_app:app`` (settings: see ``examples/_settings.py``).

Flask runs under the guard through asgiref's WsgiToAsgi (asyncio only); views read the user with
``current_user()``, and call async code (the demo's provider controls) with asgiref's ``async_to_sync``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from flask import Flask, redirect, request
from starlette.routing import Router, WebSocketRoute
from starlette.types import ASGIApp
from werkzeug.wrappers import Response

from asgi_oauth_guard import current_state
from asgi_oauth_guard.integrations.flask import current_user, login_required, wrap
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
    demo = env.idp is not None
    flask_app = Flask(__name__)

    @flask_app.get("/")
    def home() -> str:
        state = current_state()
        assert state is not None
        return home_page(
            "Flask", state.identity, state.reason, now=env.clock(), demo=demo, root=request.script_root
        )

    @flask_app.get("/api/me")
    @login_required
    def me() -> dict[str, Any]:
        user = current_user()
        assert user is not None
        return me_json(user, now=env.clock(), show_token=demo)

    @flask_app.get("/public")
    def public() -> str:
        return public_page("Flask", root=request.script_root)

    if demo:

        @flask_app.post("/demo/expire")
        @login_required
        def expire_token() -> Response:
            async_to_sync(env.expire_token)()
            return redirect(request.script_root + "/", code=303)

        @flask_app.post("/demo/revoke")
        @login_required
        def revoke_grant() -> Response:
            user = current_user()
            assert user is not None
            async_to_sync(env.revoke_grant)(user.sub)
            return redirect(request.script_root + "/", code=303)

    # WSGI has no WebSockets: /ws is a Starlette endpoint next to Flask, behind the same guard.
    websockets = Router([WebSocketRoute("/ws", whoami_socket)])
    return env.serve(wrap(flask_app, websockets=websockets, **env.guard_options()))


app = create_app()
