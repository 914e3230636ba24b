"""Discovery, JWKS, userinfo, revocation (RFC 7009) and RP-initiated logout, and where they are served."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from asgi_oauth_guard.testing import OAuthTestProvider

pytestmark = pytest.mark.anyio

# discovery and keys


async def test_discovery_document(client, provider) -> None:
    response = await client.get("/.well-known/openid-configuration")

    assert response.status_code == 200
    doc = response.json()
    assert doc == provider.metadata
    base = "https://idp.example.test"
    assert doc["issuer"] == base
    for key, path in {
        "authorization_endpoint": "/authorize",
        "token_endpoint": "/token",
        "userinfo_endpoint": "/userinfo",
        "jwks_uri": "/jwks",
        "revocation_endpoint": "/revoke",
        "end_session_endpoint": "/end_session",
    }.items():
        assert doc[key] == base + path
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert set(doc["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert "openid" in doc["scopes_supported"]
    assert doc["authorization_response_iss_parameter_supported"] is True


async def test_metadata_is_a_copy(provider) -> None:
    provider.metadata["issuer"] = "changed"
    provider.metadata["scopes_supported"].append("changed")
    assert provider.metadata["issuer"] == provider.issuer
    assert "changed" not in provider.metadata["scopes_supported"]


async def test_jwks_publishes_the_signing_key_with_its_kid(flow, client) -> None:
    keys = (await client.get("/jwks")).json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "RSA"
    assert keys[0]["kid"]
    assert "d" not in keys[0]
    id_token = (await flow.tokens())["id_token"]
    from joserfc import jws

    header = jws.extract_compact(id_token.encode()).protected
    assert header["kid"] == keys[0]["kid"]
    assert header["alg"] == "RS256"


async def test_one_key_per_process(client) -> None:
    other = OAuthTestProvider(issuer="https://other.example.test")
    async with httpx.AsyncClient(transport=other.transport()) as other_client:
        theirs = (await other_client.get("https://other.example.test/jwks")).json()
    assert theirs == (await client.get("/jwks")).json()


# where it is served


async def test_issuer_with_a_path_serves_under_that_path(make_flow) -> None:
    provider = OAuthTestProvider(issuer="http://localhost:8000/idp")
    flow = make_flow(provider)
    doc = (await flow.client.get("http://localhost:8000/idp/.well-known/openid-configuration")).json()
    assert doc["token_endpoint"] == "http://localhost:8000/idp/token"

    tokens = await flow.tokens()
    assert (await flow.userinfo(tokens["access_token"])).json()["sub"] == "alice"
    assert (
        await flow.client.get("http://localhost:8000/.well-known/openid-configuration")
    ).status_code == 200
    assert [c.endpoint for c in provider.calls] == [
        "discovery",
        "authorize",
        "token",
        "userinfo",
        "discovery",
    ]


async def test_mounted_in_starlette_respects_root_path(make_flow) -> None:
    provider = OAuthTestProvider(issuer="http://testserver/idp")
    app = Starlette(
        routes=[
            Route("/", lambda request: PlainTextResponse("home")),
            Mount("/idp", app=provider),
        ]
    )
    flow = make_flow(provider)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        flow.client = client
        doc = (await client.get("/idp/.well-known/openid-configuration")).json()
        assert doc["issuer"] == "http://testserver/idp"
        params = flow.authorize_params()
        redirect = await client.get(flow.authorize_url(params))
        assert redirect.status_code == 302
        tokens = (await flow.exchange(flow.login_from(redirect.headers["location"], params))).json()
        assert (await flow.userinfo(tokens["access_token"])).status_code == 200
        assert (await client.get("/")).text == "home"


async def test_mounted_anywhere_routes_by_root_path() -> None:
    provider = OAuthTestProvider(issuer="https://idp.example.test")
    app = Starlette(routes=[Mount("/outer", routes=[Mount("/provider", app=provider)])])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        assert (await client.get("/outer/provider/jwks")).status_code == 200
        assert (await client.get("/outer/provider/.well-known/openid-configuration")).status_code == 200
        assert (await client.get("/outer/jwks")).status_code == 404
    assert [c.endpoint for c in provider.calls] == ["jwks", "discovery"]


async def test_unknown_paths_are_404_and_recorded(client, provider) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert provider.calls[-1].endpoint == "unknown"


async def test_lifespan_and_websocket_scopes() -> None:
    provider = OAuthTestProvider()
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, object]] = []

    async def receive():
        return incoming.pop(0)

    async def send(message):
        sent.append(message)

    await provider({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    sent.clear()
    await provider({"type": "websocket", "path": "/token", "headers": []}, receive, send)
    assert sent[0]["type"] == "websocket.close"


# userinfo


async def test_userinfo_answers_the_claims_of_the_granted_scopes(flow) -> None:
    full = await flow.tokens()
    response = await flow.userinfo(full["access_token"])
    assert response.status_code == 200
    assert response.json()["email"] == "alice@example.test"
    assert response.json()["name"] == "Alice"

    narrow = await flow.tokens(scope="openid")
    assert (await flow.userinfo(narrow["access_token"])).json() == {"sub": "alice"}
    post = await flow.client.post("/userinfo", headers={"Authorization": f"Bearer {full['access_token']}"})
    assert post.json()["sub"] == "alice"


@pytest.mark.parametrize("token", ["not-a-token", "", "  "])
async def test_userinfo_refuses_bad_tokens_with_www_authenticate(client, token: str) -> None:
    response = await client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    if token.strip():
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert response.json()["error"] == "invalid_token"


async def test_userinfo_without_a_token_is_401(client) -> None:
    response = await client.get("/userinfo")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_userinfo_refuses_revoked_tokens(flow, provider) -> None:
    tokens = await flow.tokens()
    provider.revoke_grants("alice")
    response = await flow.userinfo(tokens["access_token"])
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


# revocation


async def _revoke(flow, token: str, **extra):
    data = {"token": token, **extra}
    return await flow.client.post("/revoke", data=data, auth=("guard-client", "guard-secret"))


async def test_revoking_a_refresh_token_revokes_its_grant(flow, provider) -> None:
    tokens = await flow.tokens()
    other = await flow.tokens()

    response = await _revoke(flow, tokens["refresh_token"], token_type_hint="refresh_token")

    assert response.status_code == 200
    assert not provider.grant_alive(tokens["access_token"])
    assert (await flow.userinfo(tokens["access_token"])).status_code == 401
    flow.assert_invalid_grant(await flow.refresh(tokens["refresh_token"]))
    assert (await flow.refresh(other["refresh_token"])).status_code == 200


async def test_revoking_an_access_token_revokes_only_that_token(flow, provider) -> None:
    tokens = await flow.tokens()
    assert (await _revoke(flow, tokens["access_token"])).status_code == 200
    assert (await flow.userinfo(tokens["access_token"])).status_code == 401
    assert provider.grant_alive(tokens["refresh_token"])
    assert (await flow.refresh(tokens["refresh_token"])).status_code == 200


async def test_revoking_an_unknown_token_is_still_200(flow) -> None:
    assert (await _revoke(flow, "never-issued")).status_code == 200


async def test_revocation_needs_client_authentication_and_a_token(flow) -> None:
    tokens = await flow.tokens()
    response = await flow.client.post("/revoke", data={"token": tokens["refresh_token"]})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert (await flow.refresh(tokens["refresh_token"])).status_code == 200
    missing = await flow.client.post("/revoke", data={}, auth=("guard-client", "guard-secret"))
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


# end_session


async def test_end_session_redirects_to_post_logout_redirect_uri_with_state(flow) -> None:
    id_token = (await flow.tokens())["id_token"]
    params = {
        "id_token_hint": id_token,
        "post_logout_redirect_uri": "https://app.example.test/bye",
        "state": "st",
    }
    response = await flow.client.get("/end_session", params=params)
    assert response.status_code == 302
    assert response.headers["location"] == "https://app.example.test/bye?state=st"


async def test_end_session_without_a_redirect_shows_signed_out(client) -> None:
    response = await client.get("/end_session")
    assert response.status_code == 200
    assert "Signed out" in response.text


@pytest.mark.parametrize(
    "params",
    [
        {"id_token_hint": "garbage"},
        {"post_logout_redirect_uri": "https://app.example.test/bye"},
        {"client_id": "guard-client", "post_logout_redirect_uri": "javascript:alert(1)"},
        {"client_id": "someone-else"},
    ],
)
async def test_end_session_refuses_what_it_cannot_trust(client, params) -> None:
    response = await client.get("/end_session", params=params)
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_end_session_allow_list(make_flow) -> None:
    flow = make_flow(OAuthTestProvider(post_logout_redirect_uris=["https://app.example.test/bye"]))
    ok = {"client_id": "guard-client", "post_logout_redirect_uri": "https://app.example.test/bye"}
    assert (await flow.client.get("/end_session", params=ok)).status_code == 302
    bad = {**ok, "post_logout_redirect_uri": "https://app.example.test/elsewhere"}
    assert (await flow.client.get("/end_session", params=bad)).status_code == 400
