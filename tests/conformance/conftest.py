"""The conformance tests' world: one case's provider, guard and browsers, and the sign-in they go through."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import MemoryStore, OAuthGuard, current_identity
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider
from asgi_oauth_guard.testing._keys import rsa_key

CLIENT_ID = "guard-client"
CLIENT_SECRET = "guard-secret-value-0123456789"
SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
APP_URL = "http://app.test"


@pytest.fixture
def anyio_backend() -> str:
    # The guard's code under test is backend-neutral and covered on trio elsewhere; one backend keeps
    # this module (some forty full sign-ins) fast.
    return "asyncio"


async def whoami(request: Request) -> JSONResponse:
    identity = current_identity()
    if identity is None:
        return JSONResponse({"user": None})
    return JSONResponse({"user": identity.sub, "claims": dict(identity.claims)})


class World:
    """One case's provider, guard and browsers, cleaned up by the fixture."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.clients: list[httpx.AsyncClient] = []

    def provider(self, case: str, **settings: Any) -> OAuthTestProvider:
        if case == "rp-token_endpoint-private_key_jwt":
            settings.setdefault("client_jwks", {"keys": [rsa_key("client").as_dict(private=False)]})
        return OAuthTestProvider.conformance_case(
            case, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=self.clock, **settings
        )

    def guard(self, provider: OAuthTestProvider, **settings: Any) -> OAuthGuard:
        http = httpx.AsyncClient(transport=provider.transport())
        self.clients.append(http)
        options: dict[str, Any] = {
            "issuer": provider.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "secret_key": SECRET_KEY,
            "http_client": http,
            "clock": self.clock,
            "store": MemoryStore(clock=self.clock),
            "require_login": ["/me"],
            **settings,
        }
        return OAuthGuard(Starlette(routes=[Route("/me", whoami)]), **options)

    def browser(self, guard: OAuthGuard) -> httpx.AsyncClient:
        browser = httpx.AsyncClient(
            transport=httpx.ASGITransport(guard), base_url=APP_URL, headers={"accept": "text/html"}
        )
        self.clients.append(browser)
        return browser


@pytest.fixture
async def world() -> AsyncIterator[World]:
    made = World(FakeClock(start=1_800_000_000.0))
    yield made
    for client in made.clients:
        await client.aclose()


@dataclasses.dataclass(frozen=True)
class SignIn:
    login: httpx.Response
    callback: httpx.Response | None
    me: httpx.Response

    @property
    def responses(self) -> list[httpx.Response]:
        return [r for r in (self.login, self.callback, self.me) if r is not None]


async def sign_in(browser: httpx.AsyncClient, provider: OAuthTestProvider) -> SignIn:
    login = await browser.get("/auth/login", params={"next": "/me"})
    callback = None
    if login.status_code == 303:
        callback = await browser.get(await provider.complete_authorization(login.headers["location"]))
    return SignIn(login=login, callback=callback, me=await browser.get("/me"))


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def assert_signed_in(result: SignIn) -> dict[str, Any]:
    assert result.callback is not None and result.callback.status_code == 303, result.callback
    assert result.callback.headers["location"] == "/me"
    assert "guard_session=" in result.callback.headers.get("set-cookie", "")
    assert result.me.status_code == 200
    body: dict[str, Any] = result.me.json()
    assert body["user"] == "alice"
    return body


def assert_refused(result: SignIn) -> None:
    """The re-login response with the reason, no session cookie, and no session for the browser."""
    assert all(r.status_code != 500 for r in result.responses)
    assert result.callback is not None and result.callback.status_code == 303
    location = result.callback.headers["location"]
    assert location.startswith("/auth/login?"), location
    assert query(location)["reason"] == "access_denied"
    assert not any(v.startswith("guard_session=") for v in result.callback.headers.get_list("set-cookie"))
    assert result.me.status_code == 303  # /me needs a login: the browser holds no session
    assert query(result.me.headers["location"])["reason"] == "login_required"
