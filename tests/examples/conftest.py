from __future__ import annotations

import importlib
from collections.abc import AsyncIterator

import httpx
import pytest

from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider
from examples._settings import Settings

from ..conftest import SECRET_KEY, send_origin_like_a_browser
from ..lifespan import running

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


@pytest.fixture
async def client(
    example: str, settings: Settings, provider: OAuthTestProvider, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """A browser on the example app, built by its factory around the test's provider and clock."""
    module = importlib.import_module(f"examples.{example}_app")
    app = module.create_app(settings, idp=provider, clock=clock)
    async with (
        running(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url=APP,
            headers={"accept": "text/html"},
            event_hooks={"request": [send_origin_like_a_browser]},
        ) as browser,
    ):
        yield browser
