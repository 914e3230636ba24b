"""The Django integration: Django's ASGI application behind the guard, sync and async views (asyncio only:
asgiref has no trio)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar, copy_context
from typing import Any

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, JsonResponse
from django.test import Client, override_settings
from django.urls import path

import examples.django_app  # noqa: F401  (configures Django's settings for this process, once)
from asgi_oauth_guard import (
    LoginParams,
    MemoryStore,
    OAuthGuard,
    ProviderUnavailable,
    Reason,
    ReloginRequired,
)
from asgi_oauth_guard.integrations.django import (
    get_identity,
    login_required,
    require_identity,
    require_recent_sign_in,
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


def whoami(request: HttpRequest) -> JsonResponse:
    user = get_identity(request)
    return JsonResponse({"sub": user.sub if user else None, "thread": threading.get_ident()})


@login_required
def sync_private(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sub": require_identity(request).sub, "thread": threading.get_ident()})


@login_required
async def async_private(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sub": require_identity(request).sub, "thread": threading.get_ident()})


def sync_typed(request: HttpRequest) -> JsonResponse:  # no decorator: GuardMiddleware answers
    return JsonResponse({"sub": require_identity(request).sub})


async def async_typed(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sub": require_identity(request).sub})


@login_required
def refused(request: HttpRequest) -> JsonResponse:
    raise ReloginRequired(Reason.refresh_rejected)  # as GuardAuth raises it when a refresh is refused


@login_required
async def outage(request: HttpRequest) -> JsonResponse:
    raise ProviderUnavailable("the provider did not answer")


def middleware_outage(request: HttpRequest) -> JsonResponse:
    raise ProviderUnavailable("the provider did not answer")


@login_required
def sync_admin(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sub": require_recent_sign_in(request, max_age=300).sub})


@login_required
async def async_admin(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sub": require_recent_sign_in(request, max_age=300).sub})


def middleware_admin(request: HttpRequest) -> JsonResponse:  # no decorator: GuardMiddleware answers
    return JsonResponse({"sub": require_recent_sign_in(request, max_age=300).sub})


urlpatterns = [
    path("whoami", whoami),
    path("sync", sync_private),
    path("async", async_private),
    path("api/sync", sync_private),
    path("api/async", async_private),
    path("typed/sync", sync_typed),
    path("typed/async", async_typed),
    path("api/refused", refused),
    path("api/outage", outage),
    path("api/middleware-outage", middleware_outage),
    path("admin/sync", sync_admin),
    path("admin/async", async_admin),
    path("admin/middleware", middleware_admin),
]


@pytest.fixture(autouse=True)
def these_urls() -> Iterator[None]:
    with override_settings(ROOT_URLCONF=__name__):
        yield


GuardMaker = Callable[..., OAuthGuard]


@pytest.fixture
async def make_guard(provider: OAuthTestProvider, clock: FakeClock) -> AsyncIterator[GuardMaker]:
    """Django's ASGI application behind a guard of the test provider; keywords add guard settings."""
    async with httpx.AsyncClient(transport=provider.transport()) as http:

        def make(**settings: Any) -> OAuthGuard:
            return wrap(
                get_asgi_application(),
                issuer=ISSUER,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                secret_key=SECRET_KEY,
                http_client=http,
                clock=clock,
                store=MemoryStore(clock=clock),
                **settings,
            )

        yield make


@pytest.fixture
def guard(make_guard: GuardMaker) -> OAuthGuard:
    return make_guard()


@pytest.fixture
def browser(guard: OAuthGuard, browser_factory: BrowserFactory) -> httpx.AsyncClient:
    return browser_factory(guard)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_views_see_the_user(browser: httpx.AsyncClient, provider: OAuthTestProvider, kind: str) -> None:
    assert (await browser.get("/whoami")).json()["sub"] is None
    await login(browser, provider)
    assert (await browser.get("/whoami")).json()["sub"] == "alice"
    body = (await browser.get(f"/{kind}")).json()
    assert body["sub"] == "alice"
    assert (body["thread"] == threading.get_ident()) is (kind == "async")  # sync views run in a thread


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_login_required_answers_like_the_guard(browser: httpx.AsyncClient, kind: str) -> None:
    page = await browser.get(f"/{kind}?tab=2")
    assert page.status_code == 303
    assert page.headers["location"] == f"/auth/login?next=%2F{kind}%3Ftab%3D2&reason=login_required"
    api = await browser.get(f"/api/{kind}", headers=API)
    assert api.status_code == 401 and api.headers["content-type"] == "application/json"
    assert api.json() == {
        "error": "login_required",
        "reason": "login_required",
        "login_url": f"/auth/login?next=%2Fapi%2F{kind}&reason=login_required",
    }
    assert api.headers["www-authenticate"].startswith("Bearer") and api.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_require_identity_is_answered_by_the_middleware(
    browser: httpx.AsyncClient, provider: OAuthTestProvider, kind: str
) -> None:
    page = await browser.get(f"/typed/{kind}")
    assert page.status_code == 303 and page.headers["location"].startswith("/auth/login?next=%2Ftyped")
    await login(browser, provider)
    assert (await browser.get(f"/typed/{kind}")).json() == {"sub": "alice"}


async def test_guard_errors_raised_in_views_get_the_guards_answer(
    browser: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    await login(browser, provider)
    refused = await browser.get("/api/refused", headers=API)
    assert refused.status_code == 401 and refused.json()["reason"] == "refresh_rejected"
    for path_ in ("/api/outage", "/api/middleware-outage"):
        down = await browser.get(path_, headers=API)
        assert down.status_code == 503 and down.headers["retry-after"]


async def test_the_lifespan_is_answered_for_django(guard: OAuthGuard) -> None:
    async with running(guard):
        pass  # running() asserts the startup and the shutdown complete


@pytest.mark.parametrize("path_", ["/whoami", "/sync", "/typed/sync"])
def test_under_runserver_a_view_that_reads_the_user_says_to_serve_it_with_uvicorn(path_: str) -> None:
    client = Client(raise_request_exception=True)  # Django over WSGI, as manage.py runserver serves it
    with pytest.raises(RuntimeError, match="runserver") as raised:
        client.get(path_)
    assert "uvicorn project.asgi:application --reload" in str(raised.value)


_leaked: ContextVar[str | None] = ContextVar("leaked", default=None)


def context_names(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"leaked": _leaked.get(), "names": sorted(var.name for var in copy_context())})


async def test_each_request_runs_in_a_clean_context(guard: OAuthGuard, browser: httpx.AsyncClient) -> None:
    """A server task may inherit the previous request's context (cpython#140947); the view never sees it."""
    urlpatterns.append(path("context", context_names))
    try:
        _leaked.set("the previous request's value")
        seen = (await browser.get("/context")).json()
    finally:
        urlpatterns.pop()
    assert (
        seen["leaked"] is None and "leaked" not in seen["names"] and "asgi_oauth_guard_state" in seen["names"]
    )


@pytest.mark.parametrize("kind", ["sync", "async", "middleware"])
async def test_a_view_demanding_a_recent_sign_in_gets_one(
    provider: OAuthTestProvider,
    clock: FakeClock,
    make_guard: GuardMaker,
    browser_factory: BrowserFactory,
    kind: str,
) -> None:
    provider.signed_in_at("alice", clock() - 3600)  # the provider's session is an hour old
    browser = browser_factory(make_guard(login_params=LoginParams(max_age=True)))
    await login(browser, provider)
    stale = await browser.get(f"/admin/{kind}")
    assert stale.status_code == 303
    assert stale.headers["location"] == f"/auth/login?next=%2Fadmin%2F{kind}&max_age=300"
    api = await browser.get(f"/admin/{kind}", headers=API)
    assert api.status_code == 401 and api.json()["error"] == "insufficient_user_authentication"
    assert 'error="insufficient_user_authentication"' in api.headers["www-authenticate"]
    started = await browser.get(stale.headers["location"])
    assert (await browser.get(await provider.complete_authorization(started.headers["location"]))).is_redirect
    assert (await browser.get(f"/admin/{kind}")).json() == {"sub": "alice"}  # authenticated just now
