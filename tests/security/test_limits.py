"""Bounded resources: every store entry, in-process cache, waiting request and outbound call has a cap."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from asgi_oauth_guard import MemoryStore, OAuthGuard, TokenSet
from asgi_oauth_guard._bounded import make_room
from asgi_oauth_guard._flows import MAX_WAITING_DUPLICATES
from asgi_oauth_guard._session import Session
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import GuardFactory, login, start_login

pytestmark = pytest.mark.anyio

BrowserFactory = Callable[..., httpx.AsyncClient]
HTML = {"accept": "text/html"}


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def store_keys(store: MemoryStore, prefix: str) -> list[str]:
    return [key for key in store._data if key.startswith(prefix)]


async def signed_in(
    guard: OAuthGuard, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> httpx.AsyncClient:
    browser = browser_factory(guard)
    await login(browser, provider)
    assert (await browser.get("/me")).json()["user"] == "alice"
    return browser


# -- the store -----------------------------------------------------------------------------------------


async def test_a_browser_keeps_at_most_max_transactions_in_the_store(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    store = MemoryStore(clock=clock)
    browser = browser_factory(guard_factory(store=store, max_transactions_per_browser=5))
    for _ in range(40):
        assert (await browser.get("/auth/login")).status_code == 303
    assert len(store_keys(store, "tx:")) == 5
    assert len(store_keys(store, "b:")) == 1


async def test_a_flood_of_logins_stays_within_max_entries_and_sessions_survive_it(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    """Cookie-less clients each start a login: the store stays bounded, and the entries that give way
    are those closest to expiry (transactions), never a signed-in user's 14-day session."""
    store = MemoryStore(max_entries=100, clock=clock)
    guard = guard_factory(store=store)
    browser = await signed_in(guard, browser_factory, provider)
    flood = browser_factory(guard)
    for _ in range(300):
        assert (await flood.get("/auth/login")).status_code == 303
        flood.cookies.clear()
        assert len(store) <= 100
    assert (await browser.get("/me")).json()["user"] == "alice"


# -- waiting requests -----------------------------------------------------------------------------------


async def test_duplicate_callbacks_waiting_at_once_are_capped(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory()
    assert guard._flows._max_waiting == MAX_WAITING_DUPLICATES
    guard._flows._max_waiting = 2
    browser = browser_factory(guard)
    callback = await start_login(browser, provider, "/me")
    answers: list[httpx.Response] = []

    async def load() -> None:
        answers.append(await browser.get(callback))

    with provider.hold(endpoint="token") as hold:
        async with anyio.create_task_group() as tg:
            tg.start_soon(load)
            await hold.wait_entered(1)
            tg.start_soon(load)
            tg.start_soon(load)
            await anyio.wait_all_tasks_blocked()
            assert guard._flows._duplicates_waiting == 2
            refused = await browser.get(callback)  # a third duplicate while two wait: no third waiter
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert "set-cookie" not in refused.headers
            hold.release()

    assert [a.status_code for a in answers] == [303] * 3
    assert len({a.headers["set-cookie"].split(";")[0] for a in answers}) == 1
    assert provider.count(endpoint="token") == 1
    assert guard._flows._duplicates_waiting == 0 and guard._flows._waiting == {}
    late = await browser.get(callback)  # the refused one, reloaded: the same login
    assert late.status_code == 303 and late.headers["location"] == "/me"


# -- what the guard reads from a request -------------------------------------------------------------


async def test_a_huge_query_on_a_protected_page_gives_a_bounded_relogin(
    guard_factory: GuardFactory, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard_factory())
    response = await browser.get("/me?q=" + "x" * 60_000)
    assert response.status_code == 303
    assert len(response.headers["location"]) < 200
    assert query(response.headers["location"]) == {"next": "/me", "reason": "login_required"}
    api = await browser.get("/api/me?q=" + "x" * 60_000, headers={"accept": "application/json"})
    assert api.status_code == 401 and len(api.content) < 500
    short = await browser.get("/me?q=1")
    assert query(short.headers["location"])["next"] == "/me?q=1"


async def test_huge_and_many_cookie_headers(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory()
    browser = await signed_in(guard, browser_factory, provider)
    value = browser.cookies["guard_session"]
    remembered = (dict(guard._published.by_cookie), set(guard._published._seen))
    stranger = browser_factory(guard)
    megabyte = "x" * (1 << 20)
    for cookie in (
        f"guard_session={megabyte}",
        f"a={megabyte}; guard_session={megabyte}",
        "; ".join(f"guard_session{i}=v" for i in range(20_000)),
        f"guard_session={value[:-1]}",
    ):
        started = time.monotonic()
        response = await stranger.get("/me", headers={"cookie": cookie})
        assert response.status_code == 303 and "reason=" in response.headers["location"]
        assert time.monotonic() - started < 2  # a linear scan, nothing quadratic
    # The guard remembers only cookies it signed, and reads its own cookie wherever it is.
    assert (guard._published.by_cookie, guard._published._seen) == remembered
    far = await stranger.get("/me", headers={"cookie": f"a={megabyte}; guard_session={value}"})
    assert far.json()["user"] == "alice"
    many = [("cookie", f"c{i}=v") for i in range(500)] + [("cookie", f"guard_session={value}")]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(guard), base_url="http://app.test") as raw:
        response = await raw.get("/me", headers=httpx.Headers(many))
    assert response.json()["user"] == "alice"


async def test_huge_host_and_forwarded_headers_are_refused(
    guard_factory: GuardFactory, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard_factory(trusted_proxies=["127.0.0.0/8"]))
    for headers in (
        {"host": "h" * 100_000},
        {"x-forwarded-host": "h" * 100_000},
        {"x-forwarded-proto": "https," * 20_000, "x-forwarded-host": "a" * 300},
    ):
        response = await browser.get("/auth/login", headers={**headers, "accept": "application/json"})
        assert response.status_code == 400
        assert response.json()["message"] == "The Host header is not valid."
        assert len(response.content) < 200
        page = await browser.get("/auth/login", headers=headers)  # a person gets the page, no echo
        assert page.status_code == 400 and 'data-kind="failed"' in page.text
        assert "hhhhhhhh" not in page.text and "aaaaaaaa" not in page.text
    empty = await browser.get("/auth/login", headers={"x-forwarded-host": "," * 100_000})
    assert query(empty.headers["location"])["redirect_uri"] == "http://app.test/auth/callback"


# -- in-process caches -------------------------------------------------------------------------------


async def test_the_published_states_and_the_cookies_seen_once_are_bounded(
    guard_factory: GuardFactory, clock: FakeClock
) -> None:
    guard = guard_factory()
    published = guard._published
    tokens = TokenSet(access_token="at", issued_at=clock(), expires_at=clock() + 60)
    for i in range(10_050):
        session = Session(sid=f"sid-{i}", tokens=tokens, claims={}, created_at=clock())
        state = published.state_of(session, (session.sid, b"k" * 32))
        for _ in range(2):  # remembered at the second sight
            published.remember(f"cookie-{i}".encode(), b"blob", state, published.until(session))
        assert len(published.by_cookie) <= 10_000 and len(published._seen) <= 10_000
    assert len(published.by_cookie) >= 9_000 and b"cookie-10049" in published.by_cookie
    for i in range(20_050):  # cookies seen once each
        published.remember(f"once-{i}".encode(), b"blob", state, published.until(session))
        assert len(published._seen) <= 10_000
    assert not any(cookie.startswith(b"once-") for cookie in published.by_cookie)


def test_a_full_cache_drops_its_oldest_tenth_at_once() -> None:
    cache = {i: i for i in range(99)}
    make_room(cache, 100, lambda value: False)  # not full: nothing dropped
    assert list(cache) == list(range(99))
    cache[99] = 99
    make_room(cache, 100, lambda value: False)
    assert list(cache) == list(range(10, 100))  # the ten oldest gone at once, the order kept
    cache.update({i: i for i in range(100, 110)})
    make_room(cache, 100, lambda value: value % 2 == 0)  # the even ones kept, at the back
    assert list(cache) == [*range(20, 110), 10, 12, 14, 16, 18]
    make_room(cache, 95, lambda value: True)  # all kept: the next tenth goes all the same
    assert len(cache) < 95
    for i in range(1000, 2000):
        make_room(cache, 100, lambda value: True)
        cache[i] = i
        assert len(cache) <= 100


# -- outbound calls ------------------------------------------------------------------------------------
# A provider that never answers (a Hold never released): every call ends after http_timeout in total,
# even through a transport that enforces no timeout at all (httpx's ASGITransport).

TIMEOUT = 0.2


async def test_discovery_that_never_answers_gives_a_503(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory(http_timeout=TIMEOUT))
    with provider.hold(endpoint="discovery") as hold, anyio.fail_after(5):
        response = await browser.get("/auth/login")
        assert hold.entered == 1
    assert response.status_code == 503 and response.headers["retry-after"]


async def test_a_code_exchange_that_never_answers_is_not_sent_again(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory(http_timeout=TIMEOUT))
    callback = await start_login(browser, provider, "/me")
    with provider.hold(endpoint="token") as hold, anyio.fail_after(5):
        first = await browser.get(callback)
        again = await browser.get(callback)
        assert hold.entered == 1  # the code may be spent at the provider: never sent twice
    assert first.status_code == again.status_code == 503
    assert "set-cookie" not in first.headers


async def test_an_id_token_key_set_that_never_answers_gives_a_503(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory(http_timeout=TIMEOUT))
    callback = await start_login(browser, provider, "/me")
    with provider.hold(endpoint="jwks"), anyio.fail_after(5):
        response = await browser.get(callback)
    assert response.status_code == 503 and "set-cookie" not in response.headers


async def test_a_refresh_that_never_answers_serves_the_valid_token_then_503(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    guard = guard_factory(http_timeout=TIMEOUT)
    browser = await signed_in(guard, browser_factory, provider)
    before = (await browser.get("/me")).json()["access_token"]
    with provider.hold(endpoint="token") as hold, anyio.fail_after(5):
        clock.advance(3600 - 30)  # due, still valid
        served = await browser.get("/me")
        assert served.status_code == 200 and served.json()["access_token"] == before
        clock.advance(60)  # expired
        expired = await browser.get("/api/me", headers={"accept": "application/json"})
        assert expired.status_code == 503 and expired.headers["retry-after"]
        assert hold.entered == 2
    assert guard._refresher._flights == {}
    fresh = await browser.get("/me")  # the provider answers again; the session was kept
    assert fresh.status_code == 200 and fresh.json()["access_token"] != before


async def test_a_revocation_that_never_answers_still_logs_out(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = await signed_in(guard_factory(http_timeout=TIMEOUT), browser_factory, provider)
    with provider.hold(endpoint="revoke"), anyio.fail_after(5):
        out = await browser.post("/auth/logout")
    assert out.status_code == 303 and "guard_session=;" in out.headers["set-cookie"]
    assert (await browser.get("/me", headers=HTML)).status_code == 303
