"""The token endpoint's authorization_code grant, checked against what real servers do."""

from __future__ import annotations

import base64
from urllib.parse import quote

import httpx
import pytest

from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

pytestmark = pytest.mark.anyio


async def test_exchange_answers_tokens_and_a_signed_id_token(flow, provider, clock: FakeClock) -> None:
    login = await flow.login()
    response = await flow.exchange(login)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "openid email profile"
    assert body["refresh_token"] and body["access_token"] != body["refresh_token"]
    claims = await flow.id_token_claims(body["id_token"])
    assert claims["iss"] == provider.issuer
    assert claims["sub"] == "alice"
    assert claims["aud"] == "guard-client"
    assert claims["nonce"] == login.nonce
    assert claims["iat"] == claims["auth_time"] == int(clock())
    assert claims["exp"] == int(clock()) + 3600
    assert claims["email"] == "alice@example.test"
    assert claims["name"] == "Alice"
    assert "at_hash" in claims


async def test_client_secret_post_and_urlencoded_basic_credentials(flow, client, make_flow) -> None:
    odd = OAuthTestProvider(client_id="app:1", client_secret="s3cr3t/+ é")
    odd_flow = make_flow(odd, client_id="app:1", client_secret="s3cr3t/+ é")
    login = await odd_flow.login()
    basic = base64.b64encode(f"{quote('app:1', safe='')}:{quote('s3cr3t/+ é', safe='')}".encode()).decode()
    data = {
        "grant_type": "authorization_code",
        "code": login.code,
        "redirect_uri": login.redirect_uri,
        "code_verifier": login.verifier,
    }
    response = await odd_flow.client.post("/token", data=data, headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 200, response.text

    login = await flow.login()
    data = {
        "grant_type": "authorization_code",
        "code": login.code,
        "redirect_uri": login.redirect_uri,
        "code_verifier": login.verifier,
        "client_id": "guard-client",
        "client_secret": "guard-secret",
    }
    assert (await client.post("/token", data=data)).status_code == 200


@pytest.mark.parametrize(
    ("auth", "extra"),
    [
        (("guard-client", "wrong"), {}),
        (("other-client", "guard-secret"), {}),
        (None, {"client_id": "guard-client", "client_secret": "wrong"}),
        (None, {"client_id": "guard-client"}),
        (None, {}),
    ],
    ids=["basic-wrong-secret", "basic-wrong-id", "post-wrong-secret", "no-secret", "no-auth"],
)
async def test_bad_client_authentication_is_401_invalid_client_and_spends_nothing(
    flow, client: httpx.AsyncClient, auth, extra
) -> None:
    login = await flow.login()
    data = {
        "grant_type": "authorization_code",
        "code": login.code,
        "redirect_uri": login.redirect_uri,
        "code_verifier": login.verifier,
        **extra,
    }
    response = await client.post("/token", data=data, auth=auth)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert (await flow.exchange(login)).status_code == 200


async def test_two_client_authentication_methods_at_once_are_refused(flow, client: httpx.AsyncClient) -> None:
    login = await flow.login()
    data = {
        "grant_type": "authorization_code",
        "code": login.code,
        "redirect_uri": login.redirect_uri,
        "code_verifier": login.verifier,
        "client_secret": "guard-secret",
    }
    response = await client.post("/token", data=data, auth=("guard-client", "guard-secret"))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_unknown_code_is_invalid_grant_without_side_effect(flow) -> None:
    tokens = await flow.tokens()
    login = await flow.login()

    flow.assert_invalid_grant(await flow.exchange(login, code="not-a-code"))

    assert (await flow.exchange(login)).status_code == 200
    assert (await flow.userinfo(tokens["access_token"])).status_code == 200


async def test_code_used_after_its_ttl_is_invalid_grant_and_revokes_nothing(flow, provider, clock) -> None:
    first = await flow.tokens()
    login = await flow.login()
    clock.advance(600)

    flow.assert_invalid_grant(await flow.exchange(login))
    assert provider.grant_alive(first["refresh_token"])
    assert (await flow.refresh(first["refresh_token"])).status_code == 200


async def test_code_used_just_before_its_ttl_works(flow, clock) -> None:
    login = await flow.login()
    clock.advance(599.5)
    assert (await flow.exchange(login)).status_code == 200


async def test_expire_codes_expires_the_codes_issued_so_far(flow, provider) -> None:
    old = await flow.login()
    provider.expire_codes()
    new = await flow.login()

    flow.assert_invalid_grant(await flow.exchange(old))
    assert (await flow.exchange(new)).status_code == 200


async def test_code_exchanged_twice_revokes_the_whole_grant(flow, provider) -> None:
    login = await flow.login()
    first = await flow.exchange(login)
    assert first.status_code == 200
    tokens = first.json()
    assert (await flow.userinfo(tokens["access_token"])).status_code == 200

    flow.assert_invalid_grant(await flow.exchange(login))

    assert not provider.grant_alive(tokens["access_token"])
    assert (await flow.userinfo(tokens["access_token"])).status_code == 401
    flow.assert_invalid_grant(await flow.refresh(tokens["refresh_token"]))


async def test_reused_code_revokes_only_its_own_grant(flow) -> None:
    other = await flow.tokens()
    login = await flow.login()
    await flow.exchange(login)
    flow.assert_invalid_grant(await flow.exchange(login))

    assert (await flow.userinfo(other["access_token"])).status_code == 200
    assert (await flow.refresh(other["refresh_token"])).status_code == 200


@pytest.mark.parametrize(
    "sent",
    [
        "https://app.example.test/auth/callback/",
        "https://APP.example.test/auth/callback",
        "http://app.example.test/auth/callback",
        "https://app.example.test/auth/callback?x=1",
    ],
)
async def test_redirect_uri_not_identical_is_invalid_grant_and_keeps_the_code(flow, sent: str) -> None:
    login = await flow.login()

    flow.assert_invalid_grant(await flow.exchange(login, redirect_uri=sent))

    assert (await flow.exchange(login)).status_code == 200


@pytest.mark.parametrize("verifier", ["x" * 43, None, "short", "A" * 129])
async def test_wrong_or_missing_code_verifier_is_invalid_grant(flow, verifier: str | None) -> None:
    login = await flow.login()

    flow.assert_invalid_grant(await flow.exchange(login, code_verifier=verifier))

    assert (await flow.exchange(login)).status_code == 200


async def test_without_openid_scope_there_is_no_id_token(flow) -> None:
    tokens = await flow.tokens(scope="api:read")
    assert "id_token" not in tokens
    assert tokens["scope"] == "api:read"


async def test_refresh_tokens_can_be_turned_off(make_flow) -> None:
    tokens = await make_flow(OAuthTestProvider(issue_refresh_tokens=False)).tokens()
    assert "refresh_token" not in tokens
    assert tokens["access_token"]


async def test_id_token_claims_follow_the_scopes(flow) -> None:
    claims = await flow.id_token_claims((await flow.tokens(scope="openid"))["id_token"])
    assert "email" not in claims
    assert "name" not in claims
    claims = await flow.id_token_claims((await flow.tokens(scope="openid email", nonce=None))["id_token"])
    assert claims["email"] == "alice@example.test"
    assert "nonce" not in claims


async def test_revoke_grants_kills_tokens_and_unused_codes(flow, provider) -> None:
    tokens = await flow.tokens()
    pending = await flow.login()

    provider.revoke_grants("alice")

    assert (await flow.userinfo(tokens["access_token"])).status_code == 401
    flow.assert_invalid_grant(await flow.refresh(tokens["refresh_token"]))
    flow.assert_invalid_grant(await flow.exchange(pending))
    assert (await flow.exchange(await flow.login())).status_code == 200


async def test_revoke_grants_spares_other_users(flow, provider) -> None:
    provider.add_user("bob")
    bob = await flow.tokens(user="bob")
    provider.revoke_grants("alice")
    assert (await flow.refresh(bob["refresh_token"])).status_code == 200


async def test_disabled_user_cannot_exchange_a_pending_code(flow, provider) -> None:
    login = await flow.login()
    provider.disable_user("alice")
    flow.assert_invalid_grant(await flow.exchange(login))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, "invalid_request"),
        ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type"),
        ({"grant_type": "urn:ietf:params:oauth:grant-type:device_code"}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "redirect_uri": "https://a.test/cb"}, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "abc"}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
    ],
)
async def test_malformed_token_requests_are_400_with_a_clear_error(client, data, error) -> None:
    response = await client.post("/token", data=data, auth=("guard-client", "guard-secret"))
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["error_description"]
