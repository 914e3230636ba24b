"""Starlette's own idioms behind the guard: ``request.user``/``request.auth`` and ``@requires``, and the typed
``require_identity`` answered by ``install``."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser, requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import GuardUser
from asgi_oauth_guard.integrations.starlette import install, require_identity, requires_login
from asgi_oauth_guard.testing import OAuthTestProvider

from ..conftest import BrowserFactory, GuardFactory, login

pytestmark = pytest.mark.anyio

API = {"accept": "application/json"}


@requires("authenticated")
async def account(request: Request) -> JSONResponse:
    user = request.user
    assert isinstance(user, GuardUser)
    return JSONResponse(
        {
            "identity": user.identity,
            "name": user.display_name,
            "sub": user.oauth.sub,
            "auth": request.auth.scopes,
        }
    )


@requires(["authenticated", "email"])
async def with_email_scope(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@requires(["authenticated", "admin"])
async def admin(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def who(request: Request) -> JSONResponse:
    return JSONResponse({"authenticated": request.user.is_authenticated, "auth": request.auth.scopes})


async def typed(request: Request) -> JSONResponse:
    user = require_identity(request)  # an Identity, never None: mypy --strict needs no assert
    return JSONResponse({"sub": user.sub})


@requires_login
async def typed_inside_requires_login(request: Request) -> JSONResponse:
    return JSONResponse({"sub": require_identity(request).sub})


def make_app(*, installed: bool = True) -> Starlette:
    app = Starlette(
        routes=[
            Route("/account", account),
            Route("/email", with_email_scope),
            Route("/admin", admin),
            Route("/who", who),
            Route("/typed", typed),
            Route("/api/typed", typed),
            Route("/decorated", typed_inside_requires_login),
        ]
    )
    if installed:
        install(app)
    return app


async def test_requires_authenticated_works_with_the_guard(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory(app=make_app(), require_login=False))
    assert (await browser.get("/account")).status_code == 403  # Starlette's answer for anonymous users
    assert (await browser.get("/who")).json() == {"authenticated": False, "auth": []}
    await login(browser, provider)
    answer = await browser.get("/account")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["identity"] == body["sub"] == "alice" and body["name"] == "Alice"
    # "authenticated", then the scopes the provider granted the access token
    assert body["auth"] == ["authenticated", "openid", "email", "profile"]
    assert (await browser.get("/email")).status_code == 200
    assert (await browser.get("/admin")).status_code == 403  # a scope the token does not have


async def test_an_authentication_middleware_inside_the_app_wins(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    class Backend(AuthenticationBackend):
        async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser]:
            return AuthCredentials(["authenticated", "app"]), SimpleUser("app-user")

    app = Starlette(
        routes=[Route("/who", who)], middleware=[Middleware(AuthenticationMiddleware, backend=Backend())]
    )
    browser = browser_factory(guard_factory(app=app, require_login=False))
    await login(browser, provider)
    assert (await browser.get("/who")).json() == {"authenticated": True, "auth": ["authenticated", "app"]}


async def test_require_identity_answers_anonymous_users_with_the_guards_relogin_response(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory(app=make_app(), require_login=False))
    page = await browser.get("/typed?x=1")
    assert page.status_code == 303
    location = urlsplit(page.headers["location"])
    assert location.path == "/auth/login"
    assert parse_qs(location.query) == {"next": ["/typed?x=1"], "reason": ["login_required"]}
    api = await browser.get("/api/typed", headers=API)
    assert api.status_code == 401 and api.json()["error"] == "login_required"
    assert api.headers["www-authenticate"].startswith("Bearer")
    decorated = await browser.get("/decorated")
    assert decorated.status_code == 303
    await login(browser, provider)
    for path in ("/typed", "/api/typed", "/decorated"):
        assert (await browser.get(path)).json() == {"sub": "alice"}


async def test_without_install_require_identity_still_answers_401_not_500(
    guard_factory: GuardFactory, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard_factory(app=make_app(installed=False), require_login=False))
    answer = await browser.get("/api/typed", headers=API)
    assert answer.status_code == 401 and answer.headers["cache-control"] == "no-store"
