"""WebSockets are guarded like page loads: the session from the Cookie header, the identity published,
``require_login`` refused before the app accepts, the ``Origin`` checked (cross-site WebSocket hijacking).

Driven here by hand-built handshakes (with and without the server's denial-response extension); the same
against uvicorn with a real WebSocket client: tests/examples/test_websocket_served.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Message
from starlette.websockets import WebSocket

from asgi_oauth_guard import SCOPE_KEY, GuardState, current_identity
from asgi_oauth_guard.integrations import fastapi as guard_fastapi
from asgi_oauth_guard.integrations.starlette import get_identity, install, require_identity, requires_login
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from .conftest import APP_URL, BrowserFactory, GuardFactory, login
from .test_refresh import FlakyStore

pytestmark = pytest.mark.anyio


class Socket:
    """What the app saw of one handshake: whether it ran, and its messages to the client."""

    def __init__(self, sent: list[Message]) -> None:
        self.sent = sent

    @property
    def accepted(self) -> bool:
        return any(m["type"] == "websocket.accept" for m in self.sent)

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]

    @property
    def denial(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        start = next(m for m in self.sent if m["type"] == "websocket.http.response.start")
        body = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "websocket.http.response.body")
        headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return start["status"], json.loads(body), headers

    @property
    def close_code(self) -> int | None:
        codes = [m.get("code", 1000) for m in self.sent if m["type"] == "websocket.close"]
        return codes[0] if codes else None


async def handshake(
    app: ASGIApp,
    path: str = "/ws",
    *,
    cookie: str | None = None,
    origin: str | None = APP_URL,
    denial_responses: bool = True,
) -> Socket:
    headers = [(b"host", b"app.test"), (b"upgrade", b"websocket"), (b"sec-websocket-version", b"13")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", f"guard_session={cookie}".encode()))
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "server": ("app.test", 80),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "subprotocols": [],
        "state": {},
        "extensions": {"websocket.http.response": {}} if denial_responses else {},
    }
    incoming: list[Message] = [{"type": "websocket.connect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return Socket(sent)


def socket_app(provider: OAuthTestProvider) -> Starlette:
    """``/ws`` sends the user's sub (or "anonymous"), the provider's refresh count when it accepted, and
    whether the scope key and the ContextVar agree; ``/guarded`` does the same under ``requires_login``."""

    async def whoami(websocket: WebSocket) -> None:
        identity = get_identity(websocket)
        state = websocket.scope[SCOPE_KEY]
        assert isinstance(state, GuardState) and state.identity is current_identity()
        refreshed = provider.count(endpoint="token", grant_type="refresh_token")
        await websocket.accept()
        await websocket.send_text(identity.sub if identity else "anonymous")
        await websocket.send_text(f"refreshes before accept: {refreshed}")
        await websocket.close()

    return Starlette(
        routes=[WebSocketRoute("/ws", whoami), WebSocketRoute("/guarded", requires_login(whoami))]
    )


@pytest.fixture
def make_guard(guard_factory: GuardFactory, provider: OAuthTestProvider) -> GuardFactory:
    def make(**settings: Any) -> Any:
        return guard_factory(**{"app": socket_app(provider), "require_login": ["/ws"], **settings})

    return make


async def signed_in_cookie(
    guard: Any, browser_factory: BrowserFactory, provider: OAuthTestProvider, base_url: str = APP_URL
) -> str:
    browser = browser_factory(guard, base_url=base_url)
    await login(browser, provider)
    return str(browser.cookies["guard_session"])


async def test_an_anonymous_handshake_is_refused_before_the_app_accepts(make_guard: GuardFactory) -> None:
    guard = make_guard()
    socket = await handshake(guard)
    assert not socket.accepted and socket.texts == []
    status, body, headers = socket.denial
    assert status == 401 and body["error"] == "login_required" and body["reason"] == "login_required"
    assert body["login_url"] == "/auth/login?next=%2F&reason=login_required"
    assert headers["cache-control"] == "no-store"
    # A server without denial responses: a close before accepting, code 1008 (policy violation).
    socket = await handshake(guard, denial_responses=False)
    assert not socket.accepted and socket.close_code == 1008
    # A session cookie that does not open: the same, with the reason.
    socket = await handshake(guard, cookie="forged.value")
    assert not socket.accepted and socket.denial[1]["reason"] == "session_expired"


async def test_a_signed_in_handshake_gets_the_identity(
    make_guard: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = make_guard()
    cookie = await signed_in_cookie(guard, browser_factory, provider)
    socket = await handshake(guard, cookie=cookie)
    assert socket.accepted and socket.texts[0] == "alice"


async def test_a_handshake_from_another_origin_is_refused_even_signed_in(
    make_guard: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider, caplog: Any
) -> None:
    """Cross-site WebSocket hijacking: evil.example's page opens our socket; the browser sends our cookie."""
    guard = make_guard(require_login=False)
    cookie = await signed_in_cookie(guard, browser_factory, provider)
    for origin in ("https://evil.example", "null", "http://app.test.evil.example", "https://app.test"):
        for path in ("/ws", "/guarded"):
            socket = await handshake(guard, path, cookie=cookie, origin=origin)
            assert not socket.accepted and socket.denial[0] == 403, (origin, path)
            assert socket.denial[1] == {"error": "forbidden_origin"}
            socket = await handshake(guard, path, cookie=cookie, origin=origin, denial_responses=False)
            assert not socket.accepted and socket.close_code == 1008
    assert "refused a WebSocket handshake from another origin" in caplog.text


async def test_allowed_origins_and_public_url_decide_the_own_origins(
    make_guard: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = make_guard(allowed_origins=["https://admin.example.com"])
    cookie = await signed_in_cookie(guard, browser_factory, provider)
    assert (await handshake(guard, cookie=cookie, origin="https://admin.example.com")).texts[0] == "alice"
    # With public_url, the request's own Host is not proof: only the public origin (and allowed ones).
    public = make_guard(public_url="http://app.example.com")
    cookie = await signed_in_cookie(public, browser_factory, provider, "http://app.example.com")
    assert (await handshake(public, cookie=cookie, origin="http://app.example.com")).texts[0] == "alice"
    assert (await handshake(public, cookie=cookie, origin=APP_URL)).denial[0] == 403


async def test_a_handshake_without_origin_is_not_from_a_browser_and_passes(
    make_guard: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """Browsers always send Origin on a handshake; a client that sends none (a native app, a script) is
    driven by no other site, and still needs its own signed-in cookie."""
    guard = make_guard()
    cookie = await signed_in_cookie(guard, browser_factory, provider)
    assert (await handshake(guard, cookie=cookie, origin=None)).texts[0] == "alice"
    assert (await handshake(guard, origin=None)).denial[0] == 401


async def test_an_expired_token_is_refreshed_before_the_socket_is_accepted(
    make_guard: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    guard = make_guard()
    cookie = await signed_in_cookie(guard, browser_factory, provider)
    clock.advance(3600 + 1)  # past the access token's expiry
    socket = await handshake(guard, cookie=cookie)
    assert socket.accepted and socket.texts == ["alice", "refreshes before accept: 1"]
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1


async def test_a_revoked_grant_refuses_the_handshake_with_its_reason(
    make_guard: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    guard = make_guard()
    cookie = await signed_in_cookie(guard, browser_factory, provider)
    provider.revoke_grants("alice")
    clock.advance(3600 + 1)
    socket = await handshake(guard, cookie=cookie)
    assert not socket.accepted and socket.denial[:2] == (
        401,
        {
            "error": "login_required",
            "reason": "refresh_rejected",
            "login_url": "/auth/login?next=%2F&reason=refresh_rejected",
        },
    )


async def test_a_provider_outage_refuses_with_503_or_1013_and_keeps_the_session(
    make_guard: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    guard = make_guard()
    cookie = await signed_in_cookie(guard, browser_factory, provider)
    clock.advance(3600 + 1)  # the token has expired: it cannot be served while the provider is down
    provider.fail_next(2, status=503)
    socket = await handshake(guard, cookie=cookie)
    status, body, headers = socket.denial
    assert not socket.accepted and status == 503 and headers["retry-after"] == "5"
    assert body == {"error": "temporarily_unavailable"}
    socket = await handshake(guard, cookie=cookie, denial_responses=False)
    assert not socket.accepted and socket.close_code == 1013  # try again later
    socket = await handshake(guard, cookie=cookie)  # the provider is back: the same session goes on
    assert socket.accepted and socket.texts[0] == "alice"


async def test_without_require_login_the_app_decides_and_requires_login_refuses(
    make_guard: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = make_guard(require_login=False)
    assert (await handshake(guard)).texts[0] == "anonymous"
    refused = await handshake(guard, "/guarded")
    assert not refused.accepted and refused.denial[0] == 401
    assert (await handshake(guard, "/guarded", denial_responses=False)).close_code == 1008
    cookie = await signed_in_cookie(guard, browser_factory, provider)
    assert (await handshake(guard, "/guarded", cookie=cookie)).texts[0] == "alice"


async def test_a_handshake_on_the_guards_own_routes_is_refused(make_guard: GuardFactory) -> None:
    guard = make_guard()
    for path in ("/auth/login", "/auth/callback", "/auth/logout"):
        socket = await handshake(guard, path)
        assert not socket.accepted and socket.denial[0] == 404


async def test_lifespan_passes_straight_through(make_guard: GuardFactory) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    guard = make_guard(app=app)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    await guard(scope, None, None)  # type: ignore[arg-type]
    assert seen == [scope] and SCOPE_KEY not in scope


@pytest.mark.parametrize("installed", [True, False])
async def test_fastapi_current_user_on_a_websocket_route(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider, installed: bool
) -> None:
    api = FastAPI()
    if installed:
        guard_fastapi.install(api)

    @api.websocket("/ws")
    async def ws(websocket: WebSocket, user: guard_fastapi.CurrentUser) -> None:
        await websocket.accept()
        await websocket.send_text(user.sub)
        await websocket.close()

    guard = guard_factory(app=api, require_login=False)
    socket = await handshake(guard)
    assert not socket.accepted, socket.sent
    if installed:  # the guard's refusal
        assert socket.denial[:2] == (401, {**socket.denial[1], "reason": "login_required"})
    else:  # FastAPI's own handling of the WebSocketException: a close, policy violation
        assert socket.close_code == 1008
    cookie = await signed_in_cookie(guard, browser_factory, provider)
    signed = await handshake(guard, cookie=cookie)
    assert signed.texts == ["alice"], signed.sent


async def test_starlette_require_identity_in_a_websocket_endpoint_refuses_with_install(
    guard_factory: GuardFactory,
) -> None:
    async def ws(websocket: WebSocket) -> None:
        user = require_identity(websocket)
        await websocket.accept()
        await websocket.send_text(user.sub)

    app = Starlette(routes=[WebSocketRoute("/ws", ws)])
    install(app)
    socket = await handshake(guard_factory(app=app, require_login=False))
    assert not socket.accepted and socket.denial[0] == 401


async def test_a_store_outage_refuses_with_503_and_keeps_the_session(
    make_guard: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    store = FlakyStore(clock)
    guard = make_guard(store=store)
    cookie = await signed_in_cookie(guard, browser_factory, provider)
    store.failing = {"get"}
    socket = await handshake(guard, cookie=cookie)
    assert not socket.accepted and socket.denial[0] == 503
    assert (await handshake(guard, cookie=cookie, denial_responses=False)).close_code == 1013
    store.failing = set()
    assert (await handshake(guard, cookie=cookie)).texts[0] == "alice"


async def test_a_scope_type_the_guard_does_not_know_never_reaches_the_app(make_guard: GuardFactory) -> None:
    reached: list[object] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope)

    with pytest.raises(RuntimeError, match="not 'webtransport'"):
        await make_guard(app=app)({"type": "webtransport", "path": "/ws", "headers": []}, None, None)
    assert reached == []
