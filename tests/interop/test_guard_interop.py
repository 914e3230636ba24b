"""The guard against the real provider: an example app under uvicorn, a scripted browser, oidc-provider 9.13.3.

``examples.starlette_app:app`` is configured only through its environment (the example apps contract,
examples/README.md) to use a private oidc-provider with refresh-token rotation (reuse revokes the grant), PKCE
required, 5 s access tokens and 10 s codes. Every test runs twice: with the memory store (one uvicorn worker)
and with a real redis-server (two workers, so duplicates and refreshes cross processes).

What the provider saw is read from its journal (``GET /admin/events``: every token request, how it ended,
every grant revoked) and its storage (``GET /admin/grants``: the user's grants and their live tokens).

The guard reads the real clock, so token expiry is waited for in real time: moving only the provider's clock
(``/admin/advance-clock``) would make the provider refuse tokens the guard still thinks valid, and never make
the guard refresh.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from ..redis_server import RedisServer
from .conftest import InteropProvider, running_oidc_provider, unique_user
from .guard_app import (
    Browser,
    Journal,
    ServedApp,
    concurrently,
    login_redirect,
    select,
    served_example,
    session_cookie,
    tally,
    wait_until,
)

pytestmark = pytest.mark.anyio

ACCESS_TOKEN_TTL = 5
CODE_TTL = 10
# The guard refreshes a token when it has less than its leeway left: 60 s by default, capped at half the
# token's lifetime, so 2.5 s here.
LEEWAY = ACCESS_TOKEN_TTL / 2
DUPLICATE_CALLBACKS = 10
BURST = 50
SOAK_SECONDS = 30.0


@pytest.fixture(scope="module")
def guard_provider() -> Iterator[InteropProvider]:
    """A provider of this module's own: its journal holds only these tests' traffic, its clock is untouched."""
    with running_oidc_provider(access_token_ttl=ACCESS_TOKEN_TTL, code_ttl=CODE_TTL) as provider:
        yield provider


@pytest.fixture(scope="module", params=["memory", "redis"])
def app(
    request: pytest.FixtureRequest, guard_provider: InteropProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    """The Starlette example served by uvicorn: memory store with one worker, or redis with two."""
    logs = tmp_path_factory.mktemp(f"app-{request.param}")
    if request.param == "memory":
        with served_example(
            guard_provider, store="memory", store_url="memory://", workers=1, logs=logs
        ) as app:
            yield app
        return
    redis = RedisServer(logs / "redis")
    redis.start()
    try:
        with served_example(guard_provider, store="redis", store_url=redis.url, workers=2, logs=logs) as app:
            yield app
    finally:
        redis.stop()


@pytest.fixture
def journal(guard_provider: InteropProvider) -> Journal:
    return Journal(guard_provider)


Browsers = Callable[[str], Browser]


@pytest.fixture
async def browsers(app: ServedApp, guard_provider: InteropProvider) -> AsyncIterator[Browsers]:
    """``browsers(user)`` makes a browser (its own cookie jar) for ``user``; all are closed at the end."""
    made: list[Browser] = []

    def make(user: str) -> Browser:
        browser = Browser(app, guard_provider, user)
        made.append(browser)
        return browser

    yield make
    for browser in made:
        await browser.aclose()


def report(app: ServedApp, what: str, **figures: Any) -> None:
    """Figures for interop/README.md (shown with ``pytest -rP``)."""
    print(
        f"[{app.store}, {app.workers} worker(s)] {what}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
    )


# ----------------------------------------------------------------------------------------------------------


async def test_full_login_then_api_me(
    app: ServedApp, guard_provider: InteropProvider, journal: Journal, browsers: Browsers
) -> None:
    user = unique_user("login")
    browser = browsers(user)
    anonymous = await browser.api()
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "login_required"
    assert anonymous.json()["reason"] == "login_required"

    mark = await journal.mark()
    answer = await browser.login(next_path="/api/me")
    assert answer.headers["cache-control"] == "no-store"
    assert session_cookie(answer)

    before = time.time()
    me = await browser.me()
    assert me["sub"] == user
    assert me["email"] == f"{user}@example.test"  # from the ID token the guard validated
    # the access token's expiry as the guard computed it from expires_in: 5 s after the exchange
    assert before - 1 < me["expires_at"] <= before + ACCESS_TOKEN_TTL + 0.5
    assert me["refreshes"] == 0
    home = await browser.load(app.url("/"))
    assert home.status_code == 200 and "Signed in as" in home.text

    events = await journal.since(mark)
    figures = tally(events)
    assert figures["token_requests"] == 1 and figures["code_exchanges"] == 1, events
    assert figures["grant_errors"] == 0, events
    assert select(events, "grant.success", grant_type="authorization_code")[0]["sub"] == user
    grants = await journal.grants(user)
    assert [(g["refresh_tokens"], g["access_tokens"]) for g in grants] == [(1, 1)]


async def test_ten_duplicate_callbacks_make_one_exchange_and_the_grant_lives(
    app: ServedApp, journal: Journal, browsers: Browsers
) -> None:
    user = unique_user("dup")
    browser = browsers(user)
    callback = await browser.start_login(next_path="/api/me")

    mark, log_mark = await journal.mark(), app.log_mark()
    # the same URL with the same cookies, loaded ten times at once
    answers = await concurrently(DUPLICATE_CALLBACKS, lambda: browser.load(callback))

    assert [a.status_code for a in answers] == [303] * DUPLICATE_CALLBACKS, [a.text[:200] for a in answers]
    assert {a.headers["location"] for a in answers} == {"/api/me"}
    # every duplicate hands the browser the winner's session
    assert len({session_cookie(a) for a in answers}) == 1 and session_cookie(answers[0])

    events = await journal.since(mark)
    figures = tally(events)
    assert figures["token_requests"] == 1, events  # the provider saw ONE code exchange
    assert figures["code_exchanges"] == 1, events
    assert figures["grant_errors"] == 0 and figures["grants_revoked"] == 0, events
    grants = await journal.grants(user)
    assert len(grants) == 1 and grants[0]["refresh_tokens"] == 1, grants

    me = await browser.me()
    assert me["sub"] == user and me["refreshes"] == 0
    # a refresh later still works: the grant was not revoked by a second exchange
    await wait_until(me["expires_at"] - LEEWAY + 0.05)
    later = await browser.me()
    assert later["refreshes"] == 1
    assert later["expires_at"] > me["expires_at"]
    events = await journal.since(mark)
    assert tally(events)["refreshes"] == 1 and tally(events)["grant_errors"] == 0, events
    callbacks_by_pid = app.count_by_pid(r'"GET /auth/callback\?', since=log_mark)
    assert sum(callbacks_by_pid.values()) == DUPLICATE_CALLBACKS
    report(app, "duplicate callbacks", **tally(events), callbacks_by_worker=sorted(callbacks_by_pid.values()))


async def test_fifty_requests_at_each_expiry_for_thirty_seconds(
    app: ServedApp, journal: Journal, browsers: Browsers
) -> None:
    """Bursts of 50 concurrent API calls on one session, alternately at the moment its token falls due for
    refresh (2.5 s before exp) and at the moment it has expired, for 30 s of real time."""
    user = unique_user("soak")
    browser = browsers(user)
    await browser.login(next_path="/api/me")
    me = await browser.me()
    mark, log_mark = await journal.mark(), app.log_mark()
    started = time.monotonic()
    bursts = 0
    requests = 0
    while time.monotonic() - started < SOAK_SECONDS:
        at_expiry = bursts % 2 == 1
        moment = me["expires_at"] if at_expiry else me["expires_at"] - LEEWAY
        await wait_until(moment + 0.05)
        fired = time.time()
        answers = await concurrently(BURST, browser.api)
        bursts += 1
        requests += len(answers)
        statuses = sorted({a.status_code for a in answers})
        assert statuses == [200], f"burst {bursts}: {statuses}: {[a.text[:200] for a in answers][:3]}"
        bodies = [a.json() for a in answers]
        # one refresh served all fifty: the same new token, one more refresh than before
        assert {b["expires_at"] for b in bodies} == {bodies[0]["expires_at"]}, f"burst {bursts}"
        assert {b["refreshes"] for b in bodies} == {me["refreshes"] + 1}, f"burst {bursts}"
        assert bodies[0]["expires_at"] > fired
        me = bodies[0]
    elapsed = time.monotonic() - started

    events = await journal.since(mark)
    figures = tally(events)
    assert figures["grant_errors"] == 0 and figures["invalid_grant"] == 0, select(events, "grant.error")
    assert figures["grants_revoked"] == 0, events
    assert figures["refreshes"] == bursts == me["refreshes"], events  # one refresh per expiry, no more
    assert figures["token_requests"] == bursts, events

    # the grant is alive at the end: the next due request refreshes again, and the provider agrees
    await wait_until(me["expires_at"] - LEEWAY + 0.05)
    after = await browser.me()
    assert after["refreshes"] == me["refreshes"] + 1
    grants = await journal.grants(user)
    assert len(grants) == 1 and grants[0]["refresh_tokens"] == 1, grants
    figures = tally(await journal.since(mark))
    assert figures["grant_errors"] == 0
    refreshes_by_pid = app.count_by_pid(f"^INFO asgi_oauth_guard refresh sub={user} ", since=log_mark)
    # the guard's own account (its log, and the on_event hook behind it) matches the provider's
    assert sum(refreshes_by_pid.values()) == figures["refreshes"], refreshes_by_pid
    report(
        app,
        "soak",
        seconds=round(elapsed, 1),
        bursts=bursts,
        requests=requests,
        **figures,
        refreshes_by_worker=sorted(refreshes_by_pid.values()),
    )


async def test_concurrent_requests_on_a_due_token_are_one_refresh_and_one_refresh_event(
    app: ServedApp, journal: Journal, browsers: Browsers
) -> None:
    """Twenty API calls at once when the token falls due: one refresh at the provider, and the guard's
    ``refresh`` event (its log line, its ``on_event`` call) once, not once per request that waited for it."""
    user = unique_user("burst")
    browser = browsers(user)
    await browser.login(next_path="/api/me")
    me = await browser.me()
    await wait_until(me["expires_at"] - LEEWAY + 0.05)
    mark, log_mark = await journal.mark(), app.log_mark()
    answers = await concurrently(20, browser.api)
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["refreshes"] for a in answers} == {1}
    assert tally(await journal.since(mark))["refreshes"] == 1
    logged = app.count_by_pid(f"^INFO asgi_oauth_guard refresh sub={user} ", since=log_mark)
    assert sum(logged.values()) == 1, f"refresh events by worker: {logged}"


async def test_grant_revoked_at_the_provider_means_relogin(
    app: ServedApp, guard_provider: InteropProvider, journal: Journal, browsers: Browsers
) -> None:
    user = unique_user("revoked")
    page, api = browsers(user), browsers(user)  # two sessions of one user: a browser tab and an API client
    await page.login()
    await api.login(next_path="/api/me")
    due = max((await page.me())["expires_at"], (await api.me())["expires_at"]) - LEEWAY

    await guard_provider.arevoke_grants(user)  # the user changed their password
    mark = await journal.mark()
    await wait_until(due + 0.05)

    navigation = await page.load(app.url("/"))
    assert login_redirect(navigation) == {"next": "/", "reason": "refresh_rejected"}
    call = await api.api()
    assert call.status_code == 401
    body = call.json()
    assert body["error"] == "login_required" and body["reason"] == "refresh_rejected"
    assert body["login_url"].startswith("/auth/login?")

    events = await journal.since(mark)
    figures = tally(events)
    # the guard tried each session's refresh token once, and took the provider's no for an answer
    assert figures["token_requests"] == 2 and figures["invalid_grant"] == 2, events
    # the session keeps no token: the next call asks for a login without asking the provider again
    again = await api.api()
    assert again.status_code == 401 and again.json()["reason"] == "refresh_rejected"
    assert tally(await journal.since(mark))["token_requests"] == 2

    # the re-login the browser is sent to works
    callback = await page.start_login(login_url=navigation.headers["location"])
    assert (await page.load(callback)).headers["location"] == "/"
    assert (await page.me())["sub"] == user
    report(app, "revoked grant", **tally(await journal.since(mark)))


async def test_logout_revokes_the_refresh_token_at_the_provider(
    app: ServedApp, journal: Journal, browsers: Browsers
) -> None:
    user = unique_user("bye")
    browser = browsers(user)
    mark = await journal.mark()
    await browser.login(next_path="/api/me")
    assert (await browser.me())["sub"] == user
    [grant] = await journal.grants(user)
    assert grant["refresh_tokens"] == 1
    [exchange] = select(await journal.since(mark), "grant.success", grant_type="authorization_code")
    assert exchange["grant_id"] == grant["grant_id"]

    mark = await journal.mark()
    answer = await browser.client.post(app.url("/auth/logout"), headers={"origin": app.url("")})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert session_cookie(answer) == ""  # cleared

    events = await journal.since(mark)
    figures = tally(events)
    assert figures["revocation_requests"] == 1, events  # RFC 7009
    assert [e["grant_id"] for e in select(events, "grant.revoked")] == [grant["grant_id"]], events
    # the provider holds no grant and no refresh token of this user any more
    assert await journal.grants(user) == []
    logged_out = await browser.api()
    assert logged_out.status_code == 401 and logged_out.json()["error"] == "login_required"
    report(app, "logout", **figures)
