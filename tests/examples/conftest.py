from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import ASGIApp

from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider
from examples._settings import Settings

from ..conftest import SECRET_KEY, send_origin_like_a_browser

APP = "http://app.test"
EXAMPLES = ("starlette", "fastapi", "flask", "django")
# asgiref (under Flask and Django) runs on asyncio only.
CASES = [
    pytest.param(name, backend, id=f"{name}-{backend}")
    for name in EXAMPLES
    for backend in ("asyncio", "trio")
    if not (name in ("flask", "django") and backend == "trio")
]


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({"PUBLIC_URL": APP, "GUARD_SECRET_KEY": SECRET_KEY, "DEMO_AUTO_APPROVE": "1"})


@pytest.fixture
def provider(settings: Settings, clock: FakeClock) -> OAuthTestProvider:
    """The embedded provider, as the examples build it, on the test's clock (the suite's log check reads it)."""
    return OAuthTestProvider(
        issuer=settings.embedded_issuer,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        clock=clock,
        access_token_ttl=settings.demo_token_lifetime,
    )


@contextlib.asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run the app's lifespan around the block, as a server does (the examples close their clients then)."""
    to_app, app_receives = anyio.create_memory_object_stream[dict[str, Any]](1)
    app_sends, from_app = anyio.create_memory_object_stream[dict[str, Any]](1)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    async with to_app, app_receives, app_sends, from_app, anyio.create_task_group() as tg:
        tg.start_soon(app, scope, app_receives.receive, app_sends.send)
        await to_app.send({"type": "lifespan.startup"})
        assert await from_app.receive() == {"type": "lifespan.startup.complete"}
        yield
        await to_app.send({"type": "lifespan.shutdown"})
        assert await from_app.receive() == {"type": "lifespan.shutdown.complete"}


@pytest.fixture
async def client(
    example: str, settings: Settings, provider: OAuthTestProvider, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser on the example app, built by its factory around the test's provider and clock."""
    module = importlib.import_module(f"examples.{example}_app")
    app = module.create_app(settings, idp=provider, clock=clock)
    async with (
        lifespan(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url=APP,
            headers={"accept": "text/html"},
            event_hooks={"request": [send_origin_like_a_browser]},
        ) as browser,
    ):
        yield browser
