"""One app worker: the guard on a shared store around a tiny Starlette app, as a deployment runs it.

Configured from the environment: ``GUARD_ISSUER``, ``GUARD_CLIENT_ID``, ``GUARD_CLIENT_SECRET``,
``GUARD_SECRET_KEY``, ``GUARD_STORE`` (a store URL: Redis, a Redis Cluster, Sentinel, PostgreSQL),
``GUARD_KEY_PREFIX`` (for PostgreSQL: the table), ``GUARD_PUBLIC_URL`` (the same for every worker, so every
worker sends the same redirect_uri), ``GUARD_HTTP_TIMEOUT``, ``GUARD_REFRESH_LEEWAY``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route

from asgi_oauth_guard import OAuthGuard, PostgresStore, Store, current_identity, store_from_url

store: Store
if os.environ["GUARD_STORE"].startswith("postgresql:"):
    store = PostgresStore.from_url(os.environ["GUARD_STORE"], table=os.environ["GUARD_KEY_PREFIX"])
else:
    store = store_from_url(os.environ["GUARD_STORE"], key_prefix=os.environ["GUARD_KEY_PREFIX"])


async def me(request: Request) -> JSONResponse:
    identity = current_identity()
    assert identity is not None
    return JSONResponse(
        {
            "sub": identity.sub,
            "access_token": identity.access_token,
            "expires_at": identity.expires_at,
            "refreshes": identity.refreshes,
            "worker": os.getpid(),
        }
    )


async def home(request: Request) -> HTMLResponse:
    identity = current_identity()
    assert identity is not None
    return HTMLResponse(f"<p>Signed in as {identity.sub}</p>")


async def ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ready")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    await store.aclose()  # type: ignore[attr-defined]


app = OAuthGuard(
    Starlette(
        routes=[Route("/", home), Route("/api/me", me), Route("/ready", ready)],
        lifespan=lifespan,
    ),
    issuer=os.environ["GUARD_ISSUER"],
    client_id=os.environ["GUARD_CLIENT_ID"],
    client_secret=os.environ["GUARD_CLIENT_SECRET"],
    secret_key=os.environ["GUARD_SECRET_KEY"],
    store=store,
    public_url=os.environ["GUARD_PUBLIC_URL"],
    # The tests talk plain http to the workers behind an https public_url and read the cookies by
    # name; the default (__Host-guard_session here) is tested in tests/test_callback.py.
    cookie_name="guard_session",
    require_login=True,
    public_paths=["/ready"],
    http_timeout=float(os.environ["GUARD_HTTP_TIMEOUT"]),
    refresh_leeway=float(os.environ["GUARD_REFRESH_LEEWAY"]),
)
