"""A public client (``client_auth="none"``): PKCE and ``client_id``, no secret, at every provider call."""

from __future__ import annotations

import httpx
import pytest
from starlette.responses import PlainTextResponse

from asgi_oauth_guard import ConfigurationError, OAuthGuard
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from .conftest import CLIENT_ID, CLIENT_SECRET, ISSUER, BrowserFactory, GuardFactory, login

pytestmark = pytest.mark.anyio


@pytest.fixture
def provider(clock: FakeClock) -> OAuthTestProvider:
    """The client registered as public: a secret, Basic credentials or an assertion are refused."""
    return OAuthTestProvider(
        issuer=ISSUER, client_id=CLIENT_ID, clock=clock, public_client=True, access_token_ttl=300
    )


async def test_a_public_client_signs_in_refreshes_and_signs_out_naming_itself_only(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    browser = browser_factory(guard_factory(client_secret="", client_auth="none"))
    await login(browser, provider, "/me")
    first = (await browser.get("/me")).json()
    assert first["user"] == "alice"
    clock.advance(301)
    refreshed = (await browser.get("/me")).json()
    assert refreshed["refreshes"] == 1 and refreshed["access_token"] != first["access_token"]
    assert (await browser.post("/auth/logout")).status_code == 303
    sent = [c for c in provider.calls if c.endpoint in ("token", "revoke")]
    assert [(c.endpoint, c.grant_type, c.status) for c in sent] == [
        ("token", "authorization_code", 200),
        ("token", "refresh_token", 200),
        ("revoke", None, 200),  # RFC 7009 2.1: a public client names itself with client_id
    ]
    for call in sent:
        assert call.params["client_id"] == CLIENT_ID
        assert not {"client_secret", "client_assertion"} & call.params.keys()
    assert "code_verifier" in sent[0].params
    assert not provider.grant_alive(refreshed["access_token"])


async def test_the_provider_refuses_a_secret_from_its_public_client(provider: OAuthTestProvider) -> None:
    """What the test above relies on: a client sending credentials to a public registration fails."""
    async with httpx.AsyncClient(transport=provider.transport(), base_url=ISSUER) as http:
        basic = await http.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": "x"}, auth=(CLIENT_ID, "s")
        )
        named = await http.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": CLIENT_ID}
        )
    assert basic.status_code == 401 and basic.json()["error"] == "invalid_client"
    assert named.status_code == 400 and named.json()["error"] == "invalid_grant"


def test_a_secret_given_to_a_public_client_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="client_auth='none' \\(a public client\\) never sends it"):
        OAuthGuard(
            PlainTextResponse("app"),
            issuer=ISSUER,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            client_auth="none",
            secret_key="k" * 32,
        )


def test_a_public_client_cannot_check_hmac_id_tokens() -> None:
    with pytest.raises(ConfigurationError, match="which a public client \\(client_auth='none'\\) has not"):
        OAuthGuard(
            PlainTextResponse("app"),
            issuer=ISSUER,
            client_id=CLIENT_ID,
            client_auth="none",
            id_token_signed_response_alg="HS256",
            secret_key="k" * 32,
        )
