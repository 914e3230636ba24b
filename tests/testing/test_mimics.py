"""The embedded provider playing real providers' documented shapes (`Mimic`, `testing.mimics`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from asgi_oauth_guard.testing import MIMIC_CAUSES, FakeClock, Mimic, OAuthTestProvider, mimics

from .conftest import CLIENT_ID, CLIENT_SECRET, Flow

pytestmark = pytest.mark.anyio


def play(mimic: Mimic, clock: FakeClock) -> OAuthTestProvider:
    return OAuthTestProvider(mimic=mimic, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)


@pytest.mark.parametrize(
    ("mimic", "issuer", "discovery"),
    [
        (mimics.google(), "https://accounts.google.com", "https://accounts.google.com"),
        (
            mimics.entra(tenant="organizations"),
            f"https://login.microsoftonline.com/{mimics.ENTRA_TENANT}/v2.0",
            "https://login.microsoftonline.com/{tenantid}/v2.0",
        ),
        (mimics.auth0(domain="t.eu.auth0.com"), "https://t.eu.auth0.com/", "https://t.eu.auth0.com/"),
        (
            mimics.okta(domain="o.okta.com"),
            "https://o.okta.com/oauth2/default",
            "https://o.okta.com/oauth2/default",
        ),
        (
            mimics.okta(domain="o.okta.com", authorization_server=None),
            "https://o.okta.com",
            "https://o.okta.com",
        ),
        (
            mimics.keycloak(base_url="https://kc.test", realm="r"),
            "https://kc.test/realms/r",
            "https://kc.test/realms/r",
        ),
        (mimics.gitlab(), "https://gitlab.com", "https://gitlab.com"),
    ],
    ids=["google", "entra-organizations", "auth0", "okta-custom", "okta-org", "keycloak", "gitlab"],
)
async def test_each_mimic_serves_its_documented_discovery_and_signs_in(
    mimic: Mimic, issuer: str, discovery: str, make_flow: Callable[..., Flow], clock: FakeClock
) -> None:
    provider = play(mimic, clock)
    flow = make_flow(provider)
    url = mimic.routes()
    discovery_url = next(u for u, name in url.items() if name == "discovery")

    document = (await flow.client.get(discovery_url)).json()

    assert provider.issuer == issuer
    assert document["issuer"] == discovery
    for endpoint, name in [("authorize", "authorization_endpoint"), ("token", "token_endpoint")]:
        assert document[name] == mimic.endpoints[endpoint]
    assert ("revocation_endpoint" in document) == ("revoke" in mimic.endpoints)
    assert "authorization_response_iss_parameter_supported" not in document
    params = flow.authorize_params(scope="openid email profile offline_access", access_type="offline")
    redirected = await provider.complete_authorization(flow.authorize_url(params))
    assert "code" in flow.query(redirected) and "iss" not in flow.query(redirected), "no RFC 9207 iss"
    login = flow.login_from(redirected, params)
    answer = await flow.exchange(login)
    assert answer.status_code == 200, answer.text
    claims = await flow.id_token_claims(answer.json()["id_token"])
    assert claims["iss"] == issuer
    assert provider.count(endpoint="token") == 1
    assert (await flow.client.get(mimic.endpoints["authorize"])).status_code != 404


async def test_a_reused_code_answers_the_mimics_own_error_body(make_flow, clock) -> None:
    provider = play(mimics.entra(), clock)
    flow = make_flow(provider)
    login = await flow.login(scope="openid offline_access")
    assert (await flow.exchange(login)).status_code == 200

    again = await flow.exchange(login)

    assert again.status_code == 400
    body = again.json()
    assert body["error"] == "invalid_grant" and body["error_codes"] == [54005]
    assert body["error_description"].startswith("AADSTS54005: OAuth2 Authorization code was already redeemed")


async def test_auth0_refuses_a_rotated_refresh_token_with_403_and_revokes_the_family(
    make_flow, clock
) -> None:
    provider = play(mimics.auth0(), clock)
    flow = make_flow(provider)
    first = await flow.tokens(scope="openid offline_access")
    second = (await flow.refresh(first["refresh_token"])).json()

    reused = await flow.refresh(first["refresh_token"])

    assert reused.status_code == 403
    assert reused.json() == {
        "error": "invalid_grant",
        "error_description": "Unknown or invalid refresh token.",
    }
    assert not provider.grant_alive(second["refresh_token"])


@pytest.mark.parametrize(
    "mimic", [mimics.entra(), mimics.auth0(), mimics.okta()], ids=["entra", "auth0", "okta"]
)
async def test_no_refresh_token_without_offline_access(mimic, make_flow, clock) -> None:
    flow = make_flow(play(mimic, clock))

    assert "refresh_token" not in await flow.tokens(scope="openid email")
    assert "refresh_token" in await flow.tokens(scope="openid email offline_access")


async def test_google_gives_a_refresh_token_offline_at_consent_only(make_flow, clock) -> None:
    provider = play(mimics.google(), clock)
    flow = make_flow(provider)

    assert "refresh_token" not in await flow.tokens(), "online access by default"
    first = await flow.tokens(access_type="offline")
    assert "refresh_token" not in first, "the first sign-in was the consent: none afterwards"
    provider.add_user("bob")
    assert "refresh_token" in await flow.tokens("bob", access_type="offline"), "bob's first consent"
    assert "refresh_token" not in await flow.tokens("bob", access_type="offline")
    consented = await flow.tokens("bob", access_type="offline", prompt="consent")
    assert "refresh_token" in consented

    refreshed = await flow.refresh(consented["refresh_token"])
    assert refreshed.status_code == 200 and "refresh_token" not in refreshed.json(), "no rotation"
    assert (await flow.refresh(consented["refresh_token"])).status_code == 200


async def test_google_drops_the_oldest_refresh_token_past_the_limit(make_flow, clock) -> None:
    provider = play(dataclasses.replace(mimics.google(), refresh_tokens_per_user=2), clock)
    flow = make_flow(provider)
    tokens = [(await flow.tokens(access_type="offline", prompt="consent"))["refresh_token"] for _ in range(3)]

    dropped = await flow.refresh(tokens[0])

    assert dropped.status_code == 400
    assert dropped.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    for _ in range(2):  # refreshing does not count as a new token
        assert [(await flow.refresh(t)).status_code for t in tokens[1:]] == [200, 200]


async def test_a_played_refusal_lasts_until_the_user_signs_in_again(make_flow, clock) -> None:
    provider = play(mimics.google(), clock)
    flow = make_flow(provider)
    before = await flow.tokens(access_type="offline", prompt="consent")
    provider.refuse_refreshes("alice", "reauthentication_required")

    refused = await flow.refresh(before["refresh_token"])

    assert refused.status_code == 400
    assert refused.json()["error_subtype"] == "invalid_rapt"
    assert refused.json()["error_description"] == "reauth related error (invalid_rapt)"
    assert (await flow.refresh(before["refresh_token"])).status_code == 400
    await flow.tokens(access_type="offline")
    assert (await flow.refresh(before["refresh_token"])).status_code == 200
    with pytest.raises(ValueError, match="unknown cause"):
        provider.refuse_refreshes("alice", "mfa_required")  # Entra's, not Google's


async def test_entra_multi_tenant_tokens_name_each_users_tenant(make_flow, clock) -> None:
    provider = play(mimics.entra(tenant="common"), clock)
    provider.add_user("bob", claims={"tid": "11111111-2222-3333-4444-555555555555"})
    flow = make_flow(provider)

    alice = await flow.id_token_claims((await flow.tokens(scope="openid"))["id_token"])
    bob = await flow.id_token_claims((await flow.tokens("bob", scope="openid"))["id_token"])

    assert alice["iss"] == f"https://login.microsoftonline.com/{mimics.ENTRA_TENANT}/v2.0"
    assert alice["tid"] == mimics.ENTRA_TENANT
    assert bob["iss"] == "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0"


async def test_keycloak_answers_session_not_active_for_a_revoked_session(make_flow, clock) -> None:
    provider = play(mimics.keycloak(), clock)
    flow = make_flow(provider)
    tokens = await flow.tokens()
    refreshed = (await flow.refresh(tokens["refresh_token"])).json()
    assert refreshed["refresh_token"] == tokens["refresh_token"], "echoed: no rotation by default"
    assert tokens["refresh_expires_in"] == refreshed["refresh_expires_in"] == 1800, "SSO Session Idle"
    clock.advance(1799)
    assert (await flow.refresh(tokens["refresh_token"])).status_code == 200, "each use renews the idle time"
    clock.advance(1799)
    provider.revoke_grants("alice")

    refused = await flow.refresh(tokens["refresh_token"])

    assert refused.json() == {"error": "invalid_grant", "error_description": "Session not active"}


def test_a_mimic_is_checked_when_built() -> None:
    good = mimics.google()
    with pytest.raises(ValueError, match="needs 'token'"):
        Mimic(name="x", issuer="https://x.test", endpoints={"authorize": "https://x.test/a"})
    with pytest.raises(ValueError, match="unknown endpoints"):
        dataclasses.replace(good, endpoints={**good.endpoints, "device": "https://x.test/device"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="same path"):
        dataclasses.replace(good, endpoints={**good.endpoints, "userinfo": good.endpoints["token"]})
    with pytest.raises(ValueError, match="'error' code"):
        dataclasses.replace(good, errors={"code_reused": (400, {"message": "no"})})
    assert set(MIMIC_CAUSES) <= set(mimics.gitlab().errors)
