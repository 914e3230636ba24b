"""Each example app under a sub-path: sign-in, refresh and sign-out, with the root path counted once.

Two ways to be under ``/app``: ``Mount("/app", example)`` in a Starlette app (in-process), and
``uvicorn --root-path /app`` behind a reverse proxy on loopback that strips ``/app`` (both as real
processes). The browser only ever sees ``/app/...``: every redirect, link, ``next``, the redirect URI and
the cookies' ``Path`` must say ``/app``, never ``/`` and never ``/app/app``.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider
from examples._settings import Settings

from ..conftest import SECRET_KEY, GuardFactory
from ..examples.conftest import CASES, EXAMPLES
from ..examples.test_served import served
from ..lifespan import running
from .served import reverse_proxy

ROOT = Path(__file__).resolve().parents[2]
API = {"accept": "application/json"}

pytestmark = pytest.mark.anyio


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def cookie_attributes(response: httpx.Response, name: str) -> str:
    found = [c for c in response.headers.get_list("set-cookie") if c.startswith(name + "=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


async def sign_in_refresh_and_sign_out(browser: httpx.AsyncClient, origin: str) -> None:
    """The whole flow, as a browser at ``origin`` sees an example mounted at ``/app``."""
    anonymous = await browser.get("/app/api/me", headers=API)
    assert anonymous.status_code == 401, anonymous.text
    login_url = anonymous.json()["login_url"]
    assert login_url == "/app/auth/login?next=%2Fapp%2Fapi%2Fme&reason=login_required"
    home = await browser.get("/app/")
    assert home.status_code == 200 and 'href="/app/auth/login?next=/app/"' in home.text
    assert 'action="/app/auth/logout"' not in home.text  # not signed in yet

    login = await browser.get(login_url)
    assert login.status_code == 303, login.text
    authorize = login.headers["location"]
    assert authorize.startswith(f"{origin}/app/idp/authorize?")
    assert query(authorize)["redirect_uri"] == f"{origin}/app/auth/callback"
    assert "; Path=/app;" in cookie_attributes(login, "guard_session_tx")
    approved = await browser.get(authorize)
    assert approved.status_code == 302
    callback = approved.headers["location"]
    assert callback.startswith(f"{origin}/app/auth/callback?code=")
    done = await browser.get(callback)
    assert done.status_code == 303 and done.headers["location"] == "/app/api/me", done.text
    assert "; Path=/app;" in cookie_attributes(done, "guard_session")

    me = (await browser.get("/app/api/me", headers=API)).json()
    assert me["sub"] == "alice" and me["refreshes"] == 0
    home = await browser.get("/app/")
    assert 'Signed in as <strong id="user">Alice</strong>' in home.text
    assert 'action="/app/auth/logout"' in home.text and 'action="/app/demo/expire"' in home.text

    # Refresh: the demo's button makes the provider expire the token; the next API call refreshes it.
    expired = await browser.post("/app/demo/expire")
    assert expired.status_code == 303 and expired.headers["location"] == "/app/"
    again = (await browser.get("/app/api/me", headers=API)).json()
    assert again["refreshes"] == 1 and again["access_token"] != me["access_token"]

    out = await browser.post("/app/auth/logout", headers={"origin": origin, "sec-fetch-site": "same-origin"})
    assert out.status_code == 303 and out.headers["location"] == "/app/"
    assert "; Path=/app;" in cookie_attributes(out, "guard_session")
    assert (await browser.get("/app/api/me", headers=API)).status_code == 401
    assert "You are not signed in." in (await browser.get("/app/")).text


# -- Mount("/app", example) -------------------------------------------------------------------------

APP = "http://app.test"


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env(
        {"PUBLIC_URL": f"{APP}/app", "GUARD_SECRET_KEY": SECRET_KEY, "DEMO_AUTO_APPROVE": "1"}
    )


@pytest.fixture
def provider(settings: Settings, clock: FakeClock) -> OAuthTestProvider:
    assert settings.embedded_issuer == f"{APP}/app/idp"
    return OAuthTestProvider(
        issuer=settings.embedded_issuer,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        clock=clock,
        access_token_ttl=settings.demo_token_lifetime,
    )


async def cookies_sent(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.headers.get("cookie", ""))


@pytest.fixture
async def mounted(
    example: str, settings: Settings, provider: OAuthTestProvider, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    app = importlib.import_module(f"examples.{example}_app").create_app(settings, idp=provider, clock=clock)
    outer = Starlette(routes=[Mount("/app", app=app), Route("/elsewhere", cookies_sent)])
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(outer), base_url=APP) as browser,
    ):
        browser.headers["accept"] = "text/html"
        yield browser


@pytest.mark.parametrize(("example", "anyio_backend"), CASES)
async def test_each_example_under_a_starlette_mount(
    mounted: httpx.AsyncClient, clock: FakeClock, example: str
) -> None:
    await sign_in_refresh_and_sign_out(mounted, APP)


@pytest.mark.parametrize(("example", "anyio_backend"), CASES)
async def test_under_a_mount_the_session_stays_in_its_path_and_refreshes_when_due(
    mounted: httpx.AsyncClient, clock: FakeClock, example: str
) -> None:
    login = await mounted.get("/app/auth/login")
    callback = (await mounted.get(login.headers["location"])).headers["location"]
    assert (await mounted.get(callback)).headers["location"] == "/app/"  # no next: the mount's own root
    assert "guard_session" not in (await mounted.get("/elsewhere")).text  # Path=/app: not sent here
    clock.advance(21)
    me = (await mounted.get("/app/api/me", headers=API)).json()
    assert me["refreshes"] == 1


# -- uvicorn --root-path /app behind a proxy that strips /app --------------------------------------


@contextlib.contextmanager
def _stripping_proxy(port: int) -> Iterator[str]:
    """A reverse proxy in front of uvicorn's ``port`` that strips ``/app``; yields its origin."""
    with reverse_proxy(port, strip_prefix="/app") as proxy:
        yield f"http://127.0.0.1:{proxy}"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("example", EXAMPLES)
async def test_each_example_under_uvicorn_root_path_behind_a_stripping_proxy(example: str) -> None:
    with served(example, "--root-path", "/app", front=_stripping_proxy, prefix="/app") as base:
        origin = base.removesuffix("/app")
        async with httpx.AsyncClient(base_url=origin, headers={"accept": "text/html"}) as browser:
            await sign_in_refresh_and_sign_out(browser, origin)


@pytest.mark.parametrize(("example", "anyio_backend"), [("starlette", "asyncio"), ("starlette", "trio")])
async def test_a_server_that_leaves_the_root_path_out_of_path_counts_it_once_too(
    example: str, settings: Settings, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    """Older ASGI servers set ``root_path`` but did not put it in ``path`` (the spec now says they do)."""
    app = importlib.import_module(f"examples.{example}_app").create_app(settings, idp=provider, clock=clock)

    async def old_server(scope: dict[str, object], receive: object, send: object) -> None:
        path = str(scope["path"])
        if scope["type"] == "http" and path.startswith("/app"):
            scope = {**scope, "root_path": "/app", "path": path[len("/app") :] or "/"}
        await app(scope, receive, send)  # type: ignore[arg-type]

    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(old_server), base_url=APP) as browser,  # type: ignore[arg-type]
    ):
        browser.headers["accept"] = "text/html"
        login = await browser.get("/app/auth/login", params={"next": "/app/api/me"})
        assert login.status_code == 303
        assert query(login.headers["location"])["redirect_uri"] == f"{APP}/app/auth/callback"
        assert (
            (await browser.get("/app/api/me", headers=API)).json()["login_url"].startswith("/app/auth/login?")
        )


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_host_prefixed_cookie_keeps_path_slash_under_a_mount(
    guard_factory: GuardFactory, provider: OAuthTestProvider
) -> None:
    """``__Host-`` (the default name on https) is dropped by browsers unless ``Path=/``: it wins over the mount."""
    for settings, name, path in (
        ({}, "__Host-guard_session_tx", "/"),
        ({"cookie_name": "guard_session"}, "guard_session_tx", "/app"),
    ):
        guard = guard_factory(issuer=provider.issuer, public_url="https://app.test/app", **settings)
        outer = Starlette(routes=[Mount("/app", app=guard)])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(outer), base_url="https://app.test") as c:
            login = await c.get("/app/auth/login")
            assert login.status_code == 303
            assert f"; Path={path};" in cookie_attributes(login, name)
