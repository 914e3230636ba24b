"""Step-up against panva's oidc-provider 9.13.3: a route demanding a recent sign-in gets one.

oidc-provider keeps the user's session (single sign-on): a second sign-in reuses it, and its ID token
carries the first sign-in's ``auth_time``. A login asking ``max_age`` shorter than the session's age makes
it authenticate the user again (OIDC Core 3.1.2.1): the new ID token's ``auth_time`` is new, and the
guard's check of it passes. The guard runs in this process; its clock moves with the provider's
(``/admin/advance-clock``), so the session ages without sleeping.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import LoginParams, MemoryStore, OAuthGuard, current_identity
from asgi_oauth_guard.integrations.starlette import install, require_recent_sign_in

from .conftest import InteropProvider, running_oidc_provider, unique_user, walk_to_callback

pytestmark = pytest.mark.anyio

APP_URL = "http://127.0.0.1:8765"  # served in-process; oidc-provider ignores loopback ports (RFC 8252 7.3)
CALLBACK = f"{APP_URL}/auth/callback"


@pytest.fixture(scope="module")
def node() -> Iterator[InteropProvider]:
    with running_oidc_provider(access_token_ttl=3600) as provider:
        yield provider


async def me(request: Request) -> JSONResponse:
    identity = current_identity()
    return JSONResponse(
        {"sub": identity.sub if identity else None, "auth_time": identity and identity.auth_time}
    )


async def admin(request: Request) -> JSONResponse:
    identity = require_recent_sign_in(request, max_age=60)
    return JSONResponse({"sub": identity.sub, "auth_time": identity.auth_time})


class Clock:
    def __init__(self, provider: InteropProvider) -> None:
        self.provider = provider
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    async def advance(self, seconds: float) -> None:
        await self.provider.aadvance_clock(seconds)
        self.offset += seconds


@pytest.fixture
async def served(node: InteropProvider) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, Clock]]:
    clock = Clock(node)
    app = Starlette(routes=[Route("/me", me), Route("/admin", admin)])
    install(app)
    async with httpx.AsyncClient(timeout=10) as http, httpx.AsyncClient(timeout=20) as idp:
        guard = OAuthGuard(
            app,
            issuer=node.issuer,
            client_id=node.client_id,
            client_secret=node.client_secret,
            secret_key=secrets.token_urlsafe(32),
            redirect_uri=CALLBACK,
            store=MemoryStore(),
            http_client=http,
            clock=clock,
            login_params=LoginParams(max_age=True),
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(guard), base_url=APP_URL, headers={"accept": "text/html"}
        ) as browser:
            yield browser, idp, clock


async def through_provider(
    browser: httpx.AsyncClient, idp: httpx.AsyncClient, login: str, user: str
) -> httpx.Response:
    """From a login link through oidc-provider (its headless interaction, its session cookie in ``idp``)
    to the callback's answer."""
    started = await browser.get(login)
    assert started.status_code == 303, started.text[:300]
    target = await walk_to_callback(idp, started.headers["location"], user=user, callback=CALLBACK)
    return await browser.get(target.removeprefix(APP_URL))


async def test_a_route_demanding_a_recent_sign_in_gets_a_new_authentication(
    served: tuple[httpx.AsyncClient, httpx.AsyncClient, Clock],
) -> None:
    browser, idp, clock = served
    user = unique_user("stepup")
    link = "/auth/login?next=%2Fme&max_age=3600"  # asks for auth_time, which a session of minutes meets
    assert (await through_provider(browser, idp, link, user)).status_code == 303
    first = (await browser.get("/me")).json()
    assert first["sub"] == user and first["auth_time"] is not None

    await clock.advance(300)
    # Single sign-on: a second sign-in reuses the provider's session and its auth_time.
    assert (await through_provider(browser, idp, link, user)).status_code == 303
    assert (await browser.get("/me")).json()["auth_time"] == first["auth_time"]

    stale = await browser.get("/admin")  # 300 s old: more than the 60 s (and a minute's skew) asked
    assert stale.status_code == 303 and stale.headers["location"] == "/auth/login?next=%2Fadmin&max_age=60"
    done = await through_provider(browser, idp, stale.headers["location"], user)
    assert done.status_code == 303 and done.headers["location"] == "/admin"
    fresh = await browser.get("/admin")
    assert fresh.status_code == 200
    assert fresh.json()["auth_time"] >= first["auth_time"] + 300  # oidc-provider authenticated again
