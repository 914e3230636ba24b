"""The Starlette integration: reading the user from a request, and ``requires_login``."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import GuardAuth
from asgi_oauth_guard.integrations.starlette import get_identity, get_state, get_token, requires_login
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import ISSUER, BrowserFactory, GuardFactory, login

pytestmark = pytest.mark.anyio

API = {"accept": "application/json"}


async def whoami(request: Request) -> JSONResponse:
    identity = get_identity(request)
    return JSONResponse(
        {
            "sub": identity.sub if identity else None,
            "token": get_token(request),
            "reason": get_state(request).reason,
        }
    )


@requires_login
async def private(request: Request) -> JSONResponse:
    identity = get_identity(request)
    assert identity is not None
    return JSONResponse({"sub": identity.sub, "token": get_token(request)})


@requires_login
async def calls_an_api(request: Request) -> JSONResponse:
    """Calls the provider's userinfo with the user's token, as an app calls its APIs."""
    async with httpx.AsyncClient(transport=request.app.state.provider.transport()) as http:
        response = await http.get(f"{ISSUER}/userinfo", auth=GuardAuth())
    return JSONResponse(response.json())


def make_app(provider: OAuthTestProvider) -> Starlette:
    app = Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/private", private),
            Route("/api/private", private, methods=["GET", "POST"]),
            Route("/api/userinfo", calls_an_api),
        ]
    )
    app.state.provider = provider
    return app


@pytest.fixture
def browser(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> httpx.AsyncClient:
    return browser_factory(guard_factory(app=make_app(provider), require_login=False))


async def test_anonymous_requests_see_no_identity(browser: httpx.AsyncClient) -> None:
    assert (await browser.get("/whoami")).json() == {"sub": None, "token": None, "reason": None}


async def test_signed_in_requests_see_the_identity_and_token(
    browser: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    await login(browser, provider)
    me = (await browser.get("/whoami")).json()
    assert me["sub"] == "alice" and provider.grant_alive(me["token"])
    assert (await browser.get("/private")).json() == {"sub": "alice", "token": me["token"]}


async def test_requires_login_redirects_a_browser_with_next_and_reason(browser: httpx.AsyncClient) -> None:
    response = await browser.get("/private?tab=2")
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/auth/login"
    assert parse_qs(location.query) == {"next": ["/private?tab=2"], "reason": ["login_required"]}


async def test_requires_login_answers_api_calls_with_the_guards_json(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    mine = browser_factory(guard_factory(app=make_app(provider), require_login=False))
    guards = browser_factory(guard_factory(app=make_app(provider), require_login=["/api/"]))
    for method in ("GET", "POST"):
        ours = await mine.request(method, "/api/private", headers=API)
        theirs = await guards.request(method, "/api/private", headers=API)  # answered by the guard itself
        assert ours.status_code == theirs.status_code == 401
        assert (
            ours.json()
            == theirs.json()
            == {
                "error": "login_required",
                "reason": "login_required",
                "login_url": "/auth/login?next=%2Fapi%2Fprivate&reason=login_required",
            }
        )
        assert ours.headers["www-authenticate"] == theirs.headers["www-authenticate"]
        assert ours.headers["cache-control"] == "no-store"


async def test_requires_login_passes_the_guards_reason_after_a_refused_refresh(
    browser: httpx.AsyncClient, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    await login(browser, provider)
    provider.revoke_grants("alice")
    clock.advance(3600)
    first = await browser.get("/whoami", headers=API)  # the guard's refresh is refused: it answers itself
    assert first.status_code == 401 and first.json()["reason"] == "refresh_rejected"
    assert (await browser.get("/whoami")).json()["reason"] == "refresh_rejected"
    later = await browser.get("/private", headers=API)
    assert later.status_code == 401 and later.json()["reason"] == "refresh_rejected"


async def test_requires_login_answers_a_relogin_raised_by_guard_auth(
    browser: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    await login(browser, provider)
    assert (await browser.get("/api/userinfo")).json()["sub"] == "alice"
    provider.revoke_grants("alice")  # the API refuses the token, and the provider refuses the refresh
    response = await browser.get("/api/userinfo")
    assert response.status_code == 401 and response.json()["reason"] == "refresh_rejected"
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1


async def test_requires_login_answers_an_outage_raised_by_guard_auth_with_a_503(
    browser: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    await login(browser, provider)
    provider.expire_access_tokens()  # the API refuses the token ...
    provider.fail_next(1, status=503)  # ... and the provider cannot refresh it right now
    response = await browser.get("/api/userinfo")
    assert response.status_code == 503 and response.headers["retry-after"]
    assert (await browser.get("/api/userinfo")).json()["sub"] == "alice"  # the session was kept


async def test_without_a_guard_the_mistake_is_named() -> None:
    app = make_app(OAuthTestProvider())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app.test") as client:
        with pytest.raises(RuntimeError, match="no OAuthGuard in front of this app"):
            await client.get("/whoami")
