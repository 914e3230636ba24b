"""A guarded app for the startup tests under real uvicorn: ``uvicorn tests.startup.guard_app:app``.

``TEST_ISSUER`` is the provider's issuer, ``TEST_PUBLIC_URL`` the app's own URL. Nothing configures logging:
the tests check what uvicorn's default logging shows.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_oauth_guard import OAuthGuard, current_identity

from ..conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY


async def home(request: Request) -> PlainTextResponse:
    identity = current_identity()
    return PlainTextResponse(f"signed in as {identity.sub}" if identity else "anonymous")


app = OAuthGuard(
    Starlette(routes=[Route("/", home)]),
    issuer=os.environ["TEST_ISSUER"],
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
    secret_key=SECRET_KEY,
    public_url=os.environ["TEST_PUBLIC_URL"],
    http_timeout=2,
)
