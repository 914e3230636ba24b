"""The GitHub preset against the embedded provider playing GitHub's answers (``mimics.github``): no ID
token, the user from the REST API, 200s with GitHub's own error codes, tokens that never expire (an OAuth
App) or expire and rotate (a GitHub App), sign-out through GitHub's token-deletion API."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import MemoryStore, OAuthGuard, Provider, current_identity, providers
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider, mimics, providers_transport

from ..conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY, BrowserFactory, start_login

pytestmark = pytest.mark.anyio

EIGHT_HOURS = 8 * 3600


async def me(request: Request) -> JSONResponse:
    identity = current_identity()
    assert identity is not None
    return JSONResponse(
        {"claims": dict(identity.claims), "provider": identity.provider, "token": identity.access_token}
    )


@dataclasses.dataclass
class Rig:
    guard: OAuthGuard
    clock: FakeClock


def exchanges(idp: OAuthTestProvider) -> int:
    return sum(1 for c in idp.calls if c.grant_type == "authorization_code")


@pytest.fixture(params=[False, True], ids=["oauth-app", "github-app-expiring"])
def expiring(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def provider(clock: FakeClock, expiring: bool) -> OAuthTestProvider:
    return OAuthTestProvider(
        mimic=mimics.github(client_id=CLIENT_ID, expiring=expiring),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        clock=clock,
        access_token_ttl=EIGHT_HOURS,
        refresh_token_ttl=184 * 86400,
    )


def make_guard(
    provider: Provider, idp: OAuthTestProvider, clock: FakeClock, http: httpx.AsyncClient
) -> OAuthGuard:
    return OAuthGuard(
        Starlette(routes=[Route("/me", me)]),
        providers=[provider],
        secret_key=SECRET_KEY,
        http_client=http,
        clock=clock,
        store=MemoryStore(clock=clock),
        require_login=["/me"],
        session_max_age=7 * 86400,  # days of sessions: GitHub's tokens outlive the guard's defaults
        session_idle_timeout=86400,
    )


@pytest.fixture
async def http(provider: OAuthTestProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=providers_transport(provider)) as client:
        yield client


@pytest.fixture
def guard(provider: OAuthTestProvider, clock: FakeClock, http: httpx.AsyncClient) -> OAuthGuard:
    preset = providers.github(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    return make_guard(preset, provider, clock, http)


async def test_sign_in_names_the_user_by_githubs_numeric_id_and_keeps_the_primary_verified_email(
    guard: OAuthGuard, provider: OAuthTestProvider, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard)
    started = await browser.get("/auth/login", params={"next": "/me"})
    location = httpx.URL(started.headers["location"])
    assert str(location.copy_with(query=None)) == "https://github.com/login/oauth/authorize"
    assert location.params["scope"] == "read:user user:email"
    assert (await browser.get(await provider.complete_authorization(str(location)))).status_code == 303
    seen = (await browser.get("/me")).json()
    user_id = mimics.github_user_id({"sub": "alice"})
    assert seen["provider"] == "github"
    assert seen["claims"] == {
        "sub": str(user_id),
        "login": "alice",
        "preferred_username": "alice",
        "name": "Alice",
        "picture": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "profile": "https://github.com/alice",
        "email": "alice@example.test",  # the primary verified one, not the noreply address
        "email_verified": True,
    }
    # One exchange, one /user and one /user/emails call, at sign-in only.
    assert [c.endpoint for c in provider.calls if c.endpoint != "authorize"] == [
        "token",
        "userinfo",
        "emails",
    ]
    await browser.get("/me")
    assert provider.count("userinfo") == 1 and provider.count("emails") == 1


async def test_an_oauth_app_reads_emails_only_with_the_user_email_scope_a_github_app_by_permission(
    provider: OAuthTestProvider,
    clock: FakeClock,
    http: httpx.AsyncClient,
    expiring: bool,
    browser_factory: BrowserFactory,
) -> None:
    preset = providers.github(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scopes=["read:user"])
    browser = browser_factory(make_guard(preset, provider, clock, http))
    await browser.get(await start_login(browser, provider, "/me"))
    claims = (await browser.get("/me")).json()["claims"]
    if expiring:
        # A GitHub App's token answer names no scope (scope ""): its permissions decide, so it asks.
        assert claims["email"] == "alice@example.test" and provider.count("emails") == 1
    else:
        assert "email" not in claims and provider.count("emails") == 0  # not granted: not asked


async def test_no_email_is_kept_without_a_verified_primary(
    provider: OAuthTestProvider, clock: FakeClock, http: httpx.AsyncClient, browser_factory: BrowserFactory
) -> None:
    provider.add_user("bob", email="bob@example.test", name="Bob", claims={"email_verified": False})
    provider.login_as("bob")
    preset = providers.github(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    browser = browser_factory(make_guard(preset, provider, clock, http))
    await browser.get(await start_login(browser, provider, "/me"))
    claims = (await browser.get("/me")).json()["claims"]
    assert claims["login"] == "bob" and "email" not in claims and "email_verified" not in claims
    assert provider.count("emails") == 1


async def test_tokens_refresh_only_when_they_expire_and_sign_out_deletes_the_token(
    guard: OAuthGuard,
    provider: OAuthTestProvider,
    clock: FakeClock,
    expiring: bool,
    browser_factory: BrowserFactory,
) -> None:
    browser = browser_factory(guard)
    await browser.get(await start_login(browser, provider, "/me"))
    first = (await browser.get("/me")).json()["token"]
    clock.advance(EIGHT_HOURS + 1)
    second = (await browser.get("/me")).json()["token"]
    refreshes = [c for c in provider.calls if c.grant_type == "refresh_token"]
    if expiring:
        # A GitHub App's user token: 8 hours, then one refresh, which rotates the refresh token.
        assert second != first and len(refreshes) == 1
        clock.advance(EIGHT_HOURS + 1)
        third = (await browser.get("/me")).json()["token"]
        refreshes = [c for c in provider.calls if c.grant_type == "refresh_token"]
        assert third != second and len(refreshes) == 2
        assert refreshes[0].params["refresh_token"] != refreshes[1].params["refresh_token"]
        current = third
    else:
        # An OAuth App's token never expires: no refresh is ever tried, however long the session lives.
        assert second == first and not refreshes
        current = second
    assert provider.grant_alive(current)

    out = await browser.post("/auth/logout")
    assert out.status_code == 303
    revocations = [c for c in provider.calls if c.endpoint == "revoke"]
    assert [(c.method, c.status) for c in revocations] == [("DELETE", 204)]
    assert revocations[0].params["access_token"] == current
    assert provider.token_info(current) == {"active": False}  # revoked at GitHub


async def test_githubs_200_errors_are_classified_and_never_retried(
    guard: OAuthGuard,
    provider: OAuthTestProvider,
    browser_factory: BrowserFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A code GitHub no longer takes (used, or expired at GitHub): "bad_verification_code" in a 200.
    browser = browser_factory(guard)
    callback = await start_login(browser, provider, "/me")
    provider.expire_codes()
    refused = await browser.get(callback)
    assert refused.status_code == 303 and "reason=state_expired" in refused.headers["location"]
    again = await browser.get(callback)  # a reload: the outcome is recorded, the code never sent again
    assert again.status_code == 303 and exchanges(provider) == 1
    assert [c.error for c in provider.calls if c.endpoint == "token"] == ["bad_verification_code"]

    # A wrong client secret: "incorrect_client_credentials" in a 200 is the misconfigured page.
    provider.set_client_secret("another-secret-0123456789")
    browser = browser_factory(guard)
    with caplog.at_level(logging.ERROR, logger="asgi_oauth_guard"):
        page = await browser.get(await start_login(browser, provider, "/me"))
    assert page.status_code == 502 and 'data-kind="misconfigured"' in page.text
    assert any("client_secret" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


@pytest.mark.parametrize("expiring", [True], ids=["github-app-expiring"])
async def test_a_refused_github_refresh_ends_the_session_with_refresh_rejected(
    guard: OAuthGuard, provider: OAuthTestProvider, clock: FakeClock, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard)
    await browser.get(await start_login(browser, provider, "/me"))
    provider.revoke_grants("alice")
    clock.advance(EIGHT_HOURS + 1)
    gone = await browser.get("/me")
    assert gone.status_code == 303 and "reason=refresh_rejected" in gone.headers["location"]
    assert [c.error for c in provider.calls if c.grant_type == "refresh_token"] == ["bad_refresh_token"]
