"""The FastAPI integration: ``CurrentUser``, ``OptionalUser``, ``AccessToken`` on an ``APIRouter``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from asgi_oauth_guard import GuardAuth
from asgi_oauth_guard.integrations import fastapi as guard
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import ISSUER, BrowserFactory, GuardFactory, login

pytestmark = pytest.mark.anyio

API = {"accept": "application/json"}


def guards_json(path: str) -> dict[str, str]:
    next_path = path.replace("/", "%2F")
    return {
        "error": "login_required",
        "reason": "login_required",
        "login_url": f"/auth/login?next={next_path}&reason=login_required",
    }


def make_app(provider: OAuthTestProvider, *, install: bool = True) -> FastAPI:
    app = FastAPI()
    if install:
        guard.install(app)
    router = APIRouter(prefix="/v1")

    @router.get("/me")
    async def me(user: guard.CurrentUser) -> dict[str, Any]:
        return {"sub": user.sub, "email": user.claims["email"], "expires_at": user.expires_at}

    @router.get("/token")
    async def token(access_token: guard.AccessToken) -> dict[str, str]:
        return {"access_token": access_token}

    @router.get("/hello")
    async def hello(user: guard.OptionalUser) -> dict[str, str]:
        return {"hello": user.sub if user is not None else "stranger"}

    @router.get("/userinfo")
    async def userinfo(user: guard.CurrentUser) -> Any:
        async with httpx.AsyncClient(transport=provider.transport()) as http:
            return (await http.get(f"{ISSUER}/userinfo", auth=GuardAuth())).json()

    app.include_router(router)
    return app


@pytest.fixture
def browser(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> httpx.AsyncClient:
    return browser_factory(guard_factory(app=make_app(provider), require_login=False))


async def test_signed_in_user_token_and_optional_user(
    browser: httpx.AsyncClient, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    assert (await browser.get("/v1/hello")).json() == {"hello": "stranger"}
    await login(browser, provider)
    assert (await browser.get("/v1/hello")).json() == {"hello": "alice"}
    me = (await browser.get("/v1/me")).json()
    assert me == {"sub": "alice", "email": "alice@example.test", "expires_at": clock() + 3600}
    token = (await browser.get("/v1/token")).json()["access_token"]
    assert provider.grant_alive(token)


async def test_anonymous_api_call_gets_exactly_the_guards_401(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    ours = browser_factory(guard_factory(app=make_app(provider), require_login=False))
    theirs = browser_factory(guard_factory(app=make_app(provider), require_login=["/v1/"]))
    for path in ("/v1/me", "/v1/token"):
        mine = await ours.get(path, headers=API)
        guards = await theirs.get(path, headers=API)  # answered by the guard before FastAPI
        assert mine.status_code == guards.status_code == 401
        assert mine.json() == guards.json() == guards_json(path)
        for header in ("www-authenticate", "cache-control"):
            assert mine.headers[header] == guards.headers[header]


async def test_anonymous_browser_is_redirected_to_the_login(browser: httpx.AsyncClient) -> None:
    response = await browser.get("/v1/me")
    assert response.status_code == 303
    assert response.headers["location"] == "/auth/login?next=%2Fv1%2Fme&reason=login_required"


async def test_without_install_the_status_and_headers_are_kept_and_the_json_is_the_detail(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory(app=make_app(provider, install=False), require_login=False))
    response = await browser.get("/v1/me", headers=API)
    assert response.status_code == 401
    assert response.json() == {"detail": guards_json("/v1/me")}
    assert response.headers["www-authenticate"].startswith("Bearer")
    redirect = await browser.get("/v1/me")
    assert redirect.status_code == 303
    assert redirect.headers["location"] == guards_json("/v1/me")["login_url"]


async def test_the_guards_reason_reaches_the_answer(
    browser: httpx.AsyncClient, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    await login(browser, provider)
    provider.revoke_grants("alice")
    clock.advance(3600)
    await browser.get("/v1/hello")  # the guard's refresh is refused; its tokens are dropped
    response = await browser.get("/v1/me", headers=API)
    assert response.status_code == 401 and response.json()["reason"] == "refresh_rejected"
    assert (await browser.get("/v1/hello")).json() == {"hello": "stranger"}


async def test_a_relogin_raised_in_a_route_gets_the_relogin_response(
    browser: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    await login(browser, provider)
    assert (await browser.get("/v1/userinfo")).json()["sub"] == "alice"
    provider.revoke_grants("alice")
    response = await browser.get("/v1/userinfo", headers=API)
    assert response.status_code == 401 and response.json()["reason"] == "refresh_rejected"


async def test_an_outage_raised_in_a_route_gets_a_503_not_a_500(
    browser: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    await login(browser, provider)
    provider.expire_access_tokens()
    provider.fail_next(1, status=503)
    response = await browser.get("/v1/userinfo", headers=API)
    assert response.status_code == 503 and response.headers["retry-after"]
    assert (await browser.get("/v1/userinfo", headers=API)).json()["sub"] == "alice"


async def test_openapi_shows_the_session_cookie_scheme_on_routes_that_need_a_user(
    provider: OAuthTestProvider,
) -> None:
    schema = make_app(provider).openapi()
    assert schema["components"]["securitySchemes"]["OAuthGuardSession"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "guard_session",
        "description": guard.session_cookie.model.description,
    }
    paths = schema["paths"]
    assert paths["/v1/me"]["get"]["security"] == [{"OAuthGuardSession": []}]
    assert paths["/v1/token"]["get"]["security"] == [{"OAuthGuardSession": []}]
    assert "security" not in paths["/v1/hello"]["get"]
