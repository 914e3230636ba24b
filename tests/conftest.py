from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from asgi_oauth_guard import MemoryStore, OAuthGuard, current_identity
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

ISSUER = "https://idp.example.test"
CLIENT_ID = "guard-client"
CLIENT_SECRET = "guard-secret-value-0123456789"
SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
APP_URL = "http://app.test"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_800_000_000.0)


@pytest.fixture
def provider(clock: FakeClock) -> OAuthTestProvider:
    return OAuthTestProvider(issuer=ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)


async def whoami(request: Request) -> JSONResponse:
    identity = current_identity()
    state = request.scope.get("asgi_oauth_guard")
    if identity is None:
        return JSONResponse({"user": None, "reason": str(getattr(state, "reason", None))})
    assert state is not None and state.identity is identity  # the scope key and the ContextVar agree
    return JSONResponse(
        {
            "user": identity.sub,
            "access_token": identity.access_token,
            "expires_at": identity.expires_at,
            "refreshes": identity.refreshes,
        }
    )


def inner_app() -> Starlette:
    async def public(request: Request) -> PlainTextResponse:
        return PlainTextResponse("public")

    return Starlette(
        routes=[
            Route("/", whoami),
            Route("/me", whoami),
            Route("/api/me", whoami, methods=["GET", "POST"]),
            Route("/public", public),
        ]
    )


GuardFactory = Callable[..., OAuthGuard]


@pytest.fixture
async def guard_factory(provider: OAuthTestProvider, clock: FakeClock) -> AsyncIterator[GuardFactory]:
    clients: list[httpx.AsyncClient] = []

    def make(**settings: Any) -> OAuthGuard:
        http = httpx.AsyncClient(transport=provider.transport())
        clients.append(http)
        options: dict[str, Any] = {
            "issuer": ISSUER,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "secret_key": SECRET_KEY,
            "http_client": http,
            "clock": clock,
            "store": MemoryStore(clock=clock),
            "require_login": ["/me", "/api/"],
        }
        options.update(settings)
        app = options.pop("app", None) or inner_app()
        return OAuthGuard(app, **options)

    yield make
    for http in clients:
        await http.aclose()


@pytest.fixture
async def browser_factory() -> AsyncIterator[Callable[[OAuthGuard], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(app: OAuthGuard, base_url: str = APP_URL) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url=base_url, headers={"accept": "text/html"}
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def start_login(browser: httpx.AsyncClient, provider: OAuthTestProvider, next_path: str = "/") -> str:
    """Run the login route and the provider's authorize step; returns the callback URL to load."""
    response = await browser.get("/auth/login", params={"next": next_path})
    assert response.status_code == 303, response.text
    return await provider.complete_authorization(response.headers["location"])


async def login(
    browser: httpx.AsyncClient, provider: OAuthTestProvider, next_path: str = "/"
) -> httpx.Response:
    callback = await start_login(browser, provider, next_path)
    response = await browser.get(callback)
    assert response.status_code == 303, response.text
    return response


SECRET_MARKERS: list[str] = []


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Every test: no log record carries a token, code, secret or cookie value the test saw.

    Tests add what they saw to the returned list; the client secret and signing key are always in it.
    """
    caplog.set_level(logging.DEBUG)
    seen: list[str] = [CLIENT_SECRET, SECRET_KEY]
    yield seen
    # The test's own browser (httpx, base APP_URL) logs the callback URLs it loads; the guard logs nothing of them.
    records = [r for r in caplog.records if not (r.name == "httpx" and APP_URL in r.getMessage())]
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in records)
    for value in seen:
        if value and len(value) >= 8:
            assert value not in text, "a secret value reached the logs"
