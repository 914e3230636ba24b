"""How django-oauth-toolkit 3.4.1 answers each client mistake, checked with plain httpx (no guard).

These are the facts of the table in interop/README.md ("django-oauth-toolkit"); the provider is the Django
project of interop/dot/ (rotation and refresh-token reuse protection on, PKCE required, 5 s access tokens).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest

from .conftest import unique_user
from .dot import (
    AUTHORIZE_PATH,
    DotProvider,
    authorize,
    exchange_code,
    refresh,
    token_request,
)

pytestmark = pytest.mark.anyio

# django-oauth-toolkit (through oauthlib) says nothing more than the error code for every invalid_grant
INVALID_GRANT = {"error": "invalid_grant"}


def callback(port: int | None = None) -> str:
    return f"http://127.0.0.1:{port or random.randint(20000, 60000)}/auth/callback"


async def userinfo(client: httpx.AsyncClient, provider: DotProvider, access_token: str) -> int:
    response = await client.get(
        provider.endpoint("/userinfo/"), headers={"Authorization": f"Bearer {access_token}"}
    )
    return response.status_code


async def tokens_for(client: httpx.AsyncClient, provider: DotProvider, user: str) -> dict[str, str]:
    authorization = await authorize(client, provider, redirect_uri=callback(), user=user)
    response = await exchange_code(client, provider, authorization)
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


async def events_since(
    client: httpx.AsyncClient, provider: DotProvider, mark: int
) -> list[dict[str, object]]:
    events: list[dict[str, object]] = (
        await client.get(provider.url("/admin/events"), params={"since": mark})
    ).json()["events"]
    return events


async def mark(client: httpx.AsyncClient, provider: DotProvider) -> int:
    return int((await client.get(provider.url("/admin/events"), params={"since": 2**50})).json()["next"])


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


# ----------------------------------------------------------------------------------------------------------
# discovery: revocation_endpoint is only in the RFC 8414 document


async def test_revocation_endpoint_is_published_only_in_rfc8414_metadata(
    dot_provider: DotProvider, client: httpx.AsyncClient
) -> None:
    oidc = (await client.get(dot_provider.endpoint("/.well-known/openid-configuration"))).json()
    oauth = (await client.get(dot_provider.endpoint("/.well-known/oauth-authorization-server"))).json()
    assert oidc["issuer"] == oauth["issuer"] == dot_provider.issuer
    assert "revocation_endpoint" not in oidc
    assert oauth["revocation_endpoint"] == dot_provider.revocation_endpoint
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        assert oidc[name] == oauth[name], name
    assert oidc["userinfo_endpoint"] == dot_provider.endpoint("/userinfo/")
    assert oidc["end_session_endpoint"] == dot_provider.endpoint("/logout/")
    assert "userinfo_endpoint" not in oauth and "end_session_endpoint" not in oauth
    assert oidc["code_challenge_methods_supported"] == ["S256"]
    assert oidc["id_token_signing_alg_values_supported"] == ["RS256", "HS256"]
    assert oidc["authorization_response_iss_parameter_supported"] is True  # RFC 9207, gate on in the harness


async def test_sign_in_through_the_login_form_then_code_flow(
    dot_provider: DotProvider, client: httpx.AsyncClient
) -> None:
    user = unique_user("facts")
    authorization = await authorize(client, dot_provider, redirect_uri=callback(), user=user)
    assert authorization.params["state"] == authorization.state
    assert authorization.params["iss"] == dot_provider.issuer
    response = await exchange_code(client, dot_provider, authorization)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["expires_in"] == dot_provider.access_token_ttl
    assert tokens["refresh_token"] and tokens["id_token"]  # a refresh token without offline_access
    assert await userinfo(client, dot_provider, tokens["access_token"]) == 200
    # a second sign-in in the same browser goes straight back with a code (the provider session, no consent)
    again = await authorize(client, dot_provider, redirect_uri=callback(), user=user)
    assert again.code != authorization.code


async def test_no_pkce_is_refused_at_the_authorization_endpoint(
    dot_provider: DotProvider, client: httpx.AsyncClient
) -> None:
    redirect_uri = callback()
    await authorize(client, dot_provider, redirect_uri=redirect_uri, user=unique_user("pkce"))  # signed in
    response = await client.get(
        dot_provider.endpoint(AUTHORIZE_PATH),
        params={
            "client_id": dot_provider.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": "openid",
            "state": "s1",
        },
    )
    assert response.status_code == 302
    location = httpx.URL(response.headers["location"])
    assert str(location).startswith(redirect_uri + "?")
    assert dict(location.params) == {
        "error": "invalid_request",
        "error_description": "Code challenge required.",
        "state": "s1",
    }


# ----------------------------------------------------------------------------------------------------------
# the client mistakes (interop/README.md)


async def test_code_reused_is_invalid_grant_and_the_first_tokens_live_on(
    dot_provider: DotProvider, client: httpx.AsyncClient
) -> None:
    authorization = await authorize(client, dot_provider, redirect_uri=callback(), user=unique_user("reuse"))
    first = await exchange_code(client, dot_provider, authorization)
    assert first.status_code == 200
    tokens = first.json()
    second = await exchange_code(client, dot_provider, authorization)
    assert (second.status_code, second.json()) == (400, INVALID_GRANT)
    # unlike oidc-provider, the tokens of the first exchange are not revoked (RFC 6749 10.5 says SHOULD)
    assert await userinfo(client, dot_provider, tokens["access_token"]) == 200
    assert (await refresh(client, dot_provider, tokens["refresh_token"])).status_code == 200


async def test_code_expired_is_invalid_grant(dot_provider: DotProvider, client: httpx.AsyncClient) -> None:
    authorization = await authorize(client, dot_provider, redirect_uri=callback(), user=unique_user("late"))
    seconds = dot_provider.code_ttl + 1
    await client.post(dot_provider.url("/admin/advance-clock"), params={"seconds": seconds})
    try:
        response = await exchange_code(client, dot_provider, authorization)
    finally:  # the provider is shared: its clock goes back
        await client.post(dot_provider.url("/admin/advance-clock"), params={"seconds": -seconds})
    assert (response.status_code, response.json()) == (400, INVALID_GRANT)


async def test_access_token_dies_at_its_ttl_and_refresh_still_works(
    dot_provider: DotProvider, client: httpx.AsyncClient
) -> None:
    tokens = await tokens_for(client, dot_provider, unique_user("ttl"))
    seconds = dot_provider.access_token_ttl
    await client.post(dot_provider.url("/admin/advance-clock"), params={"seconds": seconds})
    try:
        expired = await userinfo(client, dot_provider, tokens["access_token"])
        refreshed = await refresh(client, dot_provider, tokens["refresh_token"])
        fresh = await userinfo(client, dot_provider, refreshed.json()["access_token"])
    finally:
        await client.post(dot_provider.url("/admin/advance-clock"), params={"seconds": -seconds})
    # no clock tolerance: a 5 s token is refused 5 s after it was issued; its refresh token lives on
    assert (expired, refreshed.status_code, fresh) == (401, 200, 200)


async def test_redirect_uri_mismatch_is_invalid_request_and_keeps_the_code(
    dot_provider: DotProvider, client: httpx.AsyncClient
) -> None:
    authorization = await authorize(client, dot_provider, redirect_uri=callback(), user=unique_user("uri"))
    port = httpx.URL(authorization.redirect_uri).port
    for wrong in (
        authorization.redirect_uri + "/",  # a trailing slash
        authorization.redirect_uri.replace(f":{port}", f":{port + 1}"),  # the port, ignored at /authorize/
        authorization.redirect_uri.replace("127.0.0.1", "localhost"),  # another registered URI
    ):
        response = await exchange_code(client, dot_provider, authorization, redirect_uri=wrong)
        assert (response.status_code, response.json()) == (
            400,
            {"error": "invalid_request", "error_description": "Mismatching redirect URI."},
        ), wrong
    assert (await exchange_code(client, dot_provider, authorization)).status_code == 200  # the code survived


async def test_pkce_verifier_wrong_is_invalid_grant_and_keeps_the_code(
    dot_provider: DotProvider, client: httpx.AsyncClient
) -> None:
    authorization = await authorize(
        client, dot_provider, redirect_uri=callback(), user=unique_user("verifier")
    )
    response = await exchange_code(client, dot_provider, authorization, code_verifier="x" * 43)
    assert (response.status_code, response.json()) == (400, INVALID_GRANT)
    # oauthlib checks the verifier before the code is deleted: the right one still works
    assert (await exchange_code(client, dot_provider, authorization)).status_code == 200


async def test_wrong_client_secret_is_invalid_client_and_keeps_the_code(
    dot_provider: DotProvider, client: httpx.AsyncClient
) -> None:
    authorization = await authorize(client, dot_provider, redirect_uri=callback(), user=unique_user("secret"))
    data = {
        "grant_type": "authorization_code",
        "code": authorization.code,
        "redirect_uri": authorization.redirect_uri,
        "code_verifier": authorization.verifier,
    }
    response = await token_request(client, dot_provider, data, secret="not-the-secret")
    assert (response.status_code, response.json()) == (401, {"error": "invalid_client"})
    # a Bearer challenge on a token endpoint the client authenticated to with Basic
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_client"'
    assert (await exchange_code(client, dot_provider, authorization)).status_code == 200


async def test_refresh_token_reused_after_rotation_revokes_the_family(
    dot_provider: DotProvider, client: httpx.AsyncClient
) -> None:
    tokens = await tokens_for(client, dot_provider, unique_user("rotate"))
    rotated = await refresh(client, dot_provider, tokens["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["refresh_token"] != tokens["refresh_token"] and new["id_token"]
    at = await mark(client, dot_provider)

    reused = await refresh(client, dot_provider, tokens["refresh_token"])
    assert (reused.status_code, reused.json()) == (400, INVALID_GRANT)
    # REFRESH_TOKEN_REUSE_PROTECTION: the whole family dies, the newest tokens included
    assert [
        e["cause"] for e in await events_since(client, dot_provider, at) if e["event"] == "grant.revoked"
    ] == ["reuse"]
    after = await refresh(client, dot_provider, new["refresh_token"])
    assert (after.status_code, after.json()) == (400, INVALID_GRANT)
    assert await userinfo(client, dot_provider, new["access_token"]) == 401


async def test_revoked_grant_is_invalid_grant(dot_provider: DotProvider, client: httpx.AsyncClient) -> None:
    user, bystander = unique_user("revoked"), unique_user("other")
    tokens = await tokens_for(client, dot_provider, user)
    async with httpx.AsyncClient(timeout=10) as other_browser:
        other = await tokens_for(other_browser, dot_provider, bystander)
    await client.post(dot_provider.url("/admin/revoke-grants"), params={"sub": user})
    response = await refresh(client, dot_provider, tokens["refresh_token"])
    assert (response.status_code, response.json()) == (400, INVALID_GRANT)
    assert await userinfo(client, dot_provider, tokens["access_token"]) == 401
    assert (
        await refresh(client, dot_provider, other["refresh_token"])
    ).status_code == 200  # only that user's


async def test_rfc7009_revocation_of_the_refresh_token_ends_the_grant(
    dot_provider: DotProvider, client: httpx.AsyncClient
) -> None:
    user = unique_user("bye")
    tokens = await tokens_for(client, dot_provider, user)
    response = await client.post(
        dot_provider.revocation_endpoint,
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(dot_provider.client_id, dot_provider.client_secret),
    )
    assert (response.status_code, response.content) == (200, b"")
    assert (await refresh(client, dot_provider, tokens["refresh_token"])).json() == INVALID_GRANT
    assert await userinfo(client, dot_provider, tokens["access_token"]) == 401  # its access token went too
    assert (await client.get(dot_provider.url("/admin/grants"), params={"sub": user})).json()["grants"] == []
