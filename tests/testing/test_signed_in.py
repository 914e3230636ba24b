"""``signed_in``: a client signed in to an app behind the guard, whatever the app's framework and provider."""

from __future__ import annotations

import importlib

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from asgi_oauth_guard import OAuthGuard
from asgi_oauth_guard.integrations import fastapi as guard
from asgi_oauth_guard.integrations.starlette import require_identity
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider, find_guard, signed_in
from examples._settings import Settings

pytestmark = pytest.mark.anyio

SECRET_KEY = "a-test-secret-key-of-at-least-32-characters"


class NoNetwork(httpx.AsyncBaseTransport):
    """The guard's own HTTP client, as deployed: any call through it would leave the test process."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise httpx.ConnectError("the test tried the network", request=request)


async def me(request: Request) -> JSONResponse:
    user = require_identity(request)
    return JSONResponse({"sub": user.sub, "claims": dict(user.claims)})


def production_app(http: httpx.AsyncClient, **settings: object) -> OAuthGuard:
    """Configured for a real provider, as the app is deployed."""
    options: dict[str, object] = {
        "issuer": "https://accounts.google.com",
        "client_id": "my-app.apps.googleusercontent.com",
        "client_secret": "my-real-secret",
        "secret_key": SECRET_KEY,
        "public_url": "https://app.example.com",
        "http_client": http,
        **settings,
    }
    return OAuthGuard(Starlette(routes=[Route("/api/me", me)]), **options)  # type: ignore[arg-type]


async def test_an_app_configured_for_a_real_provider_is_signed_in_without_the_network() -> None:
    network = NoNetwork()
    async with httpx.AsyncClient(transport=network) as http:
        app = production_app(http)
        claims = {"email": "ada@example.com", "name": "Ada", "groups": ["admin"]}
        async with signed_in(app, sub="ada", claims=claims) as client:
            assert str(client.base_url) == "https://app.example.com"  # where the guard's cookies live
            body = (await client.get("/api/me", headers={"accept": "application/json"})).json()
        assert body["sub"] == "ada" and body["claims"]["iss"] == "https://accounts.google.com"
        assert body["claims"]["email"] == "ada@example.com" and body["claims"]["groups"] == ["admin"]
        assert network.calls == 0
        assert app.client._http is http  # routed back to the app's own client afterwards


async def test_the_guard_is_found_behind_add_middleware_and_mounts() -> None:
    api = FastAPI()
    guard.install(api)

    @api.get("/me")
    async def who(user: guard.CurrentUser) -> dict[str, str]:
        return {"sub": user.sub}

    async with httpx.AsyncClient(transport=NoNetwork()) as http:
        api.add_middleware(
            OAuthGuard,
            issuer="https://login.example.com/tenant/v2.0",
            client_id="c",
            client_secret="s",
            secret_key=SECRET_KEY,
            http_client=http,
        )
        outer = Starlette(routes=[Mount("/", app=api)])
        assert isinstance(find_guard(outer), OAuthGuard)
        async with signed_in(outer, sub="bob") as client:
            assert (await client.get("/me")).json() == {"sub": "bob"}


async def test_a_provider_of_your_own_shows_what_happened(clock: FakeClock) -> None:
    provider = OAuthTestProvider(
        issuer="https://accounts.google.com", client_id="c", client_secret="s", clock=clock
    )
    async with httpx.AsyncClient(transport=NoNetwork()) as http:
        app = production_app(http, client_id="c", client_secret="s", clock=clock)
        async with signed_in(app, provider=provider) as client:
            assert (await client.get("/api/me")).json()["sub"] == "alice"
            provider.revoke_grants("alice")
            clock.advance(3600)
            refused = await client.get("/api/me", headers={"accept": "application/json"})
            assert refused.status_code == 401 and refused.json()["reason"] == "refresh_rejected"
    assert provider.count(endpoint="token", grant_type="authorization_code") == 1


@pytest.mark.parametrize("example", ["starlette", "fastapi", "flask", "django"])
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # Flask and Django under asgiref
async def test_every_example_app(example: str, clock: FakeClock) -> None:
    settings = Settings.from_env({"PUBLIC_URL": "http://app.test", "GUARD_SECRET_KEY": SECRET_KEY})
    idp = OAuthTestProvider(
        issuer=settings.embedded_issuer,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        clock=clock,
    )
    app = importlib.import_module(f"examples.{example}_app").create_app(settings, idp=idp, clock=clock)
    async with signed_in(app, provider=idp, sub="bob") as client:
        assert (await client.get("/api/me")).json()["sub"] == "bob"
        assert 'Signed in as <strong id="user">Bob</strong>' in (await client.get("/")).text


async def test_mistakes_are_named() -> None:
    with pytest.raises(LookupError, match="no OAuthGuard found"):
        find_guard(Starlette())
    async with httpx.AsyncClient(transport=NoNetwork()) as http:
        app = production_app(http)
        elsewhere = OAuthTestProvider(issuer="https://idp.example.test")
        with pytest.raises(ValueError, match="is not the guard's"):
            async with signed_in(app, provider=elsewhere):
                pass


def test_extra_claims_cannot_replace_the_ones_the_provider_sets() -> None:
    provider = OAuthTestProvider()
    with pytest.raises(ValueError, match=r"cannot set \['iss', 'sub'\]"):
        provider.add_user("eve", claims={"sub": "alice", "iss": "https://evil.example", "groups": []})
    assert not provider.has_user("eve")
