"""Client authentication beyond a shared secret, and Pushed Authorization Requests, against oidc-provider.

panva's oidc-provider checks each request on its own terms: RFC 7523 assertions (signature against the
registered JWK set, iss, sub, aud, exp, jti replay) for the ``private_key_jwt`` client; for the public
client (``token_endpoint_auth_method: none``) that no secret comes and PKCE binds the code; RFC 9126 pushed
requests (client authentication at the PAR endpoint, a one-time ``request_uri``; with
``requirePushedAuthorizationRequests`` every plain request refused). Each client signs in, refreshes twice
(rotation: the second refresh sends the first one's new token) and signs out (RFC 7009, authenticated the
same way); the provider's journal says what it saw.

The guard runs in-process and reads a clock that the test moves with the provider's
(``/admin/advance-clock``), so expiry needs no sleep.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import OAuthGuard, Provider, current_identity
from asgi_oauth_guard.testing._keys import rsa_key

from .conftest import InteropProvider, running_oidc_provider, unique_user

pytestmark = pytest.mark.anyio

SECRET_KEY = "interop-client-auth-secret-key-0123456789"
APP = "http://127.0.0.1"
REDIRECT_URI = APP + "/auth/callback"
KEY_CLIENT_ID = "interop-key-client"
PUBLIC_CLIENT_ID = "interop-public-client"
KEY = rsa_key("key-client")


def _extra_clients(**more: str) -> dict[str, str]:
    return {
        "KEY_CLIENT_ID": KEY_CLIENT_ID,
        "KEY_CLIENT_JWKS": json.dumps({"keys": [KEY.as_dict(private=False)]}),
        "PUBLIC_CLIENT_ID": PUBLIC_CLIENT_ID,
        **more,
    }


@pytest.fixture(scope="module")
def idp() -> Iterator[InteropProvider]:
    """Pushed requests allowed, not required; its clock is moved by these tests only."""
    with running_oidc_provider(extra_env=_extra_clients()) as provider:
        yield provider


@pytest.fixture(scope="module")
def par_idp() -> Iterator[InteropProvider]:
    """Every client must push its authorization requests (the metadata says so)."""
    with running_oidc_provider(extra_env=_extra_clients(PAR_REQUIRED="1")) as provider:
        yield provider


class MovableClock:
    """The real time, plus what the test moved the provider's clock by."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def whoami(request: Request) -> JSONResponse:
    identity = current_identity()
    if identity is None:
        return JSONResponse({"user": None})
    return JSONResponse({"user": identity.sub, "refreshes": identity.refreshes})


@pytest.fixture
async def made() -> AsyncIterator[list[httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []
    yield clients
    for client in clients:
        await client.aclose()


def registration(kind: str, idp: InteropProvider) -> tuple[str, dict[str, Any]]:
    """The client ID and the guard's client settings for one of the provider's clients."""
    if kind == "key":
        return KEY_CLIENT_ID, {"client_auth": "private_key_jwt", "client_key": KEY.as_dict(private=True)}
    if kind == "public":
        return PUBLIC_CLIENT_ID, {"client_auth": "none"}
    return idp.client_id, {"client_secret": idp.client_secret}


def guard_for(
    idp: InteropProvider,
    kind: str,
    made: list[httpx.AsyncClient],
    clock: MovableClock,
    *,
    use_par: bool | None = None,
) -> OAuthGuard:
    client_id, settings = registration(kind, idp)
    http = httpx.AsyncClient(timeout=10)
    made.append(http)
    return OAuthGuard(
        Starlette(routes=[Route("/me", whoami)]),
        provider=Provider(issuer=idp.issuer, use_par=use_par),
        client_id=client_id,
        secret_key=SECRET_KEY,
        redirect_uri=REDIRECT_URI,
        scopes=["openid", "offline_access"],
        authorize_params={"prompt": "consent"},  # oidc-provider issues refresh tokens at a consent
        require_login=["/me"],
        http_client=http,
        clock=clock,
        **settings,
    )


def browsers(guard: OAuthGuard, made: list[httpx.AsyncClient]) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    browser = httpx.AsyncClient(
        transport=httpx.ASGITransport(guard), base_url=APP, headers={"accept": "text/html"}
    )
    idp_browser = httpx.AsyncClient(timeout=10)  # the same browser, at the provider (its own cookies)
    made += [browser, idp_browser]
    return browser, idp_browser


async def at_provider(idp_browser: httpx.AsyncClient, url: str, max_hops: int = 8) -> str:
    """Follow the provider's redirects (login, consent) until it sends the browser to the callback."""
    for _ in range(max_hops):
        response = await idp_browser.get(url, follow_redirects=False)
        assert response.is_redirect, f"{response.status_code}: {response.text[:300]}"
        url = urljoin(url, response.headers["location"])
        if url.split("?", 1)[0] == REDIRECT_URI:
            return url
    raise AssertionError(f"no redirect to {REDIRECT_URI}")


async def events_since(idp: InteropProvider, since: int, client_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as admin:
        body = (await admin.get(idp.url("/admin/events"), params={"since": since})).json()
    return [e for e in body["events"] if e.get("client_id") == client_id]


async def journal_next(idp: InteropProvider) -> int:
    async with httpx.AsyncClient(timeout=5) as admin:
        return int((await admin.get(idp.url("/admin/events"))).json()["next"])


async def sign_in_refresh_sign_out(
    idp: InteropProvider, guard: OAuthGuard, made: list[httpx.AsyncClient], clock: MovableClock
) -> tuple[str, list[dict[str, Any]]]:
    """The whole life of one session; returns the login's Location and the provider's journal of it."""
    client_id = guard.client.client_id
    since = await journal_next(idp)
    browser, idp_browser = browsers(guard, made)
    user = unique_user("ca")
    login = await browser.get("/auth/login", params={"next": "/me"})
    assert login.status_code == 303, login.text
    target = httpx.URL(login.headers["location"])
    if "request_uri" not in target.params:  # the hint rides in the pushed request otherwise
        target = target.copy_merge_params({"login_hint": user})
    done = await browser.get((await at_provider(idp_browser, str(target))).removeprefix(APP))
    assert done.status_code == 303 and done.headers["location"] == "/me", done.text
    me = (await browser.get("/me")).json()
    assert me["refreshes"] == 0 and me["user"]
    for refreshes in (1, 2):  # past the 5 s access token, at both ends
        await idp.aadvance_clock(idp.access_token_ttl + 1)
        clock.offset += idp.access_token_ttl + 1
        me = (await browser.get("/me")).json()
        assert me["refreshes"] == refreshes, me
    signed_out = await browser.post("/auth/logout", headers={"origin": APP})
    assert signed_out.status_code == 303
    after = await browser.get("/me")
    assert after.status_code == 303 and "/auth/login" in after.headers["location"]
    return login.headers["location"], await events_since(idp, since, client_id)


def assert_the_provider_saw_one_life(events: list[dict[str, Any]]) -> None:
    grants = [e["grant_type"] for e in events if e["event"] == "grant.success"]
    assert grants == ["authorization_code", "refresh_token", "refresh_token"], events
    assert not [e for e in events if e["event"] in ("grant.error", "par.error")], events
    # RFC 7009: the guard revoked the newest refresh token, authenticated as the client (or, public, named)
    assert [e for e in events if e["event"] == "grant.revoked"], events


@pytest.mark.parametrize(
    ("kind", "use_par"),
    [("key", None), ("public", None), ("key", True)],
    ids=["private_key_jwt", "public", "private_key_jwt-par-on-request"],
)
async def test_a_client_without_a_shared_secret_signs_in_refreshes_and_signs_out(
    idp: InteropProvider, made: list[httpx.AsyncClient], kind: str, use_par: bool | None
) -> None:
    clock = MovableClock()
    guard = guard_for(idp, kind, made, clock, use_par=use_par)
    location, events = await sign_in_refresh_sign_out(idp, guard, made, clock)
    assert_the_provider_saw_one_life(events)
    pushed = [e for e in events if e["event"] == "par.success"]
    assert len(pushed) == (1 if use_par else 0)
    assert ("request_uri" in parse_qs(urlsplit(location).query)) is bool(use_par)


@pytest.mark.parametrize("kind", ["secret", "public"])  # private_key_jwt + PAR: above
async def test_a_provider_that_requires_pushed_requests_gets_them_from_secret_and_public_clients(
    par_idp: InteropProvider, made: list[httpx.AsyncClient], kind: str
) -> None:
    clock = MovableClock()
    guard = guard_for(par_idp, kind, made, clock)  # use_par=None: the metadata decides
    location, events = await sign_in_refresh_sign_out(par_idp, guard, made, clock)
    assert_the_provider_saw_one_life(events)
    assert [e["event"] for e in events if e["event"].startswith("par.")] == ["par.success"]
    sent = parse_qs(urlsplit(location).query)
    assert set(sent) == {"client_id", "request_uri"}
    # RFC 9126 section 4: oidc-provider takes a request_uri once; the same link again is refused
    async with httpx.AsyncClient(timeout=10) as other_browser:
        again = await other_browser.get(location, follow_redirects=False)
    assert again.status_code == 400 and again.json()["error"] == "invalid_request_uri", again.text


async def test_such_a_provider_refuses_a_request_that_was_not_pushed(par_idp: InteropProvider) -> None:
    """The fact the test above rests on: with the requirement on, a plain authorization request fails."""
    plain = {
        "client_id": PUBLIC_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "s" * 16,
        "code_challenge": "c" * 43,
        "code_challenge_method": "S256",
    }
    async with httpx.AsyncClient(timeout=10) as browser:
        answer = await browser.get(par_idp.url("/auth"), params=plain, follow_redirects=False)
    assert answer.is_redirect, answer.text  # its redirect URI is registered: the error goes back there
    refused = parse_qs(urlsplit(answer.headers["location"]).query)
    assert refused["error"] == ["invalid_request"] and "code" not in refused, refused
