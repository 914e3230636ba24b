"""Discovery that fills gaps: an OpenID document without ``revocation_endpoint`` is completed by the provider's
RFC 8414 metadata (django-oauth-toolkit publishes it only there), so sign-out revokes; without one, the
sign-out that cannot revoke says so once in the log. The real django-oauth-toolkit: tests/interop/test_dot_guard.py.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from asgi_oauth_guard import MemoryStore, OAuthGuard, Provider
from asgi_oauth_guard.providers._discovery import (
    fill_gaps,
    gaps,
    oauth_metadata_url,
    oauth_metadata_urls,
    oidc_metadata_url,
)
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from .conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    ISSUER,
    SECRET_KEY,
    BrowserFactory,
    GuardFactory,
    inner_app,
    login,
)

pytestmark = pytest.mark.anyio

OIDC = "/.well-known/openid-configuration"
OAUTH = "/.well-known/oauth-authorization-server"
CANNOT_REVOKE = "sign-out cannot revoke tokens at provider 'default' (https://idp.example.test)"


class TwoDocuments(httpx.AsyncBaseTransport):
    """The embedded provider with an OpenID document that lacks ``revocation_endpoint`` (unless ``complete``),
    and ``oauth`` answering its RFC 8414 metadata. Counts the requests for each path."""

    def __init__(
        self,
        provider: OAuthTestProvider,
        oauth: Callable[[httpx.Request], httpx.Response],
        *,
        complete: bool = False,
    ) -> None:
        self.provider = provider
        self.inner = provider.transport()
        self.oauth = oauth
        self.complete = complete
        self.requests: collections.Counter[str] = collections.Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests[f"{request.url.host}{request.url.path}"] += 1
        if request.url.path == OIDC:
            document = self.provider.metadata
            if not self.complete:
                del document["revocation_endpoint"]
            return httpx.Response(200, json=document)
        if request.url.path == OAUTH:
            return self.oauth(request)
        return await self.inner.handle_async_request(request)


def rfc8414(provider: OAuthTestProvider, **changes: Any) -> Callable[[httpx.Request], httpx.Response]:
    """An RFC 8414 document as django-oauth-toolkit's: no userinfo or end-session endpoint, a revocation one."""
    meta = provider.metadata
    document = {
        "issuer": meta["issuer"],
        "authorization_endpoint": meta["authorization_endpoint"],
        "token_endpoint": meta["token_endpoint"],
        "revocation_endpoint": meta["revocation_endpoint"],
        "jwks_uri": meta["jwks_uri"],
        "code_challenge_methods_supported": ["S256"],
        **changes,
    }
    return lambda request: httpx.Response(200, json=document)


@pytest.fixture
async def http() -> AsyncIterator[list[httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []
    yield clients
    for client in clients:
        await client.aclose()


def guard_with(
    guard_factory: GuardFactory, http: list[httpx.AsyncClient], transport: TwoDocuments, **settings: Any
) -> Any:
    client = httpx.AsyncClient(transport=transport)
    http.append(client)
    return guard_factory(http_client=client, **settings)


async def sign_in_and_out(browser: httpx.AsyncClient, provider: OAuthTestProvider) -> str:
    """A login and a sign-out; returns the access token the session held."""
    await login(browser, provider, "/me")
    token = str((await browser.get("/me")).json()["access_token"])
    out = await browser.post("/auth/logout", headers={"origin": "http://app.test"})
    assert out.status_code == 303 and out.headers["location"] == "/"
    return token


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "asgi_oauth_guard" and r.levelno == logging.WARNING and text in r.getMessage()
    ]


# ----------------------------------------------------------------------------------------------------------


async def test_the_rfc8414_document_completes_the_openid_one_and_sign_out_revokes(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    http: list[httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = TwoDocuments(provider, rfc8414(provider))
    guard = guard_with(guard_factory, http, transport)
    for _ in range(2):
        token = await sign_in_and_out(browser_factory(guard), provider)
        assert not provider.grant_alive(token)
    assert provider.count(endpoint="revoke") == 2
    # each document read once, whatever the number of sign-ins
    assert transport.requests[f"idp.example.test{OIDC}"] == 1
    assert transport.requests[f"idp.example.test{OAUTH}"] == 1
    assert warnings(caplog, "cannot revoke") == []


async def test_an_openid_document_with_a_revocation_endpoint_needs_no_other(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    http: list[httpx.AsyncClient],
) -> None:
    transport = TwoDocuments(provider, rfc8414(provider), complete=True)
    token = await sign_in_and_out(browser_factory(guard_with(guard_factory, http, transport)), provider)
    assert not provider.grant_alive(token)
    assert transport.requests[f"idp.example.test{OAUTH}"] == 0


async def test_an_endpoint_given_completes_discovery_and_no_other_document_is_read(
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    http: list[httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the RFC 8414 document would name another revocation endpoint: it is not even asked for
    transport = TwoDocuments(provider, rfc8414(provider, revocation_endpoint=f"{ISSUER}/not-this-one"))
    client = httpx.AsyncClient(transport=transport)
    http.append(client)
    guard = OAuthGuard(
        inner_app(),
        providers=[
            Provider(
                name="idp",
                issuer=ISSUER,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                revocation_endpoint=provider.metadata["revocation_endpoint"],
            )
        ],
        secret_key=SECRET_KEY,
        http_client=client,
        clock=clock,
        store=MemoryStore(clock=clock),
        require_login=["/me"],
    )
    token = await sign_in_and_out(browser_factory(guard), provider)
    assert not provider.grant_alive(token) and provider.count(endpoint="revoke") == 1
    assert transport.requests[f"idp.example.test{OAUTH}"] == 0
    assert transport.requests[f"idp.example.test{OIDC}"] == 1  # the rest still comes from discovery
    assert warnings(caplog, "cannot revoke") == []


async def test_without_rfc8414_metadata_sign_out_says_once_that_it_cannot_revoke(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    http: list[httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = TwoDocuments(provider, lambda request: httpx.Response(404, text="Not Found"))
    guard = guard_with(guard_factory, http, transport)
    tokens = [await sign_in_and_out(browser_factory(guard), provider) for _ in range(3)]
    assert provider.count(endpoint="revoke") == 0
    assert all(provider.grant_alive(token) for token in tokens)  # nothing revoked, nothing pretended
    [said] = warnings(caplog, "cannot revoke")  # once, not once per sign-out
    assert said.startswith(CANNOT_REVOKE) and "give the endpoint" in said
    assert transport.requests[f"idp.example.test{OAUTH}"] == 1


async def test_rfc8414_metadata_of_another_issuer_is_not_used(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    http: list[httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    elsewhere = rfc8414(
        provider, issuer="https://other.example.test", revocation_endpoint="https://other.example.test/r"
    )
    transport = TwoDocuments(provider, elsewhere)
    token = await sign_in_and_out(browser_factory(guard_with(guard_factory, http, transport)), provider)
    assert provider.grant_alive(token)
    assert not any(key.startswith("other.example.test") for key in transport.requests), transport.requests
    assert warnings(caplog, "names another issuer: not used")
    assert warnings(caplog, "cannot revoke")


async def test_an_unreachable_rfc8414_document_does_not_stop_sign_in(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    http: list[httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    transport = TwoDocuments(provider, down)
    await sign_in_and_out(browser_factory(guard_with(guard_factory, http, transport)), provider)
    [said] = warnings(caplog, "RFC 8414 metadata at")
    assert "ConnectError" in said and "revocation_endpoint" in said


# ----------------------------------------------------------------------------------------------------------
# the pure parts


@pytest.mark.parametrize(
    ("issuer", "oidc", "oauth"),
    [
        (ISSUER, f"{ISSUER}{OIDC}", f"{ISSUER}{OAUTH}"),
        (f"{ISSUER}/", f"{ISSUER}{OIDC}", f"{ISSUER}{OAUTH}"),
        # RFC 8414 section 3.1 puts the well-known segment before the issuer's path; OIDC after it
        (f"{ISSUER}/realms/app", f"{ISSUER}/realms/app{OIDC}", f"{ISSUER}{OAUTH}/realms/app"),
        ("http://127.0.0.1:8000/o/", f"http://127.0.0.1:8000/o{OIDC}", f"http://127.0.0.1:8000{OAUTH}/o"),
    ],
)
def test_well_known_urls(issuer: str, oidc: str, oauth: str) -> None:
    assert oidc_metadata_url(issuer) == oidc
    assert oauth_metadata_url(issuer) == oauth
    # for an issuer with a path, the document beside the issuer is tried second (a server mounted there)
    beside = issuer.rstrip("/") + OAUTH
    assert oauth_metadata_urls(issuer) == ((oauth,) if beside == oauth else (oauth, beside))


def test_the_openid_document_wins_and_only_gaps_are_filled() -> None:
    primary = {"issuer": ISSUER, "token_endpoint": f"{ISSUER}/token", "userinfo_endpoint": None}
    secondary = {
        "issuer": ISSUER,
        "token_endpoint": f"{ISSUER}/other-token",
        "revocation_endpoint": f"{ISSUER}/revoke",
        "userinfo_endpoint": f"{ISSUER}/me",
    }
    assert fill_gaps(primary, secondary) == {
        "issuer": ISSUER,
        "token_endpoint": f"{ISSUER}/token",
        "revocation_endpoint": f"{ISSUER}/revoke",
        "userinfo_endpoint": f"{ISSUER}/me",
    }
    assert fill_gaps(primary, {**secondary, "issuer": f"{ISSUER}/"}) is None  # not even a slash apart
    assert gaps(primary, {}) == ("revocation_endpoint",)
    assert gaps(primary, {"revocation_endpoint": f"{ISSUER}/r"}) == ()  # given: nothing to look for
    assert gaps({**primary, "revocation_endpoint": ""}, {}) == ("revocation_endpoint",)
