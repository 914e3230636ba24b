"""The conformance cases panva's oidc-provider can produce, against the guard (docs/oidc-conformance.md).

- ``rp-key-rotation-op-sign-key``: the provider starts signing with a new key after the guard cached its
  JWKS (``POST /admin/rotate-signing-key``); the next sign-in fetches the JWKS once more and succeeds.
- ``rp-id_token-aud`` through a second client: an ID token the real provider signed for another client,
  with this sign-in's nonce, is put into the guard's token answer (ID token substitution); the guard refuses
  it and makes no session.

The guard runs in-process (``httpx.ASGITransport``) and talks to the provider over loopback HTTP.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import OAuthGuard, current_identity
from asgi_oauth_guard.testing._keys import ec_key, rsa_key

from .conftest import InteropProvider, authorize, running_oidc_provider, unique_user

pytestmark = pytest.mark.anyio

SECRET_KEY = "interop-conformance-secret-key-0123456789"
APP = "http://127.0.0.1"
REDIRECT_URI = APP + "/auth/callback"
SECOND_CLIENT_ID = "interop-second-client"
SECOND_CLIENT_SECRET = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def idp() -> Iterator[InteropProvider]:
    """A provider of this module's own (it rotates its keys), with a second client registered."""
    extra = {"SECOND_CLIENT_ID": SECOND_CLIENT_ID, "SECOND_CLIENT_SECRET": SECOND_CLIENT_SECRET}
    with running_oidc_provider(access_token_ttl=300, extra_env=extra) as provider:
        yield provider


async def whoami(request: Request) -> JSONResponse:
    identity = current_identity()
    return JSONResponse({"user": identity.sub if identity else None})


def build_guard(
    idp: InteropProvider,
    made: list[httpx.AsyncClient],
    transport: httpx.AsyncBaseTransport | None = None,
    **settings: Any,
) -> OAuthGuard:
    http = httpx.AsyncClient(transport=transport or httpx.AsyncHTTPTransport(), timeout=10)
    made.append(http)
    return OAuthGuard(
        Starlette(routes=[Route("/me", whoami)]),
        issuer=idp.issuer,
        client_id=idp.client_id,
        client_secret=idp.client_secret,
        secret_key=SECRET_KEY,
        redirect_uri=REDIRECT_URI,
        scopes=["openid", "email"],
        require_login=["/me"],
        http_client=http,
        **settings,
    )


@pytest.fixture
async def clients() -> AsyncIterator[list[httpx.AsyncClient]]:
    made: list[httpx.AsyncClient] = []
    yield made
    for client in made:
        await client.aclose()


def browsers(guard: OAuthGuard, made: list[httpx.AsyncClient]) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    browser = httpx.AsyncClient(
        transport=httpx.ASGITransport(guard), base_url=APP, headers={"accept": "text/html"}
    )
    idp_browser = httpx.AsyncClient(timeout=10)  # the same browser, at the provider (its own cookies)
    made += [browser, idp_browser]
    return browser, idp_browser


async def at_provider(idp_browser: httpx.AsyncClient, url: str, redirect_uri: str, max_hops: int = 8) -> str:
    """Follow the provider's redirects (login, consent) until it sends the browser to redirect_uri."""
    for _ in range(max_hops):
        response = await idp_browser.get(url, follow_redirects=False)
        assert response.is_redirect, f"{response.status_code}: {response.text[:300]}"
        url = urljoin(url, response.headers["location"])
        if url.split("?", 1)[0] == redirect_uri:
            return url
    raise AssertionError(f"no redirect to {redirect_uri}")


async def sign_in(browser: httpx.AsyncClient, idp_browser: httpx.AsyncClient, user: str) -> httpx.Response:
    login = await browser.get("/auth/login", params={"next": "/me"})
    assert login.status_code == 303
    target = httpx.URL(login.headers["location"]).copy_merge_params({"login_hint": user})
    callback = await at_provider(idp_browser, str(target), REDIRECT_URI)
    return await browser.get(callback.removeprefix(APP))


async def jwks_fetches(idp: InteropProvider) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        events = (await client.get(idp.url("/admin/events"))).json()["events"]
    return sum(1 for e in events if e.get("event") == "request" and e.get("path") == "/jwks")


async def test_rp_key_rotation_op_sign_key_against_oidc_provider(
    idp: InteropProvider, clients: list[httpx.AsyncClient]
) -> None:
    guard = build_guard(idp, clients)
    first = browsers(guard, clients)
    done = await sign_in(*first, unique_user("rot"))
    assert done.status_code == 303 and done.headers["location"] == "/me", done.text
    fetched = await jwks_fetches(idp)
    async with httpx.AsyncClient(timeout=5) as admin:
        rotated = await admin.post(idp.url("/admin/rotate-signing-key"))
    assert rotated.status_code == 200 and len(rotated.json()["kids"]) >= 2
    second = browsers(guard, clients)
    done = await sign_in(*second, unique_user("rot"))
    assert done.status_code == 303 and done.headers["location"] == "/me", done.text
    assert (await second[0].get("/me")).json()["user"].startswith("rot-")
    assert await jwks_fetches(idp) == fetched + 1  # the new kid: one refetch
    third = browsers(guard, clients)
    done = await sign_in(*third, unique_user("rot"))
    assert done.status_code == 303 and done.headers["location"] == "/me"
    assert await jwks_fetches(idp) == fetched + 1  # known now: none


class SubstitutingTransport(httpx.AsyncBaseTransport):
    """Forwards to the provider; puts ``id_token`` into the answer of the next code exchange."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.id_token: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if self.id_token is None or not request.url.path.endswith("/token"):
            return response
        body: dict[str, Any] = json.loads(await response.aread())
        body["id_token"], self.id_token = self.id_token, None
        return httpx.Response(response.status_code, json=body)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_rp_id_token_aud_through_a_second_client(
    idp: InteropProvider, clients: list[httpx.AsyncClient]
) -> None:
    transport = SubstitutingTransport()
    guard = build_guard(idp, clients, transport)
    browser, idp_browser = browsers(guard, clients)
    user = unique_user("aud")
    login = await browser.get("/auth/login", params={"next": "/me"})
    nonce = parse_qs(urlsplit(login.headers["location"]).query)["nonce"][0]

    # the same user signs in to the second client with this sign-in's nonce: a genuine ID token, for it
    async with httpx.AsyncClient(timeout=10) as other:
        other_idp = InteropProvider(
            issuer=idp.issuer, client_id=SECOND_CLIENT_ID, client_secret=SECOND_CLIENT_SECRET, port=idp.port
        )
        code = await authorize(
            other, other_idp, redirect_uri=REDIRECT_URI, scope="openid", login_hint=user, nonce=nonce
        )
        answer = await other.post(
            idp.url("/token"),
            data={
                "grant_type": "authorization_code",
                "code": code.code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": code.verifier,
            },
            auth=(SECOND_CLIENT_ID, SECOND_CLIENT_SECRET),
        )
    assert answer.status_code == 200, answer.text
    transport.id_token = answer.json()["id_token"]

    target = httpx.URL(login.headers["location"]).copy_merge_params({"login_hint": user})
    callback = await at_provider(idp_browser, str(target), REDIRECT_URI)
    done = await browser.get(callback.removeprefix(APP))
    assert done.status_code == 303
    location = parse_qs(urlsplit(done.headers["location"]).query)
    assert done.headers["location"].startswith("/auth/login?") and location["reason"] == ["access_denied"]
    assert not any(v.startswith("guard_session=") for v in done.headers.get_list("set-cookie"))
    me = await browser.get("/me")
    assert me.status_code == 303 and "reason=login_required" in me.headers["location"]
    assert transport.id_token is None  # the substitution happened


@pytest.mark.parametrize(
    ("alg", "settings"),
    [("ES256", {}), ("HS256", {"id_token_signed_response_alg": "HS256"})],
    ids=["rp-id_token-sig-es256", "rp-id_token-sig-hs256"],
)
async def test_id_tokens_signed_with_es256_and_hs256_by_oidc_provider(
    alg: str, settings: dict[str, Any], clients: list[httpx.AsyncClient]
) -> None:
    """The client registered for ES256 (a published EC key) or HS256 (its secret): the guard signs in.
    HS256 without id_token_signed_response_alg is refused."""
    with running_oidc_provider(extra_env={"ID_TOKEN_ALG": alg}) as idp:
        guard = build_guard(idp, clients, **settings)
        browser, idp_browser = browsers(guard, clients)
        done = await sign_in(browser, idp_browser, unique_user(alg.lower()))
        assert done.status_code == 303 and done.headers["location"] == "/me", done.text
        assert (await browser.get("/me")).json()["user"].startswith(alg.lower())
        if alg == "HS256":
            unregistered = build_guard(idp, clients)
            browser, idp_browser = browsers(unregistered, clients)
            done = await sign_in(browser, idp_browser, unique_user("hs"))
            assert done.status_code == 303 and "reason=access_denied" in done.headers["location"]


@pytest.mark.parametrize("kind", ["RSA", "EC"])
async def test_rp_token_endpoint_private_key_jwt_against_oidc_provider(
    kind: str, clients: list[httpx.AsyncClient]
) -> None:
    """oidc-provider verifies the guard's RFC 7523 assertions (its own checks: signature, iss, sub, aud,
    exp, jti replay) at the token and revocation endpoints."""
    key = rsa_key("client") if kind == "RSA" else ec_key("client")
    public = json.dumps({"keys": [key.as_dict(private=False)]})
    with running_oidc_provider(extra_env={"CLIENT_JWKS": public}) as idp:
        settings = {"client_auth": "private_key_jwt", "client_key": key.as_dict(private=True)}
        guard = OAuthGuard(
            Starlette(routes=[Route("/me", whoami)]),
            issuer=idp.issuer,
            client_id=idp.client_id,
            secret_key=SECRET_KEY,
            redirect_uri=REDIRECT_URI,
            scopes=["openid", "offline_access"],
            authorize_params={"prompt": "consent"},
            require_login=["/me"],
            http_client=(http := httpx.AsyncClient(timeout=10)),
            **settings,
        )
        clients.append(http)
        for _ in range(2):  # two assertions: a new jti each time, or the second is refused
            browser, idp_browser = browsers(guard, clients)
            done = await sign_in(browser, idp_browser, unique_user("pkj"))
            assert done.status_code == 303 and done.headers["location"] == "/me", done.text
            assert (await browser.get("/me")).json()["user"].startswith("pkj-")
        logout = await browser.post("/auth/logout", headers={"origin": APP})
        assert logout.status_code == 303
        async with httpx.AsyncClient(timeout=5) as admin:
            events = (await admin.get(idp.url("/admin/events"))).json()["events"]
        assert [e["grant_type"] for e in events if e["event"] == "grant.success"] == [
            "authorization_code",
            "authorization_code",
        ]
        assert not [e for e in events if e["event"] == "grant.error"]
        assert [e for e in events if e["event"] == "grant.revoked"]  # RFC 7009, authenticated the same way
