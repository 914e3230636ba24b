"""Several providers in one guard: each login, session, refresh and sign-out belongs to its provider."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import ConfigurationError, MemoryStore, OAuthGuard, Provider, current_identity
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider, providers_transport

from .conftest import SECRET_KEY, BrowserFactory

pytestmark = pytest.mark.anyio

ALPHA = "https://alpha.example.test"
BETA = "https://beta.example.test"


async def me(request: Request) -> JSONResponse:
    identity = current_identity()
    if identity is None:
        return JSONResponse({"user": None})
    return JSONResponse({"user": identity.sub, "provider": identity.provider, "token": identity.access_token})


@dataclasses.dataclass
class Rig:
    guard: OAuthGuard
    idps: dict[str, OAuthTestProvider]
    clock: FakeClock


@pytest.fixture
def no_secrets_in_logs() -> None:
    """This file's providers are not the shared ``provider`` fixture: each test checks its own logs."""


@pytest.fixture
async def rig(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Rig]:
    caplog.set_level(logging.DEBUG)
    idps = {
        "alpha": OAuthTestProvider(
            issuer=ALPHA, client_id="client-a", client_secret="secret-a-0123456789", clock=clock
        ),
        "beta": OAuthTestProvider(
            issuer=BETA, client_id="client-b", client_secret="secret-b-0123456789", clock=clock
        ),
    }
    async with httpx.AsyncClient(transport=providers_transport(*idps.values())) as http:
        guard = OAuthGuard(
            Starlette(routes=[Route("/me", me)]),
            providers=[
                Provider(
                    name="alpha", issuer=ALPHA, client_id="client-a", client_secret="secret-a-0123456789"
                ),
                Provider(
                    name="beta",
                    title="Beta Corp",
                    issuer=BETA,
                    client_id="client-b",
                    client_secret="secret-b-0123456789",
                ),
            ],
            secret_key=SECRET_KEY,
            http_client=http,
            clock=clock,
            store=MemoryStore(clock=clock),
            require_login=["/me"],
        )
        yield Rig(guard=guard, idps=idps, clock=clock)
    issued = [s for idp in idps.values() for s in idp.issued_secrets()]
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert not [s for s in issued if len(s) >= 8 and s in text], "a secret reached the logs"


async def sign_in(browser: httpx.AsyncClient, rig: Rig, name: str, next_path: str = "/me") -> str:
    """The callback URL of a sign-in with provider ``name``, ready to load."""
    started = await browser.get("/auth/login", params={"provider": name, "next": next_path})
    assert started.status_code == 303, started.text
    location = started.headers["location"]
    assert location.startswith(rig.idps[name].issuer + "/")
    return await rig.idps[name].complete_authorization(location)


def exchanges(idp: OAuthTestProvider) -> int:
    return sum(1 for c in idp.calls if c.endpoint == "token" and c.grant_type == "authorization_code")


def refreshes(idp: OAuthTestProvider) -> list[str]:
    return [c.params["refresh_token"] for c in idp.calls if c.grant_type == "refresh_token"]


async def test_the_login_route_offers_each_provider_when_none_is_named(
    rig: Rig, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(rig.guard)
    page = await browser.get("/auth/login", params={"next": "/me"})
    assert page.status_code == 200 and 'data-kind="chooser"' in page.text
    assert 'href="/auth/login?next=%2Fme&amp;provider=alpha"' in page.text
    assert "Beta Corp" in page.text and "Alpha" in page.text
    assert not [c for idp in rig.idps.values() for c in idp.calls]  # nothing asked of any provider yet
    api = await browser.get("/auth/login", headers={"accept": "application/json"})
    assert api.status_code == 400 and "alpha, beta" in api.json()["message"]
    unknown = await browser.get("/auth/login", params={"provider": "gamma"})
    assert unknown.status_code == 400 and 'data-kind="chooser"' in unknown.text
    # A protected page sends an anonymous browser to the login route, which offers the choice.
    gate = await browser.get("/me")
    assert gate.status_code == 303 and gate.headers["location"].startswith("/auth/login?")


async def test_each_provider_signs_in_refreshes_and_signs_out_at_its_own_endpoints(
    rig: Rig, browser_factory: BrowserFactory
) -> None:
    browsers = {name: browser_factory(rig.guard) for name in rig.idps}
    for name, browser in browsers.items():
        assert (await browser.get(await sign_in(browser, rig, name))).status_code == 303
        seen = (await browser.get("/me")).json()
        assert seen["user"] == "alice" and seen["provider"] == name
    assert [exchanges(idp) for idp in rig.idps.values()] == [1, 1]

    rig.clock.advance(3600)  # every access token is due
    for name, browser in browsers.items():
        seen = (await browser.get("/me")).json()
        assert seen["provider"] == name and rig.idps[name].grant_alive(seen["token"])
    assert [len(refreshes(idp)) for idp in rig.idps.values()] == [1, 1]
    assert not [c for c in rig.idps["alpha"].calls if c.params.get("client_id") == "client-b"]

    out = await browsers["beta"].post("/auth/logout")
    assert out.status_code == 303
    assert [c.endpoint for c in rig.idps["beta"].calls].count("revoke") == 1
    assert "revoke" not in [c.endpoint for c in rig.idps["alpha"].calls]
    assert (await browsers["alpha"].get("/me")).json()["provider"] == "alpha"  # the other session lives


async def test_ten_duplicate_callbacks_per_provider_exchange_each_code_once(
    rig: Rig, browser_factory: BrowserFactory
) -> None:
    for name in rig.idps:
        browser = browser_factory(rig.guard)
        callback = await sign_in(browser, rig, name)
        statuses: list[int] = []

        async def load(
            url: str = callback, answers: list[int] = statuses, client: httpx.AsyncClient = browser
        ) -> None:
            answers.append((await client.get(url)).status_code)

        async with anyio.create_task_group() as tasks:
            for _ in range(10):
                tasks.start_soon(load)
        assert statuses == [303] * 10
        assert exchanges(rig.idps[name]) == 1
        assert (await browser.get("/me")).json()["provider"] == name


async def test_a_response_naming_another_provider_is_refused_and_spends_no_code(
    rig: Rig, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(rig.guard)
    callback = httpx.URL(await sign_in(browser, rig, "alpha"))
    # The same state, answered as if by beta (a mix-up: RFC 9207's iss names the wrong issuer).
    forged = callback.copy_set_param("iss", BETA)
    refused = await browser.get(str(forged))
    assert refused.status_code == 400 and "unexpected issuer" in refused.text
    assert exchanges(rig.idps["alpha"]) == 0 and exchanges(rig.idps["beta"]) == 0
    # A code beta issued, brought back with alpha's state, goes nowhere either: beta's iss gives it away.
    beta_browser = browser_factory(rig.guard)
    beta_callback = httpx.URL(await sign_in(beta_browser, rig, "beta"))
    mixed = callback.copy_set_param("code", beta_callback.params["code"]).copy_set_param("iss", BETA)
    assert (await browser.get(str(mixed))).status_code == 400
    assert exchanges(rig.idps["alpha"]) == 0 and exchanges(rig.idps["beta"]) == 0
    # The honest response still completes.
    assert (await browser.get(str(callback))).status_code == 303
    assert (await browser.get("/me")).json()["provider"] == "alpha"


async def test_end_sessions_names_the_provider_whose_sub_it_means(
    rig: Rig, browser_factory: BrowserFactory
) -> None:
    browsers = {name: browser_factory(rig.guard) for name in rig.idps}
    for name, browser in browsers.items():  # "alice" at both providers: two different people, maybe
        await browser.get(await sign_in(browser, rig, name))
    with pytest.raises(TypeError, match="name the provider"):
        await rig.guard.end_sessions(sub="alice")
    assert [i.issuer for i in await rig.guard.sessions_of("alice", provider="beta")] == [BETA]
    assert await rig.guard.end_sessions(sub="alice", provider="alpha") == 1
    assert (await browsers["alpha"].get("/me")).status_code == 303
    assert (await browsers["beta"].get("/me")).json()["provider"] == "beta"


async def test_a_back_channel_logout_ends_only_its_providers_sessions(
    rig: Rig, browser_factory: BrowserFactory
) -> None:
    browsers = {name: browser_factory(rig.guard) for name in rig.idps}
    for name, browser in browsers.items():
        await browser.get(await sign_in(browser, rig, name))
    token = rig.idps["beta"].logout_token(sub="alice")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(rig.guard), base_url="http://app.test") as idp:
        answer = await idp.post("/auth/backchannel-logout", data={"logout_token": token})
    assert answer.status_code == 200
    assert (await browsers["beta"].get("/me")).status_code == 303
    assert (await browsers["alpha"].get("/me")).json()["provider"] == "alpha"


async def test_a_session_of_a_provider_taken_out_of_the_app_signs_in_again(
    rig: Rig, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    browser = browser_factory(rig.guard)
    await browser.get(await sign_in(browser, rig, "beta"))
    browsers_cookies = browser.cookies
    guard = rig.guard
    alpha_only = OAuthGuard(
        guard.app,
        providers=[guard.providers["alpha"].provider],
        secret_key=SECRET_KEY,
        http_client=guard._http,
        clock=clock,
        store=guard.store,
        require_login=["/me"],
    )
    browser = browser_factory(alpha_only)
    browser.cookies = browsers_cookies
    assert (await browser.get("/me")).json()["provider"] == "beta"  # a fresh token needs no provider
    clock.advance(3600)
    assert (await browser.get("/me")).status_code == 303  # due, and nobody can refresh it: sign in again
    assert refreshes(rig.idps["beta"]) == []


def provider(**changes: Any) -> Provider:
    settings: dict[str, Any] = {"issuer": ALPHA, "client_id": "c", "client_secret": "s"}
    settings.update(changes)
    return Provider(**settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"providers": [provider(name="a"), provider(name="a")]}, "two providers are named 'a'"),
        ({"providers": []}, "providers= is empty"),
        ({"providers": [provider(), provider(name="b")], "client_id": "x"}, "give client_id= in each"),
        ({"providers": [Provider(issuer=ALPHA)]}, "needs client_id="),
        ({"providers": provider()}, "must be a list of Provider"),
        ({"issuer": ALPHA, "client_id": "x", "client_secret": "y", "providers": [provider()]}, "in each"),
    ],
)
def test_mistakes_in_providers_are_named(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        OAuthGuard(Starlette(), secret_key=SECRET_KEY, **settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"name": "Google"}, "lower-case letters"),
        ({"issuer": None}, "needs issuer="),
        ({"issuer": "idp.example.test"}, "absolute http"),
        ({"discovery": "none"}, "give authorization_endpoint= and token_endpoint="),
        ({"client_secret": ""}, "client_secret= is empty"),
        ({"client_auth": "none", "client_secret": "", "client_key": "k"}, "only used with"),
        ({"scopes": "openid email"}, r"write scopes=\['openid', 'email'\]"),
        (
            {
                "fetch_userinfo": True,
                "discovery": "none",
                "authorization_endpoint": ALPHA + "/a",
                "token_endpoint": ALPHA + "/t",
            },
            "userinfo_endpoint=",
        ),
        ({"id_token_signed_response_alg": "none"}, "never accepted"),
    ],
)
def test_a_provider_says_what_to_fix(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        provider(**settings)


def test_a_public_client_needs_no_secret() -> None:
    assert provider(client_auth="none", client_secret="").client_auth == "none"


def test_the_one_provider_forms_unnamed_provider_shows_its_issuers_host() -> None:
    assert provider().label == "alpha.example.test"
    assert provider(name="my_idp").label == "My Idp"
    assert provider(name="x", title="Example Corp").label == "Example Corp"
