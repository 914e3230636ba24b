"""Many sessions due at once: the refreshes in flight per process stay within ``max_concurrent_refreshes``.

10,000 sessions whose tokens are due (within the leeway, still valid) ask at once, against a token endpoint
that answers in 50 ms (real time; the expiry follows a fake clock): no request fails, at most 32 token
requests are in flight at any moment, and the sessions that found every slot taken are served their
still-valid token. Then 2,000 sessions whose tokens have expired ask at once: each waits its turn and is
refreshed exactly once. The p99 latency is printed (``pytest -s``), not asserted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import anyio
import httpx
import pytest

from asgi_oauth_guard import MemoryStore, OAuthGuard, Provider, TokenSet
from asgi_oauth_guard._session import Session
from asgi_oauth_guard.testing import FakeClock

from .conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY, inner_app

pytestmark = pytest.mark.anyio

TOKEN_LATENCY = 0.05
BOUND = 32


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # one backend is enough for a load test; the limiter is anyio's


class SlowTokenEndpoint:
    """A token endpoint that answers each refresh after 50 ms with a new rotated refresh token, counting
    the requests in flight and every refresh token it is sent."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.in_flight = 0
        self.peak = 0
        self.presented: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        assert form["grant_type"] == ["refresh_token"]
        self.presented.append(form["refresh_token"][0])
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.sleep(TOKEN_LATENCY)
        finally:
            self.in_flight -= 1
        body = {
            "access_token": "at-" + os.urandom(8).hex(),
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "rt-" + os.urandom(8).hex(),
        }
        return httpx.Response(200, json=body)


async def call(app: OAuthGuard, cookie: str) -> tuple[int, dict[str, Any]]:
    """One GET /api/me as raw ASGI (httpx's transport would cost more than the guard)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/api/me",
        "raw_path": b"/api/me",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"app.test"), (b"accept", b"application/json"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("app.test", 443),
    }
    status = 0
    body = b""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    await app(scope, receive, send)
    return status, json.loads(body) if body else {}


def make_guard(clock: FakeClock, endpoint: SlowTokenEndpoint) -> tuple[OAuthGuard, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    guard = OAuthGuard(
        inner_app(),
        provider=Provider(
            issuer="https://idp.example.test",
            authorization_endpoint="https://idp.example.test/authorize",
            token_endpoint="https://idp.example.test/token",
        ),
        scopes=["email"],  # no openid: refresh answers carry no ID token
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        secret_key=SECRET_KEY,
        http_client=http,
        clock=clock,
        store=MemoryStore(max_entries=200_000, clock=clock),
        public_url="https://app.test",
        require_login=["/api/"],
        max_concurrent_refreshes=BOUND,
    )
    return guard, http


async def sessions(guard: OAuthGuard, clock: FakeClock, n: int, *, expires_in: float) -> list[str]:
    """``n`` signed-in sessions whose access tokens expire ``expires_in`` seconds from now; their cookies."""
    cookies = []
    for i in range(n):
        sid, key, value = guard._keyring.new_session_cookie()
        tokens = TokenSet(
            access_token=f"old-{i}",
            refresh_token=f"rt-old-{i}",
            expires_at=clock() + expires_in,
            issued_at=clock() - 3000,
        )
        await guard._sessions.save(
            Session(sid=sid, tokens=tokens, claims={"sub": f"user{i}"}, created_at=clock()), key
        )
        cookies.append(f"{guard._cookies.session_name}={value}")
    return cookies


async def all_at_once(
    app: OAuthGuard, cookies: list[str]
) -> tuple[list[int], list[dict[str, Any]], list[float]]:
    statuses: list[int] = [0] * len(cookies)
    bodies: list[dict[str, Any]] = [{}] * len(cookies)
    latencies: list[float] = [0.0] * len(cookies)

    async def one(i: int) -> None:
        started = time.perf_counter()
        statuses[i], bodies[i] = await call(app, cookies[i])
        latencies[i] = time.perf_counter() - started

    async with anyio.create_task_group() as tg:
        for i in range(len(cookies)):
            tg.start_soon(one, i)
    return statuses, bodies, latencies


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(len(ordered) * 0.99)] * 1000


def report(what: str, latencies: list[float], **figures: Callable[[], object] | object) -> None:
    print(f"\n{what}: p99 {p99(latencies):.0f} ms, " + ", ".join(f"{k} {v}" for k, v in figures.items()))


async def test_10000_sessions_due_at_once_stay_within_the_bound_and_none_fails() -> None:
    clock = FakeClock(start=1_800_000_000.0)
    endpoint = SlowTokenEndpoint(clock)
    guard, http = make_guard(clock, endpoint)
    try:
        cookies = await sessions(guard, clock, 10_000, expires_in=30)  # due (leeway 60 s), still valid
        statuses, bodies, latencies = await all_at_once(guard, cookies)
    finally:
        await http.aclose()
    limiter = guard._refresher.limiter
    assert statuses == [200] * 10_000
    assert 0 < endpoint.peak <= BOUND and limiter.peak <= BOUND
    refreshed = sum(1 for body in bodies if body["refreshes"] == 1)
    served_old = sum(1 for body in bodies if body["refreshes"] == 0)
    assert refreshed == len(endpoint.presented) and refreshed + served_old == 10_000
    assert served_old == limiter.served_while_full  # every one of them had found each slot taken
    assert all(body["access_token"].startswith("old-") for body in bodies if body["refreshes"] == 0)
    assert len(set(endpoint.presented)) == len(endpoint.presented)  # no refresh token sent twice
    report(
        "10,000 due at once",
        latencies,
        refreshed=refreshed,
        served_still_valid=served_old,
        peak_in_flight=endpoint.peak,
    )


async def test_2000_expired_sessions_queue_and_each_refreshes_once() -> None:
    clock = FakeClock(start=1_800_000_000.0)
    endpoint = SlowTokenEndpoint(clock)
    guard, http = make_guard(clock, endpoint)
    try:
        cookies = await sessions(guard, clock, 2_000, expires_in=-1)  # expired: nothing valid to serve
        statuses, bodies, latencies = await all_at_once(guard, cookies)
    finally:
        await http.aclose()
    assert statuses == [200] * 2_000
    assert 0 < endpoint.peak <= BOUND and guard._refresher.limiter.peak <= BOUND
    assert [body["refreshes"] for body in bodies] == [1] * 2_000
    assert sorted(endpoint.presented) == sorted(f"rt-old-{i}" for i in range(2_000))  # each exactly once
    assert guard._refresher.limiter.served_while_full == 0
    report("2,000 expired at once", latencies, peak_in_flight=endpoint.peak)


def test_the_bound_must_be_at_least_one() -> None:
    from asgi_oauth_guard import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_concurrent_refreshes"):
        OAuthGuard(
            inner_app(),
            issuer="https://idp.example.test",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            secret_key=SECRET_KEY,
            max_concurrent_refreshes=0,
        )
