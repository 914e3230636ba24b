"""Offline grants with the Google preset, against the Google mimic: a refresh token only with
access_type=offline and only at a consent; no rotation; consent asked only to restore a lost grant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from asgi_oauth_guard import ConsentRequired, MemoryStore, OAuthGuard, OfflineAccess, providers
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider, mimics

from ..conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY, BrowserFactory, inner_app
from .conftest import SERVER_KEY

pytestmark = pytest.mark.anyio


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def provider(clock: FakeClock) -> OAuthTestProvider:
    return OAuthTestProvider(
        mimic=mimics.google(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock
    )


@pytest.fixture
async def guard(provider: OAuthTestProvider, clock: FakeClock) -> AsyncIterator[OAuthGuard]:
    async with httpx.AsyncClient(transport=provider.transport()) as http:
        yield OAuthGuard(
            inner_app(),
            providers=[
                providers.google(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, offline=OfflineAccess())
            ],
            secret_key=SECRET_KEY,
            server_keys=[SERVER_KEY],
            http_client=http,
            clock=clock,
            store=MemoryStore(clock=clock),
            require_login=["/me"],
        )


async def authorize(browser: httpx.AsyncClient) -> str:
    login = await browser.get("/auth/login", params={"next": "/me"})
    assert login.status_code == 303, login.text
    return login.headers["location"]


async def test_google_grants_are_kept_and_a_lost_one_comes_back_with_one_consent(
    guard: OAuthGuard, provider: OAuthTestProvider, clock: FakeClock, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard)
    first = await authorize(browser)
    assert query(first)["access_type"] == "offline" and "prompt" not in query(first)
    assert "offline_access" not in query(first)["scope"].split()  # not a Google scope
    assert (await browser.get(await provider.complete_authorization(first))).status_code == 303
    clock.advance(3600)
    async with guard.tokens() as tm:
        token = await tm.for_user("alice", provider="google")
    assert provider.token_info(token.access_token)["active"]
    assert (await browser.get("/me")).status_code == 200  # the session draws on the same grant

    provider.revoke_grants("alice")
    clock.advance(3600)
    async with guard.tokens() as tm:
        with pytest.raises(ConsentRequired) as caught:
            await tm.for_user("alice")
    assert caught.value.reason == "revoked"
    # Another browser, no session to tell: Google answers no refresh token without a consent, so the
    # guard asks once more, with prompt=consent, and the grant is back.
    other = browser_factory(guard)
    plain = await authorize(other)
    assert "prompt" not in query(plain)
    again = await other.get(await provider.complete_authorization(plain))
    assert again.status_code == 303 and again.headers["location"].startswith("/auth/login?")
    consent = await other.get(again.headers["location"])
    assert query(consent.headers["location"])["prompt"] == "consent"
    done = await other.get(await provider.complete_authorization(consent.headers["location"]))
    assert done.status_code == 303 and done.headers["location"] == "/me"
    async with guard.tokens() as tm:
        restored = await tm.for_user("alice", rejected="none")
    assert provider.token_info(restored.access_token)["active"]
    # A later sign-in does not ask again.
    assert "prompt" not in query(await authorize(browser_factory(guard)))
