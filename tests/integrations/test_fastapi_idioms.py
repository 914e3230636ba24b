"""FastAPI's idioms: the guard added with ``app.add_middleware`` (what ``fastapi run`` serves), and
``RequireScopes``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, WebSocket

from asgi_oauth_guard import Identity, MemoryStore, OAuthGuard
from asgi_oauth_guard.integrations import fastapi as guard
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET, ISSUER, SECRET_KEY, BrowserFactory, login

pytestmark = pytest.mark.anyio

API = {"accept": "application/json"}


class WithoutScope(httpx.AsyncBaseTransport):
    """The provider, but its token answers leave ``scope`` out (as RFC 6749 allows when it was granted as
    asked)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/token") or response.status_code != 200:
            return response
        await response.aread()
        body = {k: v for k, v in response.json().items() if k != "scope"}
        return httpx.Response(200, json=body, headers={"cache-control": "no-store"})


@pytest.fixture(params=["scope", "no-scope"])
async def app(
    request: pytest.FixtureRequest, provider: OAuthTestProvider, clock: FakeClock
) -> AsyncIterator[FastAPI]:
    app = FastAPI()
    guard.install(app)

    @app.get("/api/me")
    async def me(user: guard.CurrentUser) -> dict[str, Any]:
        return {"sub": user.sub}

    @app.get("/api/email")
    async def email(user: Annotated[Identity, Depends(guard.RequireScopes("email", "openid"))]) -> Any:
        return {"email": user.claims["email"]}

    @app.get("/api/admin", dependencies=[Depends(guard.RequireScopes("admin"))])
    async def admin() -> dict[str, bool]:
        return {"admin": True}

    transport = provider.transport()
    if request.param == "no-scope":
        transport = WithoutScope(transport)
    async with httpx.AsyncClient(transport=transport) as http:
        app.add_middleware(
            OAuthGuard,
            issuer=ISSUER,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            secret_key=SECRET_KEY,
            http_client=http,
            clock=clock,
            store=MemoryStore(clock=clock),
        )
        yield app


async def test_add_middleware_puts_the_guard_in_front_of_the_routes(
    app: FastAPI, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(app)  # type: ignore[arg-type]  # the FastAPI app itself, as `fastapi run` serves it
    anonymous = await browser.get("/api/me", headers=API)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "login_required"
    await login(browser, provider)  # the guard's own login and callback routes answer
    assert (await browser.get("/api/me", headers=API)).json() == {"sub": "alice"}
    assert (await browser.post("/auth/logout")).status_code == 303
    assert (await browser.get("/api/me", headers=API)).status_code == 401


async def test_require_scopes(
    app: FastAPI, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """Granted scopes come from the token answer, or are the ones asked for when it names none."""
    browser = browser_factory(app)  # type: ignore[arg-type]
    assert (await browser.get("/api/email", headers=API)).status_code == 401  # anonymous: the guard's answer
    await login(browser, provider)
    assert (await browser.get("/api/email", headers=API)).json() == {"email": "alice@example.test"}
    refused = await browser.get("/api/admin", headers=API)
    assert refused.status_code == 403
    assert refused.json() == {"detail": {"error": "insufficient_scope", "scope": "admin"}}
    assert refused.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="admin"'


def test_require_scopes_needs_scope_names() -> None:
    with pytest.raises(ValueError, match="one or more scope names"):
        guard.RequireScopes()
    with pytest.raises(ValueError, match="one or more scope names"):
        guard.RequireScopes("read write")


async def test_require_scopes_on_a_websocket_route(provider: OAuthTestProvider, clock: FakeClock) -> None:
    app = FastAPI()
    guard.install(app)

    @app.websocket("/ws/admin")
    async def admin_socket(
        websocket: WebSocket, user: Annotated[Identity, Depends(guard.RequireScopes("admin"))]
    ) -> None:
        await websocket.accept()  # never reached: alice's token has no "admin" scope
        await websocket.send_text(user.sub)
        await websocket.close()

    @app.websocket("/ws/email")
    async def email_socket(
        websocket: WebSocket, user: Annotated[Identity, Depends(guard.RequireScopes("email"))]
    ) -> None:
        await websocket.accept()
        await websocket.send_text(user.sub)
        await websocket.close()

    async with httpx.AsyncClient(transport=provider.transport()) as http:
        guarded = OAuthGuard(
            app,
            issuer=ISSUER,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            secret_key=SECRET_KEY,
            http_client=http,
            clock=clock,
            store=MemoryStore(clock=clock),
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(guarded), base_url="http://app.test"
        ) as browser:
            await login(browser, provider)
            cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar)
        allowed = await handshake(guarded, "/ws/email", cookie)
        assert [m["type"] for m in allowed[:2]] == ["websocket.accept", "websocket.send"]
        assert allowed[1]["text"] == "alice"
        refused = await handshake(guarded, "/ws/admin", cookie)
        assert refused == [{"type": "websocket.close", "code": 1008, "reason": "insufficient_scope: admin"}]


async def handshake(app: Any, path: str, cookie: str) -> list[dict[str, Any]]:
    """A websocket handshake on ``app``, as a browser on the app's own origin makes it: what the app sent."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"app.test"), (b"origin", b"http://app.test"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("app.test", 80),
        "subprotocols": [],
    }
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent
