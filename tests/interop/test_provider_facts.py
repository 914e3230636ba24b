"""Facts about oidc-provider 9.13.3 that the guard is built on, checked with plain httpx (no guard).

Each test proves one fact about what real servers do with client mistakes (README.md, docs/troubleshooting.md)
against the real server, or one setting the interop harness promises (PKCE, rotation, headless login, any loopback port).
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Iterator
from html import unescape
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from .conftest import (
    InteropProvider,
    authorize,
    exchange_code,
    refresh,
    running_oidc_provider,
    token_request,
    unique_user,
)

pytestmark = pytest.mark.anyio

# What oidc-provider puts in error_description for every invalid_grant, whatever the cause: the cause itself
# (e.g. "authorization code already consumed") goes only to its internal `error_detail`, never on the wire.
GENERIC_INVALID_GRANT = "grant request is invalid"


def callback(port: int | None = None, host: str = "127.0.0.1", path: str = "/auth/callback") -> str:
    """A registered redirect URI on some loopback port (the app's port is never known in advance)."""
    port = port or random.randint(20000, 60000)
    return f"http://{host}:{port}{path}"


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body == {"error": "invalid_grant", "error_description": GENERIC_INVALID_GRANT}


async def userinfo(client: httpx.AsyncClient, provider: InteropProvider, access_token: str) -> httpx.Response:
    return await client.get(provider.url("/me"), headers={"Authorization": f"Bearer {access_token}"})


async def logged_in(
    client: httpx.AsyncClient,
    provider: InteropProvider,
    user: str | None = None,
    redirect_uri: str | None = None,
) -> dict[str, str]:
    """A full login for `user` (default alice); returns the token response."""
    redirect_uri = redirect_uri or callback()
    authorization = await authorize(client, provider, redirect_uri=redirect_uri, login_hint=user)
    response = await exchange_code(client, provider, authorization)
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


# ----------------------------------------------------------------------------------------------------------
# configuration


async def test_discovery(oidc_provider: InteropProvider, client: httpx.AsyncClient) -> None:
    response = await client.get(oidc_provider.url("/.well-known/openid-configuration"))
    assert response.status_code == 200
    meta = response.json()
    assert meta["issuer"] == oidc_provider.issuer
    for name, path in {
        "authorization_endpoint": "/auth",
        "token_endpoint": "/token",
        "userinfo_endpoint": "/me",
        "jwks_uri": "/jwks",
        "revocation_endpoint": "/token/revocation",
        "end_session_endpoint": "/session/end",
    }.items():
        assert meta[name] == oidc_provider.url(path), name
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["grant_types_supported"]) >= {"authorization_code", "refresh_token"}
    assert meta["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
    assert meta["authorization_response_iss_parameter_supported"] is True  # RFC 9207: iss in the callback
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]

    health = await client.get(oidc_provider.url("/admin/health"))
    assert health.json() == {
        "status": "ok",
        "issuer": oidc_provider.issuer,
        "client_id": oidc_provider.client_id,
    }


async def test_code_flow_with_pkce_yields_all_tokens(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    redirect_uri = callback()
    # no offline_access asked: the harness issues refresh tokens to its client anyway
    authorization = await authorize(
        client, oidc_provider, redirect_uri=redirect_uri, scope="openid email profile"
    )
    params = authorization.params
    assert params["state"] == authorization.state
    assert params["iss"] == oidc_provider.issuer

    response = await exchange_code(client, oidc_provider, authorization)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == oidc_provider.access_token_ttl
    assert tokens["scope"] == "openid email profile"
    assert tokens["access_token"] and tokens["refresh_token"]

    jwks = (await client.get(oidc_provider.url("/jwks"))).json()
    id_token = jwt.decode(tokens["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": oidc_provider.issuer},
        aud={"essential": True, "value": oidc_provider.client_id},
        nonce={"essential": True, "value": authorization.nonce},
        sub={"essential": True, "value": "alice"},
    ).validate(id_token.claims)
    # conformIdTokenClaims is off: the scope's claims are in the ID token itself
    assert id_token.claims["email"] == "alice@example.test"
    assert id_token.claims["name"] == "Alice Liddell"

    me = await userinfo(client, oidc_provider, tokens["access_token"])
    assert me.status_code == 200, me.text
    assert me.json()["sub"] == "alice"
    assert me.json()["email"] == "alice@example.test"


async def test_login_hint_picks_the_account_and_client_secret_post_works(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    authorization = await authorize(client, oidc_provider, redirect_uri=callback(), login_hint="bob")
    data = {
        "grant_type": "authorization_code",
        "code": authorization.code,
        "redirect_uri": authorization.redirect_uri,
        "code_verifier": authorization.verifier,
    }
    response = await token_request(client, oidc_provider, data, auth="post")
    assert response.status_code == 200, response.text
    me = await userinfo(client, oidc_provider, response.json()["access_token"])
    assert me.json()["sub"] == "bob"
    assert me.json()["email"] == "bob@example.test"


async def test_wrong_client_secret_is_invalid_client(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        oidc_provider.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        auth=(oidc_provider.client_id, "not-the-secret"),
    )
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client", "error_description": "client authentication failed"}


async def test_pkce_is_required(oidc_provider: InteropProvider, client: httpx.AsyncClient) -> None:
    redirect_uri = callback()
    response = await client.get(
        oidc_provider.url("/auth"),
        params={
            "client_id": oidc_provider.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": "openid",
            "state": "s1",
        },
    )
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?")
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert params["error"] == "invalid_request"
    assert (
        params["error_description"] == "Authorization Server policy requires PKCE to be used for this request"
    )
    assert params["state"] == "s1"


async def test_wrong_code_verifier_is_invalid_grant(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    authorization = await authorize(client, oidc_provider, redirect_uri=callback())
    response = await exchange_code(client, oidc_provider, authorization, code_verifier="x" * 43)
    assert_invalid_grant(response)


async def test_any_loopback_port_is_accepted_but_the_path_is_exact(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    for redirect_uri in (
        callback(port=8000),
        callback(port=54321, host="localhost"),
        callback(path="/callback"),
    ):
        async with httpx.AsyncClient(timeout=10) as browser:
            tokens = await logged_in(browser, oidc_provider, redirect_uri=redirect_uri)
            assert tokens["access_token"]

    unregistered = await client.get(
        oidc_provider.url("/auth"),
        params={
            "client_id": oidc_provider.client_id,
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": callback(path="/elsewhere"),
        },
    )
    # no redirect to an unregistered URI: the provider answers itself (renderError, JSON in this harness)
    assert unregistered.status_code == 400
    assert unregistered.json()["error"] == "invalid_redirect_uri"


async def test_second_login_in_the_same_browser_after_revocation(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    user = unique_user("again")
    first = await logged_in(client, oidc_provider, user)
    second = await logged_in(client, oidc_provider, user)  # provider session cookie present: consent only
    assert second["refresh_token"] != first["refresh_token"]
    await oidc_provider.arevoke_grants(user)  # also ends the provider session
    assert_invalid_grant(await refresh(client, oidc_provider, second["refresh_token"]))
    third = await logged_in(client, oidc_provider, user)  # the re-login the guard will send the user to
    me = await userinfo(client, oidc_provider, third["access_token"])
    assert me.json()["sub"] == user


async def test_access_denied_comes_back_to_the_redirect_uri(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    authorization = await authorize(client, oidc_provider, redirect_uri=callback(), login_hint="deny")
    params = authorization.params
    assert params["error"] == "access_denied"
    assert params["state"] == authorization.state
    assert "code" not in params


# ----------------------------------------------------------------------------------------------------------
# the invalid_grant table of README.md


async def test_code_exchanged_twice_revokes_the_whole_grant(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    authorization = await authorize(client, oidc_provider, redirect_uri=callback())
    first = await exchange_code(client, oidc_provider, authorization)
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert (await userinfo(client, oidc_provider, tokens["access_token"])).status_code == 200

    second = await exchange_code(client, oidc_provider, authorization)
    assert_invalid_grant(second)

    # the tokens of the first (successful) exchange die with the grant
    me = await userinfo(client, oidc_provider, tokens["access_token"])
    assert me.status_code == 401
    assert me.json()["error"] == "invalid_token"
    assert_invalid_grant(await refresh(client, oidc_provider, tokens["refresh_token"]))


async def test_refresh_token_rotation_and_reuse_revokes_the_grant(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    tokens = await logged_in(client, oidc_provider)
    rotated = await refresh(client, oidc_provider, tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["refresh_token"] != tokens["refresh_token"]  # rotation is on
    assert new["access_token"] != tokens["access_token"]
    assert new["id_token"]
    assert (await userinfo(client, oidc_provider, new["access_token"])).status_code == 200

    # reuse of the rotated-out token: refused, and the whole grant goes with it
    assert_invalid_grant(await refresh(client, oidc_provider, tokens["refresh_token"]))
    assert_invalid_grant(await refresh(client, oidc_provider, new["refresh_token"]))
    assert (await userinfo(client, oidc_provider, new["access_token"])).status_code == 401


async def test_two_refreshes_at_once_one_wins_then_the_grant_dies(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    tokens = await logged_in(client, oidc_provider)
    responses: list[httpx.Response] = []

    async def one() -> None:
        async with httpx.AsyncClient(timeout=10) as own:  # separate connections, like two app workers
            responses.append(await refresh(own, oidc_provider, tokens["refresh_token"]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)

    assert sorted(r.status_code for r in responses) == [200, 400]
    winner = next(r for r in responses if r.status_code == 200).json()
    assert_invalid_grant(next(r for r in responses if r.status_code == 400))
    # the winner's brand-new tokens are already dead
    assert_invalid_grant(await refresh(client, oidc_provider, winner["refresh_token"]))
    assert (await userinfo(client, oidc_provider, winner["access_token"])).status_code == 401


async def test_redirect_uri_mismatch_is_invalid_grant_and_does_not_consume_the_code(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    authorization = await authorize(client, oidc_provider, redirect_uri=callback())
    for wrong in (
        authorization.redirect_uri + "/",  # trailing slash
        authorization.redirect_uri.replace("127.0.0.1", "localhost"),  # host (also a registered URI)
    ):
        assert_invalid_grant(await exchange_code(client, oidc_provider, authorization, redirect_uri=wrong))

    # the code survived: the right redirect_uri still gets tokens
    response = await exchange_code(client, oidc_provider, authorization)
    assert response.status_code == 200, response.text


async def test_missing_redirect_uri_is_invalid_request(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    authorization = await authorize(client, oidc_provider, redirect_uri=callback())
    data = {
        "grant_type": "authorization_code",
        "code": authorization.code,
        "code_verifier": authorization.verifier,
    }
    response = await token_request(client, oidc_provider, data)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "missing required parameter 'redirect_uri'",
    }


@pytest.fixture
def private_provider() -> Iterator[InteropProvider]:
    """A provider of the test's own, for tests that move its clock."""
    with running_oidc_provider() as provider:
        yield provider


async def test_code_exchanged_after_its_ttl_is_invalid_grant(
    private_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    authorization = await authorize(client, private_provider, redirect_uri=callback())
    await private_provider.aadvance_clock(private_provider.code_ttl + 1)
    assert_invalid_grant(await exchange_code(client, private_provider, authorization))


async def test_access_token_dies_at_its_ttl_and_refresh_still_works(
    private_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    tokens = await logged_in(client, private_provider)
    # oidc-provider counts whole seconds: iat is the issuing second rounded down and exp = iat + ttl, so a
    # token issued at x.97 s lives 5 - 0.97 s and is already dead 4 s (plus a few ms) later. Stay 2 s clear.
    await private_provider.aadvance_clock(private_provider.access_token_ttl - 2)
    assert (await userinfo(client, private_provider, tokens["access_token"])).status_code == 200
    # CLOCK_TOLERANCE=0 in the harness: no 15 s grace after exp (oidc-provider's default clockTolerance)
    await private_provider.aadvance_clock(2)
    assert (await userinfo(client, private_provider, tokens["access_token"])).status_code == 401
    refreshed = await refresh(client, private_provider, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert (await userinfo(client, private_provider, refreshed.json()["access_token"])).status_code == 200


async def test_revoked_grants_make_refresh_invalid_grant(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    user, bystander = unique_user("pw"), unique_user("other")
    tokens = await logged_in(client, oidc_provider, user)
    async with httpx.AsyncClient(timeout=10) as other_browser:
        other = await logged_in(other_browser, oidc_provider, bystander)

    await oidc_provider.arevoke_grants(user)  # the user changed their password

    assert_invalid_grant(await refresh(client, oidc_provider, tokens["refresh_token"]))
    assert (await userinfo(client, oidc_provider, tokens["access_token"])).status_code == 401
    # only that user's grants
    assert (await refresh(client, oidc_provider, other["refresh_token"])).status_code == 200

    # and the sync form, for the lead's non-async tests
    oidc_provider.revoke_grants(bystander)


async def test_rfc7009_revocation_of_the_refresh_token(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    tokens = await logged_in(client, oidc_provider)
    response = await client.post(
        oidc_provider.url("/token/revocation"),
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(oidc_provider.client_id, oidc_provider.client_secret),
    )
    assert response.status_code == 200
    assert response.content == b""

    assert_invalid_grant(await refresh(client, oidc_provider, tokens["refresh_token"]))
    # revoking a refresh token revokes its grant, access tokens included (oidc-provider's revokeGrantPolicy)
    assert (await userinfo(client, oidc_provider, tokens["access_token"])).status_code == 401

    # revoking an unknown or already revoked token is still 200 (RFC 7009 section 2.2)
    again = await client.post(
        oidc_provider.url("/token/revocation"),
        data={"token": tokens["refresh_token"]},
        auth=(oidc_provider.client_id, oidc_provider.client_secret),
    )
    assert again.status_code == 200


async def test_unknown_code_and_refresh_token_are_invalid_grant(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    data = {
        "grant_type": "authorization_code",
        "code": "not-a-code",
        "redirect_uri": callback(),
        "code_verifier": "v" * 43,
    }
    assert_invalid_grant(await token_request(client, oidc_provider, data))
    assert_invalid_grant(await refresh(client, oidc_provider, "not-a-refresh-token"))


# ----------------------------------------------------------------------------------------------------------
# logout


async def test_rp_initiated_logout_redirects_to_a_loopback_uri(
    oidc_provider: InteropProvider, client: httpx.AsyncClient
) -> None:
    tokens = await logged_in(client, oidc_provider)
    post_logout = f"http://127.0.0.1:{random.randint(20000, 60000)}/"
    page = await client.get(
        oidc_provider.url("/session/end"),
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": post_logout,
            "state": "bye",
        },
    )
    assert page.status_code == 200, page.text
    # the harness's confirmation page submits itself in a browser; here the form is posted by hand
    form_action = re.search(r'action="([^"]+)"', page.text)
    assert form_action is not None, page.text
    action = unescape(form_action.group(1))
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    assert fields["logout"] == "yes"
    done = await client.post(urljoin_issuer(oidc_provider, action), data=fields)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"{post_logout}?state=bye"

    # With expiresWithSession off, oidc-provider marks the grant "persistsLogout": ending the session at the
    # provider leaves the refresh token alive. Only the client's own RFC 7009 revocation ends it.
    assert (await refresh(client, oidc_provider, tokens["refresh_token"])).status_code == 200


def urljoin_issuer(provider: InteropProvider, action: str) -> str:
    return action if action.startswith("http") else provider.url(action)
