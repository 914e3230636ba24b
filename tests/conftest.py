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

from .engines import engines, postgres_server, redis_cluster, redis_sentinel  # noqa: F401  (session fixtures)
from .redis_server import redis_server, redis_url  # noqa: F401  (session fixtures for every folder)

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


async def send_origin_like_a_browser(request: httpx.Request) -> None:
    """An httpx request hook: a POST (any non-GET) carries the ``Origin`` of the page that sent it, as
    browsers do, here the request's own origin (a same-origin form). Set ``origin`` to act as another site."""
    if request.method not in ("GET", "HEAD") and "origin" not in request.headers:
        request.headers["origin"] = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"


class BrowserFactory:
    """Makes test browsers (httpx clients with a cookie jar) for an app; remembers them for checks."""

    def __init__(self) -> None:
        self.clients: list[httpx.AsyncClient] = []

    def __call__(self, app: OAuthGuard, base_url: str = APP_URL) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url=base_url,
            headers={"accept": "text/html"},
            event_hooks={"request": [send_origin_like_a_browser]},
        )
        self.clients.append(client)
        return client


@pytest.fixture
async def browser_factory() -> AsyncIterator[BrowserFactory]:
    factory = BrowserFactory()
    yield factory
    for client in factory.clients:
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
def no_secrets_in_logs(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test: no log record carries a token, code, secret or cookie value.

    Checked against the client secret, the signing key, everything the test's provider issued
    (codes, access, refresh and ID tokens), the PKCE verifiers sent, and every cookie the browsers got.
    """
    caplog.set_level(logging.DEBUG)
    fixtures = request.fixturenames
    provider = request.getfixturevalue("provider") if "provider" in fixtures else None
    browsers = request.getfixturevalue("browser_factory") if "browser_factory" in fixtures else None
    yield
    seen = [CLIENT_SECRET, SECRET_KEY]
    if provider is not None:
        seen += provider.issued_secrets()
        seen += [c.params.get("code_verifier", "") for c in provider.calls]
    if browsers is not None:
        for browser in browsers.clients:
            seen += [cookie.value or "" for cookie in browser.cookies.jar]
    # httpx logs every URL it loads, and the tests' own clients load callback URLs (codes) and
    # end_session URLs (ID tokens). The guard's own outbound URLs carry no secret: it sends them only
    # in POST bodies and headers. So httpx's lines are left out; every other logger is checked.
    records = [
        r
        for phase in ("setup", "call")
        for r in caplog.get_records(phase)
        if r.name.split(".")[0] not in ("httpx", "httpcore")
    ]
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in records)
    leaked = [value for value in seen if len(value) >= 8 and value in text]
    assert not leaked, f"{len(leaked)} secret value(s) reached the logs"


class CountingStore:
    """A MemoryStore behind a wrapper that counts each operation the guard calls (``counts``) and keeps the
    keys it was called with (``keys["replace"]``)."""

    def __init__(self, clock: FakeClock) -> None:
        self._inner = MemoryStore(clock=clock)
        self.counts: dict[str, int] = {}
        self.keys: dict[str, list[str]] = {}

    def _count(self, name: str, key: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1
        self.keys.setdefault(name, []).append(key)

    async def get(self, key: str) -> bytes | None:
        self._count("get", key)
        return await self._inner.get(key)

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        self._count("set", key)
        await self._inner.set(key, value, ttl=ttl)

    async def replace(self, key: str, value: bytes, *, ttl: float) -> bool:
        self._count("replace", key)
        return await self._inner.replace(key, value, ttl=ttl)

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        self._count("add", key)
        return await self._inner.add(key, value, ttl=ttl)

    async def delete(self, key: str) -> None:
        self._count("delete", key)
        await self._inner.delete(key)

    async def acquire(self, key: str, owner: str, *, lease: float) -> bool:
        self._count("acquire", key)
        return await self._inner.acquire(key, owner, lease=lease)

    async def release(self, key: str, owner: str) -> bool:
        self._count("release", key)
        return await self._inner.release(key, owner)

    async def index_add(self, key: str, member: str, *, ttl: float) -> None:
        self._count("index_add", key)
        await self._inner.index_add(key, member, ttl=ttl)

    async def index_members(self, key: str) -> list[str]:
        self._count("index_members", key)
        return await self._inner.index_members(key)

    async def index_discard(self, key: str, member: str) -> None:
        self._count("index_discard", key)
        await self._inner.index_discard(key, member)
