"""The guard with django-oauth-toolkit 3.4.1 as its provider (interop/dot/): sign-in, duplicate callbacks, the
back button, rotation over 30 s of 5 s tokens, 50 requests at each expiry, a revoked grant, sign-out.

The guard runs in this process (httpx's ASGITransport: an app at http://app.test, whose redirect URI the
provider registers); it talks real HTTP to a private django-oauth-toolkit. Guard and provider read one clock,
stopped: the provider's is frozen (``/admin/freeze-clock``) and the guard's ``clock=`` reads the same time;
``advance()`` moves both (``/admin/advance-clock``), so 30 s of token lifetimes pass in a few seconds of real
time, no token falls due between two steps however slow the machine, and every access token dies at the
provider when the guard believes it does.

Every test runs twice: the memory store with one guard, and a real redis-server with two guards (two workers
of one app: one secret key, one store) that serve a browser's requests in turn.

What the provider saw comes from its journal (``/admin/events``: each token request with the SHA-256 prefix of
the refresh token it presented, each token family revoked) and its database (``/admin/grants``).
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from asgi_oauth_guard import GuardEvent, MemoryStore, OAuthGuard, RedisStore
from asgi_oauth_guard.integrations.starlette import get_identity

from ..redis_server import RedisServer
from .conftest import unique_user
from .dot import REDIRECT_URIS, REVOCATION_PATH, TOKEN_PATH, DotProvider, running_dot_provider, sign_in
from .guard_app import Journal, concurrently, select

pytestmark = pytest.mark.anyio

APP_URL = "http://app.test"
CALLBACK = f"{APP_URL}/auth/callback"
ACCESS_TOKEN_TTL = 5
# 60 s by default, capped at half the token's lifetime
LEEWAY = ACCESS_TOKEN_TTL / 2
DUPLICATE_CALLBACKS = 10
BURST = 50
SOAK_SECONDS = 30.0


class SharedClock:
    """The provider's clock, stopped (``/admin/freeze-clock``): it moves only when ``advance`` moves it and
    the provider's by as much, so no time passes between a test's steps, however loaded the machine."""

    def __init__(self, provider: DotProvider, now: float) -> None:
        self.provider = provider
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        await self.provider.aadvance_clock(seconds)
        self.now += seconds

    async def until(self, moment: float) -> None:
        """Jump to ``moment`` (a time on this clock), if it is still ahead."""
        if moment > self.now:
            await self.advance(moment - self.now)

    @classmethod
    async def of(cls, provider: DotProvider) -> SharedClock:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(provider.url("/admin/freeze-clock"))
        response.raise_for_status()
        return cls(provider, float(response.json()["now"]))


@pytest.fixture(scope="module")
def dot() -> Iterator[DotProvider]:
    """A provider of this module's own: its clock moves with the guard's."""
    with running_dot_provider(
        access_token_ttl=ACCESS_TOKEN_TTL, redirect_uris=(*REDIRECT_URIS, CALLBACK)
    ) as p:
        yield p


@pytest.fixture
async def clock(dot: DotProvider) -> SharedClock:
    return await SharedClock.of(dot)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("dot-redis")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def me(request: Request) -> JSONResponse:
    identity = get_identity(request)
    if identity is None:
        return JSONResponse({"error": "anonymous"}, status_code=401)
    return JSONResponse(
        {
            "sub": identity.sub,
            "email": identity.claims.get("email"),
            "expires_at": identity.expires_at,
            "refreshes": identity.refreshes,
            # which token the app was handed, without the token
            "token": hashlib.sha256(identity.access_token.encode()).hexdigest()[:16],
        }
    )


def app_behind(provider: DotProvider) -> Starlette:
    async def upstream(request: Request) -> JSONResponse:
        """The app calling the provider's API with the user's token: does the provider still take it?"""
        identity = get_identity(request)
        assert identity is not None
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(
                provider.endpoint("/userinfo/"), headers={"Authorization": f"Bearer {identity.access_token}"}
            )
        return JSONResponse({"status": answer.status_code})

    async def home(request: Request) -> PlainTextResponse:
        identity = get_identity(request)
        return PlainTextResponse(f"Signed in as {identity.sub}" if identity else "anonymous")

    return Starlette(routes=[Route("/", home), Route("/api/me", me), Route("/api/upstream", upstream)])


class RoundRobin(httpx.AsyncBaseTransport):
    """One browser's requests served by the app's workers in turn."""

    def __init__(self, guards: list[OAuthGuard]) -> None:
        self._transports = itertools.cycle([httpx.ASGITransport(g) for g in guards])

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await next(self._transports).handle_async_request(request)


@dataclass
class Deployment:
    """The app under test: one guard (memory) or two (redis), and the provider behind them."""

    store: str
    guards: list[OAuthGuard]
    events: list[list[GuardEvent]]  # what each guard emitted (its on_event hook)
    dot: DotProvider
    clock: SharedClock
    journal: Journal

    def browser(self, user: str) -> DotBrowser:
        return DotBrowser(self, user)

    def emitted(self, kind: str, sub: str) -> list[int]:
        """How many events of ``kind`` for ``sub`` each guard emitted."""
        return [sum(1 for e in events if e.kind == kind and e.sub == sub) for events in self.events]


class DotBrowser:
    """A browser: a cookie jar for the app (served in-process) and one for the provider (real HTTP)."""

    def __init__(self, deployment: Deployment, user: str) -> None:
        self.deployment = deployment
        self.user = user
        self.app = httpx.AsyncClient(
            transport=RoundRobin(deployment.guards),
            base_url=APP_URL,
            headers={"accept": "text/html"},
            timeout=20,
        )
        self.idp = httpx.AsyncClient(timeout=20)

    async def aclose(self) -> None:
        await self.app.aclose()
        await self.idp.aclose()

    async def start_login(self, next_path: str = "/", *, login_url: str | None = None) -> str:
        """The app's login route, the provider's login form and its redirect; returns the callback URL."""
        if login_url is not None:
            response = await self.app.get(login_url)
        else:
            response = await self.app.get("/auth/login", params={"next": next_path})
        assert response.status_code == 303, f"{response.status_code} from /auth/login: {response.text[:300]}"
        location = response.headers["location"]
        assert location.startswith(self.deployment.dot.endpoint("/authorize/?")), location
        assert httpx.URL(location).params["redirect_uri"] == CALLBACK
        return await sign_in(self.idp, self.deployment.dot, location, user=self.user, redirect_uri=CALLBACK)

    async def login(self, next_path: str = "/api/me") -> httpx.Response:
        response = await self.app.get(await self.start_login(next_path))
        assert response.status_code == 303, f"callback answered {response.status_code}: {response.text[:300]}"
        assert response.headers["location"] == next_path
        return response

    async def api(self, path: str = "/api/me") -> httpx.Response:
        return await self.app.get(path, headers={"accept": "application/json"})

    async def me(self) -> dict[str, Any]:
        response = await self.api()
        assert response.status_code == 200, f"/api/me answered {response.status_code}: {response.text[:300]}"
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(params=["memory", "redis"])
async def deployment(
    request: pytest.FixtureRequest, dot: DotProvider, clock: SharedClock, redis: RedisServer
) -> AsyncIterator[Deployment]:
    secret_key = secrets.token_urlsafe(32)
    workers = 1 if request.param == "memory" else 2
    prefix = f"dot-{secrets.token_hex(4)}:"
    guards, closers = [], []
    emitted: list[list[GuardEvent]] = [[] for _ in range(workers)]
    for worker in range(workers):
        http = httpx.AsyncClient(timeout=10)
        store = (
            MemoryStore() if request.param == "memory" else RedisStore.from_url(redis.url, key_prefix=prefix)
        )
        guards.append(
            OAuthGuard(
                app_behind(dot),
                issuer=dot.issuer,
                client_id=dot.client_id,
                client_secret=dot.client_secret,
                secret_key=secret_key,
                redirect_uri=CALLBACK,
                store=store,
                http_client=http,
                require_login=True,
                on_event=emitted[worker].append,
                clock=clock,
            )
        )
        closers.append(http.aclose)
        if isinstance(store, RedisStore):
            closers.append(store.aclose)
    yield Deployment(request.param, guards, emitted, dot, clock, Journal(dot))
    for close in closers:
        await close()


@pytest.fixture
async def browsers(deployment: Deployment) -> AsyncIterator[Any]:
    made: list[DotBrowser] = []

    def make(user: str) -> DotBrowser:
        browser = deployment.browser(user)
        made.append(browser)
        return browser

    yield make
    for browser in made:
        await browser.aclose()


def tally(events: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "token_requests": len(select(events, "request", path=TOKEN_PATH)),
        "code_exchanges": len(select(events, "grant.success", grant_type="authorization_code")),
        "refreshes": len(select(events, "grant.success", grant_type="refresh_token")),
        "grant_errors": len(select(events, "grant.error")),
        "invalid_grant": len(select(events, "grant.error", error="invalid_grant")),
        "revocation_requests": len(select(events, "request", path=REVOCATION_PATH)),
        "grants_revoked": len(select(events, "grant.revoked")),
    }


def refresh_tokens_sent(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["refresh_token_sha"]
        for e in events
        if e["event"].startswith("grant.") and e.get("refresh_token_sha")
    ]


def report(deployment: Deployment, what: str, **figures: Any) -> None:
    """Figures for interop/README.md (shown with ``pytest -rP``)."""
    print(f"[{deployment.store}, {len(deployment.guards)} guard(s)] {what}: {figures}")


# ----------------------------------------------------------------------------------------------------------


async def test_sign_in(deployment: Deployment, browsers: Any) -> None:
    user = unique_user("dot-login")
    browser = browsers(user)
    anonymous = await browser.api()
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "login_required"
    mark = await deployment.journal.mark()
    await browser.login()
    body = await browser.me()
    assert body["sub"] == user and body["email"] == f"{user}@example.test"  # from the validated ID token
    now = deployment.clock()
    assert now < body["expires_at"] <= now + ACCESS_TOKEN_TTL
    assert (await browser.api("/api/upstream")).json() == {"status": 200}  # the provider takes the token
    home = await browser.app.get("/")
    assert home.status_code == 200 and home.text == f"Signed in as {user}"

    events = await deployment.journal.since(mark)
    figures = tally(events)
    assert figures["token_requests"] == figures["code_exchanges"] == 1 and figures["grant_errors"] == 0, (
        events
    )
    [exchange] = select(events, "grant.success", grant_type="authorization_code")
    assert exchange["sub"] == user
    grants = await deployment.journal.grants(user)
    assert [(g["grant_id"], g["refresh_tokens"]) for g in grants] == [(exchange["grant_id"], 1)]


async def test_ten_duplicate_callbacks_and_the_back_button(deployment: Deployment, browsers: Any) -> None:
    user = unique_user("dot-dup")
    browser = browsers(user)
    callback = await browser.start_login("/api/me")
    mark = await deployment.journal.mark()
    answers = await concurrently(DUPLICATE_CALLBACKS, lambda: browser.app.get(callback))
    assert [a.status_code for a in answers] == [303] * DUPLICATE_CALLBACKS, [a.text[:200] for a in answers]
    assert {a.headers["location"] for a in answers} == {"/api/me"}
    cookies = {a.cookies.get("guard_session") for a in answers}
    assert len(cookies) == 1 and None not in cookies  # every duplicate hands over the winner's session
    first = await browser.me()

    back = await browser.app.get(callback)  # the back button, at once
    assert back.status_code == 303 and back.headers["location"] == "/api/me"
    await deployment.clock.advance(31)  # and after the guard's 30 s duplicate window
    late = await browser.app.get(callback)
    assert late.status_code == 303 and late.headers["location"] == "/api/me"
    after = await browser.me()  # the token had expired: refreshed, the grant alive
    assert after["sub"] == user and after["refreshes"] == first["refreshes"] + 1

    figures = tally(await deployment.journal.since(mark))
    assert figures["code_exchanges"] == 1 and figures["refreshes"] == 1, figures
    assert figures["token_requests"] == 2 and figures["grant_errors"] == 0 and figures["grants_revoked"] == 0
    report(deployment, "duplicate callbacks and back button", **figures)


async def test_rotation_for_thirty_seconds_with_fifty_requests_at_each_expiry(
    deployment: Deployment, browsers: Any
) -> None:
    """Bursts of 50 concurrent API calls on one session, alternately when its token falls due (2.5 s before
    exp) and when it has expired, over 30 s of 5 s tokens."""
    user = unique_user("dot-soak")
    browser = browsers(user)
    await browser.login()
    body = await browser.me()
    mark = await deployment.journal.mark()
    started = deployment.clock()
    bursts = requests = 0
    while deployment.clock() - started < SOAK_SECONDS:
        at_expiry = bursts % 2 == 1
        await deployment.clock.until(body["expires_at"] - (0 if at_expiry else LEEWAY) + 0.05)
        answers = await concurrently(BURST, browser.api)
        bursts += 1
        requests += len(answers)
        assert {a.status_code for a in answers} == {200}, [a.text[:200] for a in answers[:3]]
        bodies = [a.json() for a in answers]
        # one refresh served all fifty: one new token, one refresh more than before
        assert {b["token"] for b in bodies} == {bodies[0]["token"]} != {body["token"]}, f"burst {bursts}"
        assert {b["refreshes"] for b in bodies} == {body["refreshes"] + 1}, f"burst {bursts}"
        body = bodies[0]
        assert (await browser.api("/api/upstream")).json() == {"status": 200}, f"burst {bursts}"

    events = await deployment.journal.since(mark)
    figures = tally(events)
    assert figures["refreshes"] == figures["token_requests"] == bursts, events
    assert figures["grant_errors"] == 0 and figures["grants_revoked"] == 0, events
    sent = refresh_tokens_sent(events)
    assert len(sent) == bursts and len(set(sent)) == bursts, "a refresh token was sent twice"
    grants = await deployment.journal.grants(user)
    assert len(grants) == 1 and grants[0]["refresh_tokens"] == 1, grants  # the family is alive
    by_guard = deployment.emitted("refresh", user)
    assert sum(by_guard) == bursts, by_guard  # the guards' own account agrees with the provider's
    report(deployment, "soak", bursts=bursts, requests=requests, **figures, refreshes_by_guard=by_guard)


async def test_revoked_grant_means_relogin(deployment: Deployment, browsers: Any) -> None:
    user = unique_user("dot-revoked")
    page, api = browsers(user), browsers(user)  # two sessions of one user
    await page.login("/")
    await api.login()
    due = max((await page.me())["expires_at"], (await api.me())["expires_at"]) - LEEWAY
    await deployment.dot.arevoke_grants(user)
    mark = await deployment.journal.mark()
    await deployment.clock.until(due + 0.05)

    navigation = await page.app.get("/")
    assert navigation.status_code == 303, navigation.text
    assert dict(httpx.URL(navigation.headers["location"]).params) == {
        "next": "/",
        "reason": "refresh_rejected",
    }
    call = await api.api()
    assert call.status_code == 401 and call.json()["reason"] == "refresh_rejected"
    again = await api.api()  # the session dropped its tokens: the provider is not asked again
    assert again.status_code == 401 and again.json()["reason"] == "refresh_rejected"
    events = await deployment.journal.since(mark)
    figures = tally(events)
    assert figures["token_requests"] == figures["invalid_grant"] == 2, figures
    assert len(set(refresh_tokens_sent(events))) == 2  # each session's own refresh token, once

    callback = await page.start_login(login_url=navigation.headers["location"])
    assert (await page.app.get(callback)).headers["location"] == "/"
    assert (await page.me())["sub"] == user
    figures = tally(await deployment.journal.since(mark))
    assert figures["code_exchanges"] == 1 and figures["grants_revoked"] == 0, figures  # admin's only, before


async def test_sign_out_revokes_at_the_rfc8414_revocation_endpoint(
    deployment: Deployment, browsers: Any
) -> None:
    user = unique_user("dot-bye")
    browser = browsers(user)
    await browser.login()
    [grant] = await deployment.journal.grants(user)
    mark = await deployment.journal.mark()
    answer = await browser.app.post("/auth/logout", headers={"origin": APP_URL})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    events = await deployment.journal.since(mark)
    assert tally(events)["revocation_requests"] == 1, events
    assert [e["status"] for e in select(events, "revocation")] == [200]
    assert await deployment.journal.grants(user) == [], grant  # no live token of the family is left
    assert (await browser.api()).status_code == 401


async def test_under_a_path_the_rfc8414_document_beside_the_issuer_is_found() -> None:
    """django-oauth-toolkit as its documentation mounts it, ``path("o/", include(...))``: the issuer is
    ``<origin>/o``, RFC 8414 section 3.1's URL (``<origin>/.well-known/oauth-authorization-server/o``) is a 404,
    and the document is at ``<origin>/o/.well-known/oauth-authorization-server``. The guard tries both."""
    with running_dot_provider(redirect_uris=(CALLBACK,), mount="o/") as dot:
        assert dot.issuer.endswith("/o")
        async with httpx.AsyncClient(timeout=10) as probe:
            strict = await probe.get(dot.url("/.well-known/oauth-authorization-server/o"))
            beside = await probe.get(dot.endpoint("/.well-known/oauth-authorization-server"))
        assert strict.status_code == 404
        assert beside.json()["issuer"] == dot.issuer
        assert beside.json()["revocation_endpoint"] == dot.endpoint(REVOCATION_PATH)

        async with httpx.AsyncClient(timeout=10) as http:
            emitted: list[GuardEvent] = []
            guard = OAuthGuard(
                app_behind(dot),
                issuer=dot.issuer,
                client_id=dot.client_id,
                client_secret=dot.client_secret,
                secret_key=secrets.token_urlsafe(32),
                redirect_uri=CALLBACK,
                http_client=http,
                require_login=True,
                on_event=emitted.append,
            )
            deployment = Deployment(
                "memory", [guard], [emitted], dot, SharedClock(dot, time.time()), Journal(dot)
            )
            browser = deployment.browser(unique_user("dot-mounted"))
            try:
                await browser.login()
                assert (await browser.me())["sub"] == browser.user
                mark = await deployment.journal.mark()
                out = await browser.app.post("/auth/logout", headers={"origin": APP_URL})
                assert out.status_code == 303
            finally:
                await browser.aclose()
        events = await deployment.journal.since(mark)
        assert [e["status"] for e in select(events, "revocation")] == [200], events
        assert await deployment.journal.grants(browser.user) == []
