"""The app's say at sign-in: ``on_login`` runs once per code, keeps its user id and claims in the session,
and turns users away with a reason they see; a hook that fails refuses the sign-in, never a 500."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import (
    ConfigurationError,
    OAuthGuard,
    SignIn,
    SignInAccepted,
    SignInRefused,
    TokenSet,
    current_identity,
)
from asgi_oauth_guard._on_login import MAX_APP_CLAIMS_BYTES, OnLogin, Refusal
from asgi_oauth_guard.testing import OAuthTestProvider, signed_in

from .conftest import SECRET_KEY, BrowserFactory, GuardFactory, start_login

pytestmark = pytest.mark.anyio


async def me(request: Request) -> JSONResponse:
    identity = current_identity()
    if identity is None:
        return JSONResponse({"user": None})
    return JSONResponse(
        {
            "sub": identity.sub,
            "user_id": identity.user_id,
            "app_claims": dict(identity.app_claims),
            "id_token": identity.id_token,
        }
    )


def app() -> Starlette:
    return Starlette(routes=[Route("/me", me)])


def exchanges(provider: OAuthTestProvider) -> int:
    return provider.count("token", grant_type="authorization_code")


async def load_at_once(
    browser: httpx.AsyncClient, url: str, n: int, then: Callable[[], None] = lambda: None
) -> list[int]:
    """Load ``url`` ``n`` times at once (a double click, tabs); ``then`` runs when every load is parked."""
    statuses: list[int] = []

    async def load() -> None:
        statuses.append((await browser.get(url)).status_code)

    async with anyio.create_task_group() as tasks:
        for _ in range(n):
            tasks.start_soon(load)
        await anyio.wait_all_tasks_blocked()
        then()
    return statuses


async def test_the_apps_user_id_and_claims_show_in_identity(
    guard_factory: GuardFactory, provider: OAuthTestProvider, browser_factory: BrowserFactory
) -> None:
    seen: list[SignIn] = []

    async def on_login(sign_in: SignIn) -> SignInAccepted:
        seen.append(sign_in)
        return SignInAccepted(user_id="user-42", claims={"roles": ["editor"], "tenant": 7})

    browser = browser_factory(guard_factory(app=app(), on_login=on_login))
    assert (await browser.get(await start_login(browser, provider, "/me"))).status_code == 303
    me = (await browser.get("/me")).json()
    assert me["sub"] == "alice" and me["user_id"] == "user-42"
    assert me["app_claims"] == {"roles": ["editor"], "tenant": 7}
    [sign_in] = seen
    assert sign_in.provider == "default" and sign_in.sub == "alice"
    assert sign_in.claims["email"] == "alice@example.test"
    assert sign_in.tokens.refresh_token is not None
    # The ID token is the app's, for its own logout or backends: the very one the provider issued.
    assert me["id_token"] == sign_in.tokens.id_token and me["id_token"] in provider.issued_secrets()


async def test_a_plain_hook_returning_none_accepts(
    guard_factory: GuardFactory, provider: OAuthTestProvider, browser_factory: BrowserFactory
) -> None:
    calls: list[str] = []
    browser = browser_factory(guard_factory(app=app(), on_login=lambda s: calls.append(s.sub)))
    assert (await browser.get(await start_login(browser, provider, "/me"))).status_code == 303
    me = (await browser.get("/me")).json()
    assert calls == ["alice"] and me["user_id"] is None and me["app_claims"] == {}


async def test_a_refusal_shows_the_user_its_reason_and_makes_no_session(
    guard_factory: GuardFactory, provider: OAuthTestProvider, browser_factory: BrowserFactory
) -> None:
    guard = guard_factory(
        app=app(), on_login=lambda s: SignInRefused(message="Your account <b>is</b> suspended.")
    )
    browser = browser_factory(guard)
    callback = await start_login(browser, provider, "/me")
    page = await browser.get(callback)
    assert page.status_code == 403 and 'data-kind="refused"' in page.text
    assert "Your account &lt;b&gt;is&lt;/b&gt; suspended." in page.text  # escaped, never markup
    assert (await browser.get("/me")).status_code == 303  # no session: sign in first
    assert provider.count("revoke") == 1  # the grant made for a refused sign-in does not linger
    # A reload gets the same answer from the recorded outcome: one exchange.
    again = await browser.get(callback)
    assert again.status_code == 403 and "suspended" in again.text
    assert exchanges(provider) == 1

    api = browser_factory(guard)
    api.headers["accept"] = "application/json"
    answer = await api.get(await start_login(api, provider, "/me"))
    assert answer.status_code == 403
    assert answer.json() == {"error": "access_denied", "message": "Your account <b>is</b> suspended."}


@pytest.mark.parametrize(
    ("hook", "logged"),
    [
        (lambda s: 1 / 0, "on_login raised ZeroDivisionError"),
        (lambda s: "user-42", "on_login returned str"),
        (lambda s: SignInAccepted(user_id=""), "user_id must be a non-empty string"),
        (lambda s: SignInAccepted(claims={"when": object()}), "claims= are not JSON"),
        (
            lambda s: SignInAccepted(claims={"blob": "x" * MAX_APP_CLAIMS_BYTES}),
            f"over the {MAX_APP_CLAIMS_BYTES}-byte bound",
        ),
    ],
    ids=["raises", "wrong_type", "empty_user_id", "not_json", "too_big"],
)
async def test_a_hook_that_fails_is_logged_and_refuses_never_a_500(
    guard_factory: GuardFactory,
    provider: OAuthTestProvider,
    browser_factory: BrowserFactory,
    caplog: pytest.LogCaptureFixture,
    hook: Any,
    logged: str,
) -> None:
    browser = browser_factory(guard_factory(app=app(), on_login=hook))
    page = await browser.get(await start_login(browser, provider, "/me"))
    assert page.status_code == 403 and 'data-kind="refused"' in page.text
    assert "could not complete your sign-in" in page.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(logged in r.getMessage() for r in errors), [r.getMessage() for r in errors]
    assert (await browser.get("/me")).status_code == 303


async def test_ten_duplicate_callbacks_run_the_hook_once(
    guard_factory: GuardFactory, provider: OAuthTestProvider, browser_factory: BrowserFactory
) -> None:
    calls = 0
    release = anyio.Event()

    async def on_login(sign_in: SignIn) -> SignInAccepted:
        nonlocal calls
        calls += 1
        await release.wait()  # every duplicate arrives while the hook is still deciding
        return SignInAccepted(user_id="u-1")

    browser = browser_factory(guard_factory(app=app(), on_login=on_login))
    callback = await start_login(browser, provider, "/me")
    statuses = await load_at_once(browser, callback, 10, then=release.set)
    assert statuses == [303] * 10
    assert calls == 1 and exchanges(provider) == 1
    assert (await browser.get("/me")).json()["user_id"] == "u-1"


async def test_a_refusal_is_the_answer_of_every_duplicate(
    guard_factory: GuardFactory, provider: OAuthTestProvider, browser_factory: BrowserFactory
) -> None:
    calls: list[str] = []

    def on_login(sign_in: SignIn) -> SignInRefused:
        calls.append(sign_in.sub)
        return SignInRefused(message="Not invited yet.")

    browser = browser_factory(guard_factory(app=app(), on_login=on_login))
    callback = await start_login(browser, provider, "/me")
    statuses = await load_at_once(browser, callback, 5)
    assert statuses == [403] * 5 and calls == ["alice"] and exchanges(provider) == 1


async def test_on_login_must_be_callable(guard_factory: GuardFactory) -> None:
    with pytest.raises(ConfigurationError, match="on_login= must be a function"):
        guard_factory(on_login="myapp.hooks:on_login")


async def test_a_hook_that_hangs_is_cut_off_and_refuses(caplog: pytest.LogCaptureFixture) -> None:
    async def on_login(sign_in: SignIn) -> None:
        await anyio.Event().wait()  # a database that never answers

    sign_in = SignIn(
        provider="default",
        claims={"sub": "alice"},
        tokens=TokenSet(access_token="a", issued_at=0.0),
        request=Request({"type": "http", "method": "GET", "path": "/", "headers": []}),
    )
    with pytest.raises(Refusal) as refused:
        await OnLogin(on_login, timeout=0.05).decide(sign_in)
    assert refused.value.detail == "on_login_error"
    assert any("did not answer within" in r.getMessage() for r in caplog.records)


async def test_an_apps_own_tests_sign_in_through_its_hook() -> None:
    guard = OAuthGuard(
        app(),
        issuer="https://idp.example.test",
        client_id="app-client",
        client_secret="app-secret-0123456789",
        secret_key=SECRET_KEY,
        on_login=lambda s: SignInAccepted(user_id=f"u-{s.sub}"),
    )
    async with signed_in(guard, sub="bob") as client:
        assert (await client.get("/me")).json()["user_id"] == "u-bob"
    await guard.aclose()
