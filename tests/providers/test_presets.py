"""Each preset against the embedded provider mimicking that provider's documented answers: its endpoints are
found, a user signs in, refreshes at its token endpoint and signs out; its quirks turn the provider's own
error bodies into the reasons users see."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from asgi_oauth_guard import LoginParams, MemoryStore, OAuthGuard, OfflineAccess, Provider, providers
from asgi_oauth_guard.testing import FakeClock, Mimic, OAuthTestProvider, mimics

from ..conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY, BrowserFactory, inner_app

pytestmark = pytest.mark.anyio

ENTRA = mimics.ENTRA_TENANT
OTHER_TENANT = "11111111-2222-3333-4444-555555555555"
Build = Callable[..., OAuthGuard]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def provider(request: pytest.FixtureRequest, clock: FakeClock) -> OAuthTestProvider:
    """The mimic a test names (``indirect`` parametrization); named ``provider`` so the suite's check that
    no secret reaches the logs covers what it issues."""
    mimic: Mimic = getattr(request, "param", None) or mimics.google()
    return OAuthTestProvider(mimic=mimic, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)


@pytest.fixture
async def build(provider: OAuthTestProvider, clock: FakeClock) -> AsyncIterator[Build]:
    clients: list[httpx.AsyncClient] = []

    def make(preset: Provider, **settings: Any) -> OAuthGuard:
        http = httpx.AsyncClient(transport=provider.transport())
        clients.append(http)
        return OAuthGuard(
            inner_app(),
            providers=[preset],
            secret_key=SECRET_KEY,
            http_client=http,
            clock=clock,
            store=MemoryStore(clock=clock),
            require_login=["/me", "/api/"],
            **settings,
        )

    yield make
    for http in clients:
        await http.aclose()


async def sign_in(
    browser: httpx.AsyncClient, provider: OAuthTestProvider, user: str | None = None
) -> httpx.Response:
    """The login route, the provider's authorize step and the callback; the callback's answer."""
    login = await browser.get("/auth/login", params={"next": "/me"})
    assert login.status_code == 303, login.text
    assert login.headers["location"].startswith(provider.metadata["authorization_endpoint"] + "?")
    return await browser.get(await provider.complete_authorization(login.headers["location"], user=user))


def credentials() -> dict[str, str]:
    return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}


PRESETS = [
    pytest.param(mimics.google(), lambda: providers.google(**credentials()), id="google"),
    pytest.param(
        mimics.entra(tenant=ENTRA), lambda: providers.entra(tenant=ENTRA, **credentials()), id="entra"
    ),
    *(
        pytest.param(
            mimics.entra(tenant=tenant),
            lambda tenant=tenant: providers.entra(tenant=tenant, **credentials()),
            id=f"entra-{tenant}",
        )
        for tenant in ("organizations", "common", "consumers")
    ),
    pytest.param(mimics.gitlab(), lambda: providers.gitlab(**credentials()), id="gitlab"),
    pytest.param(
        mimics.gitlab(base_url="https://gitlab.example.test"),
        lambda: providers.gitlab(base_url="https://gitlab.example.test/", **credentials()),
        id="gitlab-self-managed",
    ),
    pytest.param(
        mimics.auth0(domain="t.eu.auth0.com"),
        lambda: providers.auth0(domain="t.eu.auth0.com", **credentials()),
        id="auth0",
    ),
    pytest.param(
        mimics.okta(domain="o.okta.com"),
        lambda: providers.okta(domain="o.okta.com", **credentials()),
        id="okta",
    ),
    pytest.param(
        mimics.okta(domain="o.okta.com", authorization_server=None),
        lambda: providers.okta(domain="o.okta.com", authorization_server=None, **credentials()),
        id="okta-org",
    ),
    pytest.param(
        mimics.keycloak(base_url="https://kc.test", realm="acme", sso_session_idle=7200),
        lambda: providers.keycloak(base_url="https://kc.test", realm="acme", **credentials()),
        id="keycloak",
    ),
]


@pytest.mark.parametrize(("provider", "preset"), PRESETS, indirect=["provider"])
async def test_a_preset_signs_in_refreshes_and_signs_out_at_its_providers_endpoints(
    provider: OAuthTestProvider,
    preset: Callable[[], Provider],
    build: Build,
    browser_factory: BrowserFactory,
    clock: FakeClock,
) -> None:
    mimic = provider.mimic
    assert mimic is not None
    guard = build(preset())
    browser = browser_factory(guard)

    callback = await sign_in(browser, provider)

    assert callback.status_code == 303 and callback.headers["location"] == "/me", callback.text
    assert (await browser.get("/me")).json()["user"] == "alice"
    endpoints = await guard.providers.default.endpoints()
    assert endpoints.authorization_endpoint == mimic.endpoints["authorize"]
    assert endpoints.token_endpoint == mimic.endpoints["token"]
    assert endpoints.revocation_endpoint == mimic.endpoints.get("revoke")
    authorize = next(c for c in provider.calls if c.endpoint == "authorize")
    assert "prompt" not in authorize.params, "no forced consent"
    clock.advance(3600)
    assert (await browser.get("/me")).json()["user"] == "alice", "refreshed at the provider's token endpoint"
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1
    assert provider.count(endpoint="token", error="invalid_grant") == 0
    await browser.post("/auth/logout")
    assert provider.count(endpoint="revoke") == (1 if "revoke" in mimic.endpoints else 0)
    assert (await browser.get("/me", headers={"accept": "application/json"})).status_code == 401


# Google


@pytest.mark.parametrize("provider", [mimics.google()], indirect=True)
async def test_google_asks_for_consent_only_when_the_sign_in_brought_no_refresh_token(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    guard = build(providers.google(**credentials()))
    first = browser_factory(guard)
    assert (await sign_in(first, provider)).headers["location"] == "/me"  # the first consent: a refresh token
    second = browser_factory(guard)

    # A second browser: Google sends no refresh token now, so the guard asks once more, with consent.
    back = await sign_in(second, provider)
    assert back.status_code == 303 and urlsplit(back.headers["location"]).path == "/auth/login"
    again = await second.get(back.headers["location"])
    assert query(again.headers["location"])["prompt"] == "consent"
    done = await second.get(await provider.complete_authorization(again.headers["location"]))
    assert done.headers["location"] == "/me"

    prompts = [c.params.get("prompt") for c in provider.calls if c.endpoint == "authorize"]
    assert prompts == [None, None, "consent"]
    clock.advance(3600)
    for browser in (first, second):  # both sessions hold a refresh token of their own, and keep working
        assert (await browser.get("/me")).json()["user"] == "alice"
    assert provider.count(endpoint="token", grant_type="refresh_token", error=None) == 2
    assert provider.count(endpoint="token", grant_type="authorization_code") == 3, "2 sessions, 3 codes"


@pytest.mark.parametrize("provider", [mimics.google()], indirect=True)
async def test_google_consent_is_asked_once_even_if_no_refresh_token_comes(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory
) -> None:
    guard = build(providers.google(**credentials()))
    await sign_in(browser_factory(guard), provider)
    provider._server.settings = dataclasses.replace(provider._server.settings, issue_refresh_tokens=False)
    browser = browser_factory(guard)

    back = await sign_in(browser, provider)
    again = await browser.get(back.headers["location"])
    done = await browser.get(await provider.complete_authorization(again.headers["location"]))

    assert done.status_code == 303 and done.headers["location"] == "/me", "no loop: the user is signed in"
    assert (await browser.get("/me")).json()["user"] == "alice"
    assert provider.count(endpoint="authorize") == 3


@pytest.mark.parametrize("provider", [mimics.google()], indirect=True)
async def test_google_invalid_rapt_asks_the_user_to_reauthenticate(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    guard = build(providers.google(**credentials()))
    browser = browser_factory(guard)
    await sign_in(browser, provider)
    provider.refuse_refreshes("alice", "reauthentication_required")
    clock.advance(3600)

    refused = await browser.get("/api/me", headers={"accept": "application/json"})

    assert refused.status_code == 401 and refused.json()["reason"] == "reauthentication_required"
    page = await browser.get("/me")
    assert query(page.headers["location"])["reason"] in ("reauthentication_required", "refresh_rejected")
    await sign_in(browser, provider)
    assert (await browser.get("/me")).json()["user"] == "alice", "a new sign-in is all it takes"


# Microsoft Entra ID


@pytest.mark.parametrize("provider", [mimics.entra()], indirect=True)
async def test_entra_code_redeemed_by_someone_else_reads_code_reused(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory
) -> None:
    guard = build(providers.entra(tenant=ENTRA, **credentials()))
    browser = browser_factory(guard)
    login = await browser.get("/auth/login", params={"next": "/me"})
    callback = await provider.complete_authorization(login.headers["location"])
    # Redeemed already at the provider: by another instance of the app that does not share the store,
    # or by whoever else got hold of the code and its verifier.
    provider._server._codes[query(callback)["code"]].consumed = True

    answer = await browser.get(callback, headers={"accept": "application/json"})

    assert provider.count(endpoint="token", grant_type="authorization_code") == 1
    assert answer.status_code == 401 and answer.json()["reason"] == "code_reused"


@pytest.mark.parametrize("provider", [mimics.entra()], indirect=True)
async def test_entra_expired_code_reads_code_expired(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory
) -> None:
    guard = build(providers.entra(tenant=ENTRA, **credentials()))
    browser = browser_factory(guard)
    login = await browser.get("/auth/login", params={"next": "/me"})
    callback = await provider.complete_authorization(login.headers["location"])
    provider.expire_codes()  # at Entra, a code expires after a few minutes, before the guard's lifetime

    answer = await browser.get(callback, headers={"accept": "application/json"})

    assert answer.status_code == 401 and answer.json()["reason"] == "code_expired"


@pytest.mark.parametrize(
    ("provider", "cause", "reason"),
    [
        (mimics.entra(), "mfa_required", "mfa_required"),
        (mimics.entra(), "refresh_revoked", "refresh_rejected"),
    ],
    indirect=["provider"],
)
async def test_entra_refresh_refusals_read_as_their_reasons(
    provider: OAuthTestProvider,
    cause: str,
    reason: str,
    build: Build,
    browser_factory: BrowserFactory,
    clock: FakeClock,
) -> None:
    guard = build(providers.entra(tenant=ENTRA, **credentials()))
    browser = browser_factory(guard)
    await sign_in(browser, provider)
    if cause == "refresh_revoked":
        provider.revoke_grants("alice")
    else:
        provider.refuse_refreshes("alice", cause)
    clock.advance(3600)

    refused = await browser.get("/api/me", headers={"accept": "application/json"})

    assert refused.status_code == 401 and refused.json()["reason"] == reason
    body = provider.calls[-1]
    assert body.endpoint == "token" and body.status == 400


MFA_INTERACTION = dataclasses.replace(
    mimics.entra(),
    errors={
        **mimics.entra().errors,
        "mfa_required": (400, {**mimics.entra().errors["mfa_required"][1], "error": "interaction_required"}),
    },
)


@pytest.mark.parametrize("provider", [MFA_INTERACTION], indirect=True)
async def test_entra_interaction_required_ends_that_users_session_and_no_one_elses(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    provider.add_user("bob")
    guard = build(providers.entra(tenant=ENTRA, **credentials()))
    alice, bob = browser_factory(guard), browser_factory(guard)
    await sign_in(alice, provider, "alice")
    await sign_in(bob, provider, "bob")
    provider.refuse_refreshes("alice", "mfa_required")
    clock.advance(3600)

    refused = await alice.get("/api/me", headers={"accept": "application/json"})

    assert provider.calls[-1].error == "interaction_required"
    assert refused.status_code == 401 and refused.json()["reason"] == "mfa_required"
    assert (await bob.get("/me")).json()["user"] == "bob", "not read as the client's misconfiguration"


@pytest.mark.parametrize("provider", [mimics.entra(tenant="organizations")], indirect=True)
async def test_entra_multi_tenant_checks_each_tokens_issuer_against_its_tenant(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory
) -> None:
    provider.add_user("bob", claims={"tid": OTHER_TENANT})
    provider.add_user("mallory", claims={"tid": "not-a-tenant"})
    guard = build(providers.entra(tenant="organizations", tenants=[ENTRA], **credentials()))

    alice = browser_factory(guard)
    await sign_in(alice, provider, "alice")
    bob = browser_factory(guard)
    refused = await sign_in(bob, provider, "bob")

    assert (await alice.get("/me")).json()["user"] == "alice"
    assert refused.status_code in (303, 401) and "guard_session" not in refused.headers.get("set-cookie", "")
    assert (await bob.get("/me", headers={"accept": "application/json"})).status_code == 401
    open_guard = build(providers.entra(tenant="organizations", name="any", **credentials()))
    bob_anywhere = browser_factory(open_guard)
    await sign_in(bob_anywhere, provider, "bob")
    assert (await bob_anywhere.get("/me")).json()["user"] == "bob", "without tenants=, every tenant"
    mallory = browser_factory(open_guard)
    await sign_in(mallory, provider, "mallory")
    assert (await mallory.get("/me", headers={"accept": "application/json"})).status_code == 401


@pytest.mark.parametrize(
    "provider",
    [
        dataclasses.replace(
            mimics.entra(tenant="common"),
            id_token_issuer=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0",
        )
    ],
    indirect=True,
)
async def test_entra_refuses_a_token_whose_issuer_is_not_its_own_tenants(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory
) -> None:
    guard = build(providers.entra(tenant="common", **credentials()))
    browser = browser_factory(guard)

    refused = await sign_in(browser, provider)

    assert "guard_session" not in refused.headers.get("set-cookie", "")
    assert (await browser.get("/me", headers={"accept": "application/json"})).status_code == 401


# Keycloak and Auth0


@pytest.mark.parametrize("provider", [mimics.keycloak()], indirect=True)
async def test_keycloak_sso_session_idle_ends_the_session_without_sending_the_refresh_token(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    guard = build(
        providers.keycloak(base_url="https://keycloak.example.test", realm="myrealm", **credentials())
    )
    browser = browser_factory(guard)
    await sign_in(browser, provider)
    clock.advance(3600 - 30)  # the access token is due, the refresh token (30 minutes idle) long dead

    refused = await browser.get("/api/me", headers={"accept": "application/json"})

    assert refused.status_code == 401 and refused.json()["reason"] == "session_expired"
    assert provider.count(endpoint="token", grant_type="refresh_token") == 0, "a dead token is not sent"


@pytest.mark.parametrize("provider", [mimics.keycloak(sso_session_idle=None)], indirect=True)
async def test_keycloak_session_not_active_ends_the_session(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    guard = build(
        providers.keycloak(base_url="https://keycloak.example.test", realm="myrealm", **credentials())
    )
    browser = browser_factory(guard)
    await sign_in(browser, provider)
    provider.refuse_refreshes("alice", "session_idle")
    clock.advance(3600)

    refused = await browser.get("/api/me", headers={"accept": "application/json"})

    assert refused.status_code == 401 and refused.json()["reason"] == "refresh_rejected"


@pytest.mark.parametrize("provider", [mimics.auth0()], indirect=True)
async def test_auth0_rotation_is_followed_and_its_403_refusal_ends_the_session(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    guard = build(providers.auth0(domain="tenant.us.auth0.com", **credentials()))
    browser = browser_factory(guard)
    await sign_in(browser, provider)
    for _ in range(3):
        clock.advance(3600)
        assert (await browser.get("/me")).json()["user"] == "alice"
    assert provider.count(endpoint="token", grant_type="refresh_token", error=None) == 3, (
        "no rotated token reused"
    )
    provider.revoke_grants("alice")
    clock.advance(3600)

    refused = await browser.get("/api/me", headers={"accept": "application/json"})

    assert provider.calls[-1].status == 403
    assert refused.status_code == 401 and refused.json()["reason"] == "refresh_rejected"


@pytest.mark.parametrize("provider", [mimics.google()], indirect=True)
async def test_google_with_an_offline_grant_shares_one_refresh_token_and_asks_no_consent(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    guard = build(
        providers.google(offline=OfflineAccess(), **credentials()),
        server_keys=["server-key-for-the-offline-grants-0123456789"],
    )
    browsers = [browser_factory(guard) for _ in range(3)]

    for browser in browsers:  # three devices: one consent (the first sign-in), no prompt=consent ever
        assert (await sign_in(browser, provider)).headers["location"] == "/me"
    clock.advance(3600)

    assert [(await b.get("/me")).json()["user"] for b in browsers] == ["alice"] * 3
    authorize = [c.params for c in provider.calls if c.endpoint == "authorize"]
    assert [p.get("prompt") for p in authorize] == [None] * 3
    assert all(p["access_type"] == "offline" and "offline_access" not in p["scope"] for p in authorize)
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1, "one grant, one refresh"


@pytest.mark.parametrize("provider", [mimics.google()], indirect=True)
async def test_google_a_link_that_asked_for_consent_is_not_asked_again(
    provider: OAuthTestProvider, build: Build, browser_factory: BrowserFactory
) -> None:
    guard = build(providers.google(login_params=LoginParams(prompt=frozenset({"consent"})), **credentials()))
    await sign_in(browser_factory(guard), provider)
    provider._server.settings = dataclasses.replace(provider._server.settings, issue_refresh_tokens=False)
    browser = browser_factory(guard)

    login = await browser.get("/auth/login", params={"next": "/me", "prompt": "consent"})
    assert query(login.headers["location"])["prompt"] == "consent"
    done = await browser.get(await provider.complete_authorization(login.headers["location"]))

    assert done.headers["location"] == "/me", "no second round trip: this sign-in asked for consent"
    assert provider.count(endpoint="authorize") == 2
