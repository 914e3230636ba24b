"""Per-request sign-in parameters, allow-listed, and step-up: a login link asks the provider only for what
the app allowed, with values it checked, and a route that demands a recent (or stronger) sign-in gets
one, checked in the returned ID token."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import (
    ConfigurationError,
    Identity,
    LoginParams,
    MemoryStore,
    OAuthGuard,
    Provider,
    current_identity,
)
from asgi_oauth_guard._login_params import Requested
from asgi_oauth_guard.integrations import fastapi as guard_fastapi
from asgi_oauth_guard.integrations.starlette import install, require_recent_sign_in
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider, providers_transport

from .conftest import SECRET_KEY, BrowserFactory, GuardFactory, start_login

pytestmark = pytest.mark.anyio

ALLOWED = LoginParams(
    scopes=frozenset({"calendar.read"}),
    login_hint=True,
    prompt=frozenset({"login", "select_account", "none"}),
    max_age=True,
    acr_values=frozenset({"mfa", "phr"}),
)
STEP_UP = LoginParams(max_age=True, acr_values=frozenset({"mfa"}))
RecentUser = Annotated[Identity, Depends(guard_fastapi.RequireRecentSignIn(max_age=300))]


async def admin(request: Request) -> JSONResponse:
    identity = require_recent_sign_in(request, max_age=300)
    return JSONResponse({"sub": identity.sub, "auth_time": identity.auth_time})


async def payments(request: Request) -> JSONResponse:
    identity = require_recent_sign_in(request, acr_values=("mfa",))
    return JSONResponse({"sub": identity.sub, "acr": identity.acr})


async def me(request: Request) -> JSONResponse:
    identity = current_identity()
    return JSONResponse({"sub": identity.sub if identity else None})


def step_up_app() -> Starlette:
    app = Starlette(
        routes=[Route("/me", me), Route("/admin", admin), Route("/api/admin", admin), Route("/pay", payments)]
    )
    install(app)
    return app


def authorize_params(provider: OAuthTestProvider) -> dict[str, str]:
    return dict([c for c in provider.calls if c.endpoint == "authorize"][-1].params)


async def follow_sign_in(
    browser: httpx.AsyncClient, provider: OAuthTestProvider, login: str
) -> httpx.Response:
    """From a login link (or a 303 to one) through the provider, to the callback's answer."""
    started = await browser.get(login)
    assert started.status_code == 303, started.text
    return await browser.get(await provider.complete_authorization(started.headers["location"]))


async def test_a_parameter_the_app_did_not_allow_is_not_sent_to_the_provider(
    guard_factory: GuardFactory, provider: OAuthTestProvider, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard_factory())  # no login_params: a link may ask for nothing
    query = {
        "next": "/me",
        "scope": "admin offline_access",
        "prompt": "none",
        "login_hint": "victim@example.test",
        "max_age": "0",
        "acr_values": "mfa",
        "redirect_uri": "https://evil.example/cb",
        "client_id": "another-client",
        "response_type": "token",
        "claims": '{"id_token":{"email":null}}',
    }
    started = await browser.get("/auth/login", params=query)
    assert started.status_code == 303
    sent = httpx.URL(started.headers["location"]).params
    for name in ("prompt", "login_hint", "max_age", "acr_values", "claims"):
        assert name not in sent, name
    assert sent["scope"] == "openid email profile"
    assert sent["redirect_uri"] == "http://app.test/auth/callback"
    assert sent["client_id"] == "guard-client" and sent["response_type"] == "code"
    assert (await browser.get(await provider.complete_authorization(started.headers["location"]))).is_redirect
    recorded = authorize_params(provider)
    assert not {"prompt", "login_hint", "max_age", "acr_values", "claims"} & recorded.keys()


async def test_allowed_parameters_reach_the_provider(
    guard_factory: GuardFactory, provider: OAuthTestProvider, browser_factory: BrowserFactory
) -> None:
    guard = guard_factory(login_params=ALLOWED)
    browser = browser_factory(guard)
    link = guard.login_url(
        next="/me",
        scopes=["calendar.read"],
        login_hint="alice@example.test",
        prompt="select_account",
        max_age=600,
        acr_values=["mfa"],
    )
    assert link.startswith("/auth/login?next=%2Fme&")
    assert (await follow_sign_in(browser, provider, link)).status_code == 303
    sent = authorize_params(provider)
    assert sent["scope"] == "openid email profile calendar.read"
    assert sent["login_hint"] == "alice@example.test" and sent["prompt"] == "select_account"
    assert sent["max_age"] == "600" and sent["acr_values"] == "mfa"


@pytest.mark.parametrize(
    "query",
    [
        {"scope": "admin"},
        {"scope": "calendar.read admin"},
        {"prompt": "consent"},
        {"prompt": "none login"},
        {"max_age": "abc"},
        {"max_age": "-1"},
        {"max_age": "1e3"},
        {"max_age": "99999999999"},
        {"acr_values": "gold"},
        {"login_hint": "a" * 300},
        {"login_hint": " padded"},
    ],
    ids=lambda q: "-".join(f"{k}={v[:12]}" for k, v in q.items()),
)
async def test_a_link_asking_for_what_the_app_does_not_allow_gets_a_clear_400(
    guard_factory: GuardFactory,
    provider: OAuthTestProvider,
    browser_factory: BrowserFactory,
    query: dict[str, str],
) -> None:
    browser = browser_factory(guard_factory(login_params=ALLOWED))
    page = await browser.get("/auth/login", params={"next": "/me", **query})
    assert page.status_code == 400 and 'data-kind="failed"' in page.text
    api = await browser.get("/auth/login", params=query, headers={"accept": "application/json"})
    assert api.status_code == 400 and "does not allow" in api.json()["message"]
    assert not provider.calls


async def test_each_provider_allows_its_own(clock: FakeClock, browser_factory: BrowserFactory) -> None:
    alpha = OAuthTestProvider(issuer="https://alpha.test", client_id="a", client_secret="sa", clock=clock)
    beta = OAuthTestProvider(issuer="https://beta.test", client_id="b", client_secret="sb", clock=clock)
    async with httpx.AsyncClient(transport=providers_transport(alpha, beta)) as http:
        guard = OAuthGuard(
            Starlette(),
            providers=[
                Provider(name="alpha", issuer=alpha.issuer, client_id="a", client_secret="sa"),
                Provider(
                    name="beta",
                    issuer=beta.issuer,
                    client_id="b",
                    client_secret="sb",
                    login_params=LoginParams(login_hint=True),
                ),
            ],
            login_params=LoginParams(prompt=frozenset({"login"})),  # the default: alpha's
            secret_key=SECRET_KEY,
            http_client=http,
            clock=clock,
            store=MemoryStore(clock=clock),
        )
        browser = browser_factory(guard)
        asked = {"next": "/", "login_hint": "bob", "prompt": "login"}
        to_alpha = httpx.URL(
            (await browser.get("/auth/login", params={**asked, "provider": "alpha"})).headers["location"]
        )
        to_beta = httpx.URL(
            (await browser.get("/auth/login", params={**asked, "provider": "beta"})).headers["location"]
        )
    assert to_alpha.params.get("prompt") == "login" and "login_hint" not in to_alpha.params
    assert to_beta.params.get("login_hint") == "bob" and "prompt" not in to_beta.params
    assert (
        guard.login_url(provider="beta", login_hint="bob")
        == "/auth/login?next=%2F&provider=beta&login_hint=bob"
    )
    assert guard.login_url(next="/x") == "/auth/login?next=%2Fx"  # the chooser
    with pytest.raises(ConfigurationError, match="name one of alpha, beta"):
        guard.login_url(login_hint="bob")
    with pytest.raises(ConfigurationError, match="does not allow it"):
        guard.login_url(provider="alpha", login_hint="bob")


async def test_login_url_refuses_what_the_route_would_drop(guard_factory: GuardFactory) -> None:
    guard = guard_factory(login_params=STEP_UP)
    assert guard.login_url(next="/admin", max_age=0) == "/auth/login?next=%2Fadmin&max_age=0"
    for asked in ({"scopes": ["calendar.read"]}, {"prompt": "login"}, {"login_hint": "x"}):
        with pytest.raises(ConfigurationError, match="does not allow it"):
            guard.login_url(**asked)
    with pytest.raises(ConfigurationError, match="acr value this app does not offer"):
        guard.login_url(acr_values=["gold"])
    with pytest.raises(ConfigurationError, match="next must be a path"):
        guard.login_url(next="https://evil.example/")
    with pytest.raises(ConfigurationError, match="whole number"):
        guard.login_url(max_age="300")  # type: ignore[arg-type]


def test_prompt_values_join_the_ones_the_guard_needs() -> None:
    # An offline grant being restored asks for consent; a link's prompt=login joins it, a prompt=none
    # gives way (the provider could only answer it with an error).
    assert Requested(prompt=("login",)).merged({"prompt": "consent"})["prompt"] == "consent login"
    assert Requested(prompt=("none",)).merged({"prompt": "consent"})["prompt"] == "consent"
    assert Requested().merged({"access_type": "offline"}) == {"access_type": "offline"}


@pytest.mark.parametrize(
    "settings",
    [
        {"prompt": frozenset({"always"})},
        {"scopes": "calendar.read"},
        {"acr_values": frozenset({"two words"})},
        {"max_age": 300},
    ],
)
def test_login_params_say_what_to_fix(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="LoginParams"):
        LoginParams(**settings)


# -- step-up -------------------------------------------------------------------------------------------


async def test_a_route_demanding_a_recent_sign_in_gets_one(
    guard_factory: GuardFactory,
    provider: OAuthTestProvider,
    browser_factory: BrowserFactory,
    clock: FakeClock,
) -> None:
    provider.signed_in_at("alice", clock() - 3600)  # alice's session at the provider is an hour old
    browser = browser_factory(guard_factory(app=step_up_app(), login_params=STEP_UP))
    assert (await browser.get(await start_login(browser, provider, "/me"))).status_code == 303
    assert (await browser.get("/me")).json() == {"sub": "alice"}  # single sign-on: no new authentication

    stale = await browser.get("/admin")
    assert stale.status_code == 303
    assert stale.headers["location"] == "/auth/login?next=%2Fadmin&max_age=300"
    done = await follow_sign_in(browser, provider, stale.headers["location"])
    assert done.status_code == 303 and done.headers["location"] == "/admin"
    assert authorize_params(provider)["max_age"] == "300"
    fresh = await browser.get("/admin")
    assert fresh.status_code == 200 and fresh.json()["auth_time"] == int(clock())


async def test_an_id_token_older_than_the_max_age_asked_is_refused(
    guard_factory: GuardFactory,
    provider: OAuthTestProvider,
    browser_factory: BrowserFactory,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider.signed_in_at("alice", clock() - 3600)
    provider.ignores_step_up = True  # answers max_age with the old session's auth_time
    browser = browser_factory(guard_factory(app=step_up_app(), login_params=STEP_UP))
    await browser.get(await start_login(browser, provider, "/me"))
    stale = await browser.get("/admin")
    refused = await follow_sign_in(browser, provider, stale.headers["location"])
    assert refused.status_code == 403 and 'data-kind="refused"' in refused.text
    assert "did not confirm the recent or stronger sign-in" in refused.text
    assert any("more than the max_age of 300 s" in r.getMessage() for r in caplog.records)
    assert provider.count("revoke") == 1  # the grant the refused sign-in made
    # The older session is kept (a refusal replaces nothing), and the page still demands a fresh one.
    assert (await browser.get("/me")).json() == {"sub": "alice"}
    assert (await browser.get("/admin")).status_code == 303


async def test_an_api_call_gets_rfc_9470s_challenge(
    guard_factory: GuardFactory,
    provider: OAuthTestProvider,
    browser_factory: BrowserFactory,
    clock: FakeClock,
) -> None:
    provider.signed_in_at("alice", clock() - 3600)
    browser = browser_factory(guard_factory(app=step_up_app(), login_params=STEP_UP))
    await browser.get(await start_login(browser, provider, "/me"))
    answer = await browser.get("/api/admin", headers={"accept": "application/json"})
    assert answer.status_code == 401
    assert answer.json() == {
        "error": "insufficient_user_authentication",
        "login_url": "/auth/login?next=%2Fapi%2Fadmin&max_age=300",
    }
    assert (
        answer.headers["www-authenticate"] == 'Bearer error="insufficient_user_authentication", max_age="300"'
    )


async def test_a_route_demanding_an_acr_gets_it_or_refuses(
    guard_factory: GuardFactory,
    provider: OAuthTestProvider,
    browser_factory: BrowserFactory,
    clock: FakeClock,
) -> None:
    provider.signed_in_at("alice", clock())
    guard = guard_factory(app=step_up_app(), login_params=STEP_UP)
    browser = browser_factory(guard)
    await browser.get(await start_login(browser, provider, "/me"))
    gate = await browser.get("/pay")
    assert gate.headers["location"] == "/auth/login?next=%2Fpay&acr_values=mfa"
    assert (await follow_sign_in(browser, provider, gate.headers["location"])).status_code == 303
    assert (await browser.get("/pay")).json() == {"sub": "alice", "acr": "mfa"}

    provider.ignores_step_up = True
    other = browser_factory(guard)
    await other.get(await start_login(other, provider, "/me"))
    refused = await follow_sign_in(other, provider, (await other.get("/pay")).headers["location"])
    assert refused.status_code == 403 and 'data-kind="refused"' in refused.text


async def test_fastapi_requires_a_recent_sign_in(
    guard_factory: GuardFactory,
    provider: OAuthTestProvider,
    browser_factory: BrowserFactory,
    clock: FakeClock,
) -> None:
    api = FastAPI()
    guard_fastapi.install(api)

    @api.get("/admin")
    async def admin(user: RecentUser) -> dict[str, Any]:
        return {"sub": user.sub}

    provider.signed_in_at("alice", clock() - 3600)
    browser = browser_factory(guard_factory(app=api, login_params=STEP_UP))
    await browser.get(await start_login(browser, provider, "/"))
    stale = await browser.get("/admin")
    assert stale.status_code == 303 and stale.headers["location"] == "/auth/login?next=%2Fadmin&max_age=300"
    json_call = await browser.get("/admin", headers={"accept": "application/json"})
    assert json_call.status_code == 401 and json_call.json()["error"] == "insufficient_user_authentication"
    await follow_sign_in(browser, provider, stale.headers["location"])
    assert (await browser.get("/admin")).json() == {"sub": "alice"}
    with pytest.raises(ValueError, match="needs max_age"):
        guard_fastapi.RequireRecentSignIn()
