"""``/ws`` of each example, served by uvicorn and opened by a real WebSocket client (``websockets``).

uvicorn runs in the test's event loop on a loopback socket, so the app shares the test's embedded provider
and fake clock: an expired token is made by moving the clock, not by waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider
from examples._settings import Settings

from ..conftest import SECRET_KEY
from .conftest import EXAMPLES

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("example", EXAMPLES)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn (and asgiref under Flask) run on asyncio


@contextlib.asynccontextmanager
async def serving(example: str, provider: OAuthTestProvider, clock: FakeClock) -> AsyncIterator[str]:
    """The example app under uvicorn (its default WebSocket implementation) on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings.from_env(
        {"PUBLIC_URL": base, "GUARD_SECRET_KEY": SECRET_KEY, "DEMO_AUTO_APPROVE": "1"}
    )
    app = importlib.import_module(f"examples.{example}_app").create_app(settings, idp=provider, clock=clock)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:  # bounded: uvicorn in this loop, starting up
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield base
    finally:
        server.should_exit = True
        await task
        sock.close()


async def sign_in(base: str, provider: OAuthTestProvider) -> str:
    """Sign in over HTTP (the provider's authorize step in-process); the session cookie header."""
    async with httpx.AsyncClient(base_url=base, trust_env=False, headers={"accept": "text/html"}) as browser:
        login = await browser.get("/auth/login", params={"next": "/"})
        assert login.status_code == 303, login.text
        callback = await provider.complete_authorization(login.headers["location"])
        done = await browser.get(callback)
        assert done.status_code == 303, done.text
        return f"guard_session={browser.cookies['guard_session']}"


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/ws"


async def refused(base: str, **options: object) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(ws_url(base), proxy=None, open_timeout=30, **options):  # type: ignore[arg-type]
            pass
    return caught.value.response.status_code, caught.value.response.body or b""


async def test_ws_sends_the_signed_in_users_sub_and_refuses_anonymous_and_foreign_origins(
    example: str, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    async with serving(example, provider, clock) as base:
        status, body = await refused(base, origin=base)  # uvicorn supports denial responses
        assert status == 401 and b'"reason":"login_required"' in body, (status, body)
        cookie = await sign_in(base, provider)
        async with connect(
            ws_url(base), origin=base, additional_headers={"cookie": cookie}, proxy=None, open_timeout=30
        ) as ws:
            assert await ws.recv() == "alice"
            await ws.send("ping")
            assert await ws.recv() == "ping"
        # Another site's page opening the socket, with the user's cookie: refused before any app code.
        status, body = await refused(
            base, origin="https://evil.example", additional_headers={"cookie": cookie}
        )
        assert status == 403 and b"forbidden_origin" in body


async def test_ws_refreshes_an_expired_token_before_the_socket_is_accepted(
    example: str, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    async with serving(example, provider, clock) as base:
        cookie = await sign_in(base, provider)
        clock.advance(60)  # the demo's 30-second access token has expired
        assert provider.count(endpoint="token", grant_type="refresh_token") == 0
        async with connect(
            ws_url(base), origin=base, additional_headers={"cookie": cookie}, proxy=None, open_timeout=30
        ) as ws:
            assert await ws.recv() == "alice"
            assert provider.count(endpoint="token", grant_type="refresh_token") == 1
        provider.revoke_grants("alice")
        clock.advance(60)
        status, body = await refused(base, origin=base, additional_headers={"cookie": cookie})
        assert status == 401 and b'"reason":"refresh_rejected"' in body, (status, body)
        assert provider.count(endpoint="token", grant_type="refresh_token") == 2
