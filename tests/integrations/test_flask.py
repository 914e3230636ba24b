"""The Flask integration: a Flask app under the guard through asgiref (asyncio only: asgiref has no trio)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextvars import ContextVar, copy_context
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from flask import Flask, session

from asgi_oauth_guard import GuardAuth, LoginParams, MemoryStore, OAuthGuard, current_identity
from asgi_oauth_guard.integrations.flask import (
    current_token,
    current_user,
    login_required,
    require_recent_sign_in,
    require_user,
    wrap,
)
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET, ISSUER, SECRET_KEY, BrowserFactory, login
from ..lifespan import running

pytestmark = pytest.mark.anyio

API = {"accept": "application/json"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_flask(provider: OAuthTestProvider) -> Flask:
    flask_app = Flask(__name__)
    flask_app.secret_key = "flask-own-session-signing-key"

    @flask_app.get("/whoami")
    def whoami() -> dict[str, Any]:
        user = current_user()
        return {
            "sub": user.sub if user else None,
            "token": current_token(),
            "same_as_core": user is current_identity(),
            "thread": threading.get_ident(),
        }

    @flask_app.get("/private")
    @login_required
    def private() -> dict[str, Any]:
        user = current_user()
        assert user is not None
        return {"sub": user.sub}

    flask_app.add_url_rule("/api/private", "api_private", private, methods=["GET", "POST"])

    @flask_app.get("/api/userinfo")
    @login_required
    def userinfo() -> Any:
        async def call() -> Any:
            async with httpx.AsyncClient(transport=provider.transport()) as http:
                return (await http.get(f"{ISSUER}/userinfo", auth=GuardAuth())).json()

        return async_to_sync(call)()

    @flask_app.get("/typed")
    def typed() -> dict[str, Any]:
        return {"sub": require_user().sub}  # an Identity, never None

    flask_app.add_url_rule("/api/typed", "api_typed", typed)

    @flask_app.get("/admin")
    def admin() -> dict[str, Any]:
        return {"sub": require_recent_sign_in(max_age=300).sub}

    @flask_app.get("/count")
    def count() -> dict[str, int]:
        session["n"] = session.get("n", 0) + 1
        return {"n": session["n"]}

    return flask_app


@pytest.fixture
async def settings(provider: OAuthTestProvider, clock: FakeClock) -> AsyncIterator[dict[str, Any]]:
    async with httpx.AsyncClient(transport=provider.transport()) as http:
        yield {
            "issuer": ISSUER,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "secret_key": SECRET_KEY,
            "http_client": http,
            "clock": clock,
            "store": MemoryStore(clock=clock),
        }


@pytest.fixture
def guard(provider: OAuthTestProvider, settings: dict[str, Any]) -> OAuthGuard:
    return wrap(make_flask(provider), **settings)


@pytest.fixture
def browser(guard: OAuthGuard, browser_factory: BrowserFactory) -> httpx.AsyncClient:
    return browser_factory(guard)


async def test_views_see_the_user_through_the_contextvar_in_asgirefs_thread(
    browser: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    anonymous = (await browser.get("/whoami")).json()
    assert anonymous["sub"] is None and anonymous["token"] is None
    await login(browser, provider)
    me = (await browser.get("/whoami")).json()
    assert me["sub"] == "alice" and me["same_as_core"] is True
    assert me["thread"] != threading.get_ident()  # the view ran in asgiref's worker thread
    assert provider.grant_alive(me["token"])
    assert (await browser.get("/private")).json() == {"sub": "alice"}


async def test_login_required_redirects_a_browser_with_next_and_reason(browser: httpx.AsyncClient) -> None:
    response = await browser.get("/private?tab=2")
    assert response.status_code == 303
    assert response.headers["location"] == "/auth/login?next=%2Fprivate%3Ftab%3D2&reason=login_required"
    assert response.headers["cache-control"] == "no-store"


async def test_login_required_answers_api_calls_like_the_guard(
    provider: OAuthTestProvider, settings: dict[str, Any], browser_factory: BrowserFactory
) -> None:
    ours = browser_factory(wrap(make_flask(provider), **settings))
    theirs = browser_factory(wrap(make_flask(provider), **settings, require_login=["/api/"]))
    for method in ("GET", "POST"):
        mine = await ours.request(method, "/api/private", headers=API)
        guards = await theirs.request(method, "/api/private", headers=API)  # the guard answers before Flask
        assert mine.status_code == guards.status_code == 401
        assert (
            mine.json()
            == guards.json()
            == {
                "error": "login_required",
                "reason": "login_required",
                "login_url": "/auth/login?next=%2Fapi%2Fprivate&reason=login_required",
            }
        )
        for header in ("content-type", "www-authenticate", "cache-control"):
            assert mine.headers[header] == guards.headers[header]


async def test_login_required_passes_the_guards_reason(
    browser: httpx.AsyncClient, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    await login(browser, provider)
    provider.revoke_grants("alice")
    clock.advance(3600)
    await browser.get("/whoami")  # the refresh is refused and the session's tokens dropped
    response = await browser.get("/private")
    assert response.status_code == 303
    assert response.headers["location"] == "/auth/login?next=%2Fprivate&reason=refresh_rejected"


async def test_a_relogin_raised_in_a_view_gets_the_relogin_response(
    browser: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    await login(browser, provider)
    assert (await browser.get("/api/userinfo")).json()["sub"] == "alice"
    provider.revoke_grants("alice")
    response = await browser.get("/api/userinfo")
    assert response.status_code == 401 and response.json()["reason"] == "refresh_rejected"


async def test_an_outage_raised_in_a_view_gets_a_503_not_a_500(
    browser: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    await login(browser, provider)
    provider.expire_access_tokens()
    provider.fail_next(1, status=503)
    response = await browser.get("/api/userinfo")
    assert response.status_code == 503 and response.headers["retry-after"]
    assert (await browser.get("/api/userinfo")).json()["sub"] == "alice"


async def test_flasks_own_session_keeps_working_beside_the_guards(
    browser: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    assert (await browser.get("/count")).json() == {"n": 1}
    await login(browser, provider)
    assert (await browser.get("/count")).json() == {"n": 2}
    assert (await browser.get("/whoami")).json()["sub"] == "alice"
    assert (await browser.get("/count")).json() == {"n": 3}
    assert {"session", "guard_session"} <= set(browser.cookies.keys())


async def test_the_lifespan_is_answered_for_flask(guard: OAuthGuard) -> None:
    async with running(guard):
        pass  # running() asserts the startup and the shutdown complete


async def test_require_user_answers_anonymous_users_with_the_guards_relogin_response(
    browser: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    page = await browser.get("/typed")
    assert page.status_code == 303
    assert page.headers["location"] == "/auth/login?next=%2Ftyped&reason=login_required"
    api = await browser.get("/api/typed", headers=API)
    assert api.status_code == 401 and api.json()["login_url"].startswith("/auth/login?next=%2Fapi%2Ftyped")
    await login(browser, provider)
    assert (await browser.get("/typed")).json() == {"sub": "alice"}


@pytest.mark.parametrize("path", ["/private", "/typed", "/whoami"])
async def test_under_flask_run_a_view_that_reads_the_user_says_to_serve_it_with_uvicorn(
    provider: OAuthTestProvider, path: str
) -> None:
    flask_app = make_flask(provider)
    flask_app.testing = True  # exceptions reach the caller, as the debugger of `flask run --debug` shows them
    with flask_app.test_client() as client, pytest.raises(RuntimeError, match="flask run") as raised:
        client.get(path)
    assert "uvicorn yourmodule:app --reload" in str(raised.value) and "wrap(flask_app" in str(raised.value)


_leaked: ContextVar[str | None] = ContextVar("leaked", default=None)


async def test_each_request_runs_in_a_clean_context_with_only_its_own_variables(
    provider: OAuthTestProvider, settings: dict[str, Any], browser_factory: BrowserFactory
) -> None:
    """A server task may inherit the previous request's context (cpython#140947); the view never sees it."""
    flask_app = Flask(__name__)

    @flask_app.get("/context")
    def context() -> dict[str, Any]:
        names = sorted(var.name for var in copy_context())
        return {"leaked": _leaked.get(), "user": current_user() is not None, "names": names}

    browser = browser_factory(wrap(flask_app, **settings))
    _leaked.set("the previous request's value")
    seen = (await browser.get("/context")).json()
    assert seen["leaked"] is None and seen["user"] is False
    assert "leaked" not in seen["names"] and "asgi_oauth_guard_state" in seen["names"]


async def test_a_view_demanding_a_recent_sign_in_gets_one(
    provider: OAuthTestProvider, settings: dict[str, Any], browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    provider.signed_in_at("alice", clock() - 3600)
    browser = browser_factory(wrap(make_flask(provider), **settings, login_params=LoginParams(max_age=True)))
    await login(browser, provider)
    stale = await browser.get("/admin")
    assert stale.status_code == 303 and stale.headers["location"] == "/auth/login?next=%2Fadmin&max_age=300"
    api = await browser.get("/admin", headers={"accept": "application/json"})
    assert api.status_code == 401 and api.json()["error"] == "insufficient_user_authentication"
    started = await browser.get(stale.headers["location"])
    assert (await browser.get(await provider.complete_authorization(started.headers["location"]))).is_redirect
    assert (await browser.get("/admin")).json() == {"sub": "alice"}
