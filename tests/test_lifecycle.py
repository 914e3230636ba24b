"""How sessions end: sign-out wins every race with a refresh, the absolute age and the idle timeout, only
the user's grant ends the user's session, and a refresh token is spent once even when its lock is lost."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from asgi_oauth_guard import GuardEvent, MemoryStore, OAuthGuard, Reason, Store
from asgi_oauth_guard._breaker import ClientBreaker
from asgi_oauth_guard._lifetime import Lifetime
from asgi_oauth_guard._refresh import CLIENT_REFUSAL_COOLDOWN, LOCK_PREFIX
from asgi_oauth_guard._session import Session
from asgi_oauth_guard._sessions import SESSION_PREFIX
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from .conftest import CLIENT_SECRET, BrowserFactory, CountingStore, GuardFactory, login

pytestmark = pytest.mark.anyio

JSON = {"accept": "application/json"}
LEASE = 10 * 2 + 5  # the refresh lock's lease with the default http_timeout of 10 s


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def is_refresh(request: httpx.Request) -> bool:
    return request.url.path.endswith("/token") and b"grant_type=refresh_token" in request.content


class HeldAnswers(httpx.AsyncBaseTransport):
    """The provider's transport, but the answer to the next refresh is held back after the provider has
    acted on it (issued new tokens, spent the old refresh token) until ``go`` is set: a refresh whose
    answer is on its way while something else happens."""

    def __init__(self, provider: OAuthTestProvider) -> None:
        self._inner = provider.transport()
        self.entered = anyio.Event()
        self.go = anyio.Event()
        self.answers: list[dict[str, Any]] = []
        self._armed = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if not (self._armed and is_refresh(request)):
            return response
        self._armed = False
        content = await response.aread()
        self.answers.append(json.loads(content))
        self.entered.set()
        await self.go.wait()
        return httpx.Response(response.status_code, headers=response.headers, content=content)


@pytest.fixture
async def held(provider: OAuthTestProvider) -> AsyncIterator[tuple[HeldAnswers, httpx.AsyncClient]]:
    transport = HeldAnswers(provider)
    async with httpx.AsyncClient(transport=transport) as http:
        yield transport, http


def revoked(provider: OAuthTestProvider) -> list[str]:
    return [c.params.get("token", "") for c in provider.calls if c.endpoint == "revoke"]


def refresh_tokens_sent(provider: OAuthTestProvider) -> list[str]:
    return [c.params["refresh_token"] for c in provider.calls if c.grant_type == "refresh_token"]


async def session_keys(store: Store, guard: OAuthGuard, cookie: str) -> bytes | None:
    opened = guard._keyring.open_session_cookie(cookie)
    assert opened is not None
    return await store.get(SESSION_PREFIX + opened[0])


async def assert_signed_out(
    guard: OAuthGuard, browser_factory: BrowserFactory, cookie: str, store: Store
) -> None:
    """The copied cookie opens nothing: the re-login response for pages and APIs, and no session."""
    copy = browser_factory(guard)
    copy.cookies.set("guard_session", cookie)
    page = await copy.get("/me")
    assert page.status_code == 303 and query(page.headers["location"])["reason"] == "session_expired"
    api = await copy.get("/api/me", headers=JSON)
    assert api.status_code == 401 and api.json()["error"] == "login_required"
    assert await session_keys(store, guard, cookie) is None


# -- sign-out wins every race ------------------------------------------------------------------------


async def test_sign_out_during_a_refresh_waits_for_it_and_revokes_the_new_refresh_token(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    held: tuple[HeldAnswers, httpx.AsyncClient],
) -> None:
    transport, http = held
    store = MemoryStore(clock=clock)
    guard = guard_factory(http_client=http, store=store)
    browser = browser_factory(guard)
    await login(browser, provider)
    cookie = browser.cookies["guard_session"]
    clock.advance(3600 - 30)  # due
    answers: dict[str, httpx.Response] = {}

    async def call(name: str, method: str, path: str) -> None:
        answers[name] = await browser.request(method, path, headers=JSON)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "api", "GET", "/api/me")
        await transport.entered.wait()  # the provider has rotated the refresh token; the answer is held
        tg.start_soon(call, "logout", "POST", "/auth/logout")
        await anyio.wait_all_tasks_blocked()
        assert "logout" not in answers  # sign-out waits for the refresh in flight
        transport.go.set()

    new_refresh_token = transport.answers[0]["refresh_token"]
    assert revoked(provider) == [new_refresh_token]  # the newest one, not the one sign-out first read
    assert not provider.grant_alive(new_refresh_token)
    assert answers["logout"].status_code == 303
    assert answers["api"].status_code == 200  # it started before the sign-out
    await assert_signed_out(guard, browser_factory, cookie, store)


async def test_a_refresh_that_finishes_after_sign_out_never_brings_the_session_back(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    held: tuple[HeldAnswers, httpx.AsyncClient],
) -> None:
    """Two workers on one store; the refreshing worker's lock lease runs out while its answer is on the
    way, so the other worker's sign-out cannot wait for it: the late refresh must not re-create the
    session, and must revoke the refresh token it got."""
    transport, held_http = held
    store = MemoryStore(clock=clock)
    events: list[GuardEvent] = []
    refreshing = guard_factory(http_client=held_http, store=store, on_event=events.append)
    signing_out = guard_factory(store=store)
    browser = browser_factory(refreshing)
    await login(browser, provider)
    cookie = browser.cookies["guard_session"]
    opened = refreshing._keyring.open_session_cookie(cookie)
    assert opened is not None
    before = await refreshing._sessions.load(*opened)
    assert before is not None and before.tokens is not None
    clock.advance(3600 - 30)
    answers: dict[str, httpx.Response] = {}

    async def late() -> None:
        answers["late"] = await browser.get("/api/me", headers=JSON)

    async with anyio.create_task_group() as tg:
        tg.start_soon(late)
        await transport.entered.wait()
        clock.advance(LEASE + 1)  # the lease ran out (a slow provider, a paused process)
        other = browser_factory(signing_out)
        other.cookies.set("guard_session", cookie)
        out = await other.post("/auth/logout")
        assert out.status_code == 303
        assert await session_keys(store, refreshing, cookie) is None
        transport.go.set()

    new_refresh_token = transport.answers[0]["refresh_token"]
    sent = revoked(provider)
    assert sent == [before.tokens.refresh_token, new_refresh_token]
    assert answers["late"].status_code == 401 and answers["late"].json()["reason"] == "session_expired"
    assert [e.detail for e in events if e.kind == "refresh_failed"] == ["ended_during_refresh"]
    await assert_signed_out(refreshing, browser_factory, cookie, store)
    await assert_signed_out(signing_out, browser_factory, cookie, store)


# -- absolute and idle lifetimes ---------------------------------------------------------------------


async def test_a_session_refreshed_every_few_minutes_ends_at_session_max_age(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    provider = OAuthTestProvider(
        client_id="guard-client", client_secret=CLIENT_SECRET, clock=clock, access_token_ttl=300
    )
    store = MemoryStore(clock=clock)
    async with httpx.AsyncClient(transport=provider.transport()) as http:
        guard = guard_factory(http_client=http, store=store, session_max_age=3600)
        browser = browser_factory(guard)
        await login(browser, provider)
        signed_in = clock()
        statuses = []
        while clock() - signed_in < 3600 - 240:
            clock.advance(240)
            statuses.append((await browser.get("/api/me", headers=JSON)).status_code)
        assert statuses == [200] * len(statuses) and len(statuses) == 14
        assert provider.count(endpoint="token", grant_type="refresh_token") == 14  # each one refreshed
        clock.advance(240)  # past the hour since sign-in
        ended = await browser.get("/me")
    assert ended.status_code == 303 and query(ended.headers["location"])["reason"] == "session_expired"
    assert provider.count(endpoint="token", grant_type="refresh_token") == 14  # not refreshed again
    assert len([k for k in store._data if k.startswith(SESSION_PREFIX)]) == 0


async def test_an_idle_session_ends_at_session_idle_timeout(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    events: list[GuardEvent] = []
    guard = guard_factory(session_idle_timeout=1800, on_event=events.append)
    browser = browser_factory(guard)
    await login(browser, provider)
    for _ in range(4):  # used every 29 minutes: two hours and still signed in
        clock.advance(1740)
        assert (await browser.get("/me")).status_code == 200
    clock.advance(1800)
    ended = await browser.get("/me")
    assert ended.status_code == 303 and query(ended.headers["location"])["reason"] == "session_expired"
    assert [e.detail for e in events if e.kind == "relogin"] == ["idle_timeout"]


async def test_idle_tracking_writes_at_most_once_a_minute(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    store = CountingStore(clock)
    browser = browser_factory(guard_factory(store=store))
    await login(browser, provider)
    assert isinstance(store, Store)
    store.counts.clear()
    statuses = []
    for _ in range(600):  # a request a second for ten minutes, none of them due for a refresh
        clock.advance(1)
        statuses.append((await browser.get("/api/me", headers=JSON)).status_code)
    assert statuses == [200] * 600
    # Once a minute: take the refresh lock, read again under it, write last_seen (in the session and in
    # its index record, for sessions_of), release the lock.
    touches = 10
    expected = {"get": 600 + touches, "acquire": touches, "replace": 2 * touches, "release": touches}
    assert store.counts == expected


async def test_a_refresh_token_the_provider_said_has_expired_ends_the_session(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    def keycloak(body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "refresh_expires_in": 1800}  # Keycloak's SSO Session Idle, 30 minutes

    async with httpx.AsyncClient(transport=Rewrite(provider, keycloak, refresh_too=True)) as http:
        events: list[GuardEvent] = []
        browser = browser_factory(guard_factory(http_client=http, on_event=events.append))
        await login(browser, provider)
        clock.advance(1200)
        assert (await browser.get("/me")).status_code == 200
        clock.advance(2400)  # the access token is due, and the refresh token died 20 minutes ago
        ended = await browser.get("/api/me", headers=JSON)
    assert ended.status_code == 401 and ended.json()["reason"] == "session_expired"
    assert provider.count(endpoint="token", grant_type="refresh_token") == 0  # not sent to be refused
    assert [e.detail for e in events if e.kind == "refresh_failed"] == ["refresh_token_expired"]


# -- only the user's grant ends the user's session ---------------------------------------------------


async def test_a_wrong_client_secret_keeps_every_session_and_stops_hammering_the_provider(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = guard_factory()
    browsers = []
    for i in range(100):
        provider.add_user(f"user{i}")
        provider.login_as(f"user{i}")
        browser = browser_factory(guard)
        await login(browser, provider)
        browsers.append(browser)
    provider.set_client_secret("rotated-at-the-provider-0123456789")  # the app now has the wrong one
    clock.advance(3600)  # every session is due for a refresh

    async def everyone() -> list[int]:
        statuses: list[int] = []

        async def one(browser: httpx.AsyncClient) -> None:
            statuses.append((await browser.get("/api/me", headers=JSON)).status_code)

        async with anyio.create_task_group() as tg:
            for browser in browsers:
                tg.start_soon(one, browser)
        return statuses

    assert [(await b.get("/api/me", headers=JSON)).status_code for b in browsers] == [503] * 100
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1  # then the breaker opened
    errors = [
        r for r in caplog.records if r.levelno == logging.ERROR and "refused a refresh" in r.getMessage()
    ]
    assert errors and "client_secret" in errors[0].getMessage()

    clock.advance(CLIENT_REFUSAL_COOLDOWN)
    assert await everyone() == [503] * 100
    assert provider.count(endpoint="token", grant_type="refresh_token") == 2  # one probe, still refused

    provider.set_client_secret(CLIENT_SECRET)  # fixed
    clock.advance(CLIENT_REFUSAL_COOLDOWN)
    assert sorted(await everyone()) == [200] * 100  # without signing in again
    users = {(await b.get("/api/me", headers=JSON)).json()["user"] for b in browsers}
    assert users == {f"user{i}" for i in range(100)}
    assert provider.count(endpoint="token", grant_type="refresh_token") == 2 + 100
    assert provider.count(endpoint="token", error="invalid_grant") == 0


# -- odd answers -------------------------------------------------------------------------------------


class Rewrite(httpx.AsyncBaseTransport):
    """The provider's transport, with its token answers changed: by a function of the provider's JSON
    answer, or replaced whole by ``(status, content_type, bytes)`` from something in front of the provider
    (a proxy, a WAF) that never passed the request on. Code exchanges only, unless ``refresh_too``; refreshes
    only with ``refresh_only``. ``seen`` counts the token requests by grant type."""

    def __init__(
        self,
        provider: OAuthTestProvider,
        change: Callable[[dict[str, Any]], Any] | tuple[int, str, bytes] | None = None,
        *,
        refresh_too: bool = False,
    ) -> None:
        self._inner = provider.transport()
        self.change = change
        self.refresh_only = False
        self._refresh_too = refresh_too
        self.seen: dict[str, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            kind = "refresh_token" if is_refresh(request) else "authorization_code"
            self.seen[kind] = self.seen.get(kind, 0) + 1
            applies = (
                (self.refresh_only or self._refresh_too) if kind == "refresh_token" else not self.refresh_only
            )
            if self.change is not None and applies:
                if isinstance(self.change, tuple):
                    status, content_type, body = self.change
                    return httpx.Response(status, headers={"content-type": content_type}, content=body)
                response = await self._inner.handle_async_request(request)
                changed = json.dumps(self.change(json.loads(await response.aread()))).encode()
                return httpx.Response(200, headers={"content-type": "application/json"}, content=changed)
        return await self._inner.handle_async_request(request)


def replace_key(name: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda body: {**body, name: value}


def without(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda body: {k: v for k, v in body.items() if k != name}


# (answer, what sign-in gives, what a refresh gives): "ok" (a sane default applies), "relogin" (the
# user's grant is refused: sign in again), "unavailable" (a 503; the session is kept).
ODD_ANSWERS: dict[str, tuple[Any, str, str]] = {
    "expires_in_1e308": (replace_key("expires_in", 1e308), "ok", "ok"),
    "expires_in_negative": (replace_key("expires_in", -5), "ok", "ok"),
    "expires_in_text": (replace_key("expires_in", "abc"), "ok", "ok"),
    "expires_in_10_30": (replace_key("expires_in", 10**30), "ok", "ok"),
    "no_token_type": (without("token_type"), "ok", "ok"),
    "github_error_in_200": (lambda b: {"error": "bad_verification_code"}, "relogin", "relogin"),
    "github_refresh_error_in_200": (lambda b: {"error": "bad_refresh_token"}, "relogin", "relogin"),
    "slack_error_in_200": (lambda b: {"ok": False, "error": "invalid_refresh_token"}, "relogin", "relogin"),
    "html_200": (
        (200, "text/html", b"<html><body>Welcome to the proxy</body></html>"),
        "unavailable",
        "unavailable",
    ),
    "html_403": (
        (403, "text/html", b"<html><body>Forbidden by the WAF</body></html>"),
        "unavailable",
        "unavailable",
    ),
    "invalid_json": ((200, "application/json", b'{"access_token": "x", '), "unavailable", "unavailable"),
    "json_array": ((200, "application/json", b'[{"access_token": "x"}]'), "unavailable", "unavailable"),
    "access_token_not_a_string": (replace_key("access_token", 12345), "unavailable", "unavailable"),
    "error_not_a_string": (
        (400, "application/json", b'{"error": {"code": 1}}'),
        "unavailable",
        "unavailable",
    ),
}


@pytest.mark.parametrize("name", list(ODD_ANSWERS))
async def test_an_odd_token_answer_at_sign_in_is_answered_and_recorded_never_a_500(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    name: str,
) -> None:
    change, at_sign_in, _ = ODD_ANSWERS[name]
    transport = Rewrite(provider, change)
    async with httpx.AsyncClient(transport=transport) as http:
        guard = guard_factory(http_client=http)
        browser = browser_factory(guard)
        started = await browser.get("/auth/login", params={"next": "/me"})
        callback = await provider.complete_authorization(started.headers["location"])
        answer = await browser.get(callback)
        again = await browser.get(callback)  # a reload: the recorded outcome, no second exchange
    assert answer.status_code != 500 and again.status_code == answer.status_code
    assert transport.seen == {"authorization_code": 1}
    state = query(callback)["state"]
    assert await guard.store.get("out:" + state) is not None  # the outcome is recorded
    if at_sign_in == "ok":
        assert answer.status_code == 303 and answer.headers["location"] == "/me"
        assert (await browser.get("/me")).json()["user"] == "alice"
    elif at_sign_in == "relogin":
        assert answer.status_code == 303 and query(answer.headers["location"])["reason"]
    else:
        assert answer.status_code == 503 and answer.headers["retry-after"]


@pytest.mark.parametrize("name", list(ODD_ANSWERS))
async def test_an_odd_token_answer_at_refresh_is_answered_never_a_500(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    name: str,
) -> None:
    change, _, at_refresh = ODD_ANSWERS[name]
    transport = Rewrite(provider)
    async with httpx.AsyncClient(transport=transport) as http:
        browser = browser_factory(guard_factory(http_client=http))
        await login(browser, provider)
        transport.change, transport.refresh_only = change, True
        clock.advance(3600)
        api = await browser.get("/api/me", headers=JSON)
        page = await browser.get("/me")
        transport.change = None
        after = await browser.get("/api/me", headers=JSON)
    assert api.status_code != 500 and page.status_code != 500
    if at_refresh == "ok":
        assert api.status_code == 200 and page.status_code == 200
    elif at_refresh == "relogin":
        assert api.status_code == 401 and api.json()["reason"] == Reason.refresh_rejected.value
        assert page.status_code == 303
    else:
        assert api.status_code == 503 and api.headers["retry-after"]
        if isinstance(change, tuple):  # the provider never saw it: the session was kept, and works
            assert after.status_code == 200 and after.json()["user"] == "alice"
        else:  # the provider rotated the refresh token in an answer the guard could not read
            assert after.status_code in (200, 401)
    if at_refresh != "unavailable":
        assert transport.seen["refresh_token"] == 1
    elif isinstance(change, tuple):
        assert transport.seen["refresh_token"] == 3  # one try per request, none answered by the provider
    else:
        assert transport.seen["refresh_token"] == 2  # and then the provider refused the spent token


# -- refreshes that survive a lost lock --------------------------------------------------------------


async def test_a_worker_that_finds_no_lock_reuses_the_result_instead_of_spending_the_token_again(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    held: tuple[HeldAnswers, httpx.AsyncClient],
) -> None:
    """Worker one's refresh answer is on its way when its lock is lost (a store failover, an eviction);
    worker two takes the lock, reads the session (still with the old refresh token), finds that token
    claimed, and waits for worker one's result rather than presenting the token a second time (which
    revokes the grant)."""
    transport, held_http = held
    store = MemoryStore(clock=clock)
    first = browser_factory(guard_factory(http_client=held_http, store=store))
    await login(first, provider)
    second = browser_factory(guard_factory(store=store))
    second.cookies.set("guard_session", first.cookies["guard_session"])
    clock.advance(3600 - 30)
    answers: dict[str, httpx.Response] = {}

    async def call(name: str, browser: httpx.AsyncClient) -> None:
        answers[name] = await browser.get("/api/me", headers=JSON)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "first", first)
        await transport.entered.wait()
        [lock] = [k for k in store._data if k.startswith(LOCK_PREFIX)]
        await store.delete(lock)  # the lock is lost
        tg.start_soon(call, "second", second)
        await anyio.wait_all_tasks_blocked()  # the second worker waits for the claimed token's result
        assert "second" not in answers
        transport.go.set()

    assert answers["first"].status_code == answers["second"].status_code == 200
    assert answers["first"].json()["access_token"] == answers["second"].json()["access_token"]
    sent = refresh_tokens_sent(provider)
    assert len(sent) == 1 == len(set(sent))
    assert provider.grant_alive(answers["first"].json()["access_token"])
    assert provider.count(endpoint="token", error="invalid_grant") == 0


# -- the pure parts --------------------------------------------------------------------------------


def test_lifetime_ends_at_the_first_limit_and_keeps_the_record_a_minute_longer() -> None:
    lifetime = Lifetime(max_age=3600, idle_timeout=600)
    session = Session(sid="s", tokens=None, claims={}, created_at=0, last_seen=3000)
    assert lifetime.ended(session, 3599) is None
    assert lifetime.ended(session, 3600) == "max_age"  # although it was used 10 minutes ago
    idle = Session(sid="s", tokens=None, claims={}, created_at=0, last_seen=100)
    assert lifetime.ended(idle, 699) is None and lifetime.ended(idle, 700) == "idle_timeout"
    assert lifetime.ttl(idle, 100) == 600 + 60 and lifetime.ttl(session, 3000) == 600 + 60
    assert lifetime.ttl(session, 3500) == 100 + 60  # the absolute age comes first
    assert not lifetime.touch_due(idle, 159) and lifetime.touch_due(idle, 160)
    never = Lifetime(max_age=3600, idle_timeout=None)
    assert never.ended(idle, 3599) is None and not never.touch_due(idle, 3000)
    old_record = Session(sid="s", tokens=None, claims={}, created_at=50)  # from before last_seen existed
    assert old_record.seen_at == 50


async def test_the_breaker_lets_one_probe_through_and_the_others_wait_for_its_answer(
    clock: FakeClock,
) -> None:
    breaker = ClientBreaker(cooldown=30, clock=clock)
    assert await breaker.allow()
    breaker.refused()
    assert not await breaker.allow()
    clock.advance(30)
    assert await breaker.allow()  # the probe
    results: list[bool] = []

    async def waiter() -> None:
        results.append(await breaker.allow())

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert results == []  # waiting for the probe
        breaker.answered()
    assert results == [True] * 3 and not breaker.open
    breaker.refused()
    clock.advance(30)
    assert await breaker.allow()
    breaker.inconclusive()  # the probe met an outage: the next caller probes
    assert await breaker.allow()
