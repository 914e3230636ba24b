"""Transparent refresh, one at a time; what the provider's answers do to the session; logout; events."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import GuardAuth, GuardEvent, MemoryStore, OAuthGuard, Reason
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from .conftest import CLIENT_ID, CLIENT_SECRET, ISSUER, GuardFactory, login, start_login

pytestmark = pytest.mark.anyio

BrowserFactory = Callable[..., httpx.AsyncClient]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def signed_in(
    guard: OAuthGuard, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> tuple[httpx.AsyncClient, dict[str, object]]:
    browser = browser_factory(guard)
    await login(browser, provider)
    me = (await browser.get("/me")).json()
    assert me["user"] == "alice"
    return browser, me


async def test_fifty_concurrent_requests_share_one_refresh(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    browser, me = await signed_in(guard_factory(), browser_factory, provider)
    clock.advance(3600 - 30)  # inside the 60 s leeway of a 1-hour token
    hold = provider.hold(endpoint="token")
    answers: list[httpx.Response] = []

    async def call() -> None:
        answers.append(await browser.get("/api/me", headers={"accept": "application/json"}))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(call)
        await hold.wait_entered(1)
        await anyio.wait_all_tasks_blocked()  # all 50 are in: one at the provider, 49 waiting for it
        hold.release()

    assert provider.count(endpoint="token", grant_type="refresh_token") == 1
    assert [a.status_code for a in answers] == [200] * 50
    tokens = {a.json()["access_token"] for a in answers}
    assert len(tokens) == 1 and tokens != {me["access_token"]}
    assert {a.json()["refreshes"] for a in answers} == {1}
    assert provider.grant_alive(tokens.pop())


async def test_rotation_survives_a_thousand_requests_with_one_second_tokens(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    provider = OAuthTestProvider(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        clock=clock,
        access_token_ttl=1.0,
        rotate_refresh_tokens=True,
    )
    async with httpx.AsyncClient(transport=provider.transport()) as http:
        browser, _ = await signed_in(guard_factory(http_client=http), browser_factory, provider)
        statuses: list[int] = []

        async def call() -> None:
            statuses.append(
                (await browser.get("/api/me", headers={"accept": "application/json"})).status_code
            )

        for _ in range(100):
            clock.advance(0.3)
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(call)
    assert statuses == [200] * 1000
    refreshes = [c for c in provider.calls if c.grant_type == "refresh_token"]
    assert provider.count(endpoint="token", error="invalid_grant") == 0
    sent = [c.params["refresh_token"] for c in refreshes]
    assert len(sent) == len(set(sent)), "a refresh token was sent twice"
    assert 40 <= len(sent) <= 100  # about every half-lifetime (0.5 s) over 30 s, never per request


async def test_provider_revokes_the_grant_then_relogin(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    store = MemoryStore(clock=clock)
    guard = guard_factory(store=store)
    browser, _ = await signed_in(guard, browser_factory, provider)
    provider.revoke_grants("alice")  # a password change
    clock.advance(3600)
    page = await browser.get("/me")
    assert page.status_code == 303
    assert query(page.headers["location"]) == {"next": "/me", "reason": "refresh_rejected"}
    api = await browser.get("/api/me", headers={"accept": "application/json"})
    assert api.status_code == 401
    assert api.json()["reason"] == "refresh_rejected" and api.json()["error"] == "login_required"
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1  # not retried on every request
    sid, key = guard._keyring.open_session_cookie(browser.cookies["guard_session"])  # type: ignore[misc]
    session = await guard._sessions.load(sid, key)
    assert session is not None and session.tokens is None  # the refused tokens are gone from the store
    # The re-login works and replaces the session.
    await login(browser, provider, "/me")
    assert (await browser.get("/me")).json()["user"] == "alice"


@pytest.mark.parametrize("fault", ["connect_error", "status_503", "status_500", "timeout"])
async def test_provider_down_keeps_the_session(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    fault: str,
) -> None:
    browser, me = await signed_in(guard_factory(), browser_factory, provider)

    attempts = 3  # the refresh is tried once per request below, while the provider is down
    if fault == "connect_error":
        provider.connect_error_next(attempts)
    elif fault == "timeout":
        provider.timeout_next(attempts)
    elif fault == "status_500":
        provider.fail_next(attempts, status=500)
    else:
        provider.fail_next(attempts, status=503)

    clock.advance(3600 - 30)  # due for refresh, still valid for 30 s
    still_valid = await browser.get("/api/me", headers={"accept": "application/json"})
    assert still_valid.status_code == 200 and still_valid.json()["access_token"] == me["access_token"]
    clock.advance(60)  # expired now
    down = await browser.get("/api/me", headers={"accept": "application/json"})
    assert down.status_code == 503 and int(down.headers["retry-after"]) > 0
    assert down.json()["error"] == "temporarily_unavailable"
    page = await browser.get("/me")
    assert page.status_code == 503 and "Try again" in page.text

    back = await browser.get("/api/me", headers={"accept": "application/json"})
    assert back.status_code == 200 and back.json()["access_token"] != me["access_token"]
    assert provider.count(endpoint="token", error="invalid_grant") == 0


async def test_refresh_keeps_the_refresh_token_when_the_answer_has_none(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    provider = OAuthTestProvider(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        clock=clock,
        rotate_refresh_tokens=False,
    )
    async with httpx.AsyncClient(transport=provider.transport()) as http:
        browser, _ = await signed_in(guard_factory(http_client=http), browser_factory, provider)
        for _ in range(3):
            clock.advance(3600)
            assert (await browser.get("/me")).status_code == 200
    sent = {c.params["refresh_token"] for c in provider.calls if c.grant_type == "refresh_token"}
    assert len(sent) == 1 and provider.count(endpoint="token", grant_type="refresh_token") == 3


async def test_leeway_suits_short_lived_tokens(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    provider = OAuthTestProvider(
        issuer=ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock, access_token_ttl=10
    )
    async with httpx.AsyncClient(transport=provider.transport()) as http:
        browser, _ = await signed_in(guard_factory(http_client=http), browser_factory, provider)
        clock.advance(4)  # 6 s left of 10: a 60 s leeway would refresh on every request
        for _ in range(5):
            await browser.get("/me")
        assert provider.count(endpoint="token", grant_type="refresh_token") == 0
        clock.advance(2)  # half the lifetime left: refresh
        await browser.get("/me")
        assert provider.count(endpoint="token", grant_type="refresh_token") == 1


async def test_guard_auth_refreshes_once_on_invalid_token_and_retries(
    provider: OAuthTestProvider,
    clock: FakeClock,
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
) -> None:
    async with httpx.AsyncClient(transport=provider.transport()) as api:

        async def profile(request: Request) -> JSONResponse:
            answer = await api.get(f"{ISSUER}/userinfo", auth=GuardAuth())
            return JSONResponse({"status": answer.status_code, "body": answer.json()})

        guard = guard_factory(app=Starlette(routes=[Route("/profile", profile), Route("/me", profile)]))
        browser = browser_factory(guard)
        await login(browser, provider)
        assert (await browser.get("/profile")).json() == {
            "status": 200,
            "body": (await browser.get("/me")).json()["body"],
        }
        provider.expire_access_tokens()  # the API refuses the token although its expiry looks far away
        answer = (await browser.get("/profile")).json()
        assert answer["status"] == 200 and answer["body"]["sub"] == "alice"
        assert provider.count(endpoint="token", grant_type="refresh_token") == 1
        assert provider.count(endpoint="userinfo") == 4  # two good calls, one refused, one retried


async def test_logout_deletes_the_session_and_revokes_the_refresh_token(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory()
    browser, me = await signed_in(guard, browser_factory, provider)
    cookie = browser.cookies["guard_session"]
    out = await browser.post("/auth/logout")
    assert out.status_code == 303 and out.headers["location"] == "/"
    assert "guard_session=;" in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert provider.count(endpoint="revoke") == 1
    assert not provider.grant_alive(str(me["access_token"]))
    replay = browser_factory(guard)
    replay.cookies.set("guard_session", cookie)
    assert (await replay.get("/me")).status_code == 303  # the old cookie no longer opens anything


async def test_rp_initiated_logout_redirects_to_the_end_session_endpoint(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser, _ = await signed_in(guard_factory(rp_initiated_logout=True), browser_factory, provider)
    out = await browser.post("/auth/logout")
    location = out.headers["location"]
    assert location.startswith(f"{ISSUER}/end_session?")
    params = query(location)
    assert (
        params["post_logout_redirect_uri"] == "http://app.test/" and params["id_token_hint"].count(".") == 2
    )


async def test_logout_survives_a_provider_outage(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser, _ = await signed_in(guard_factory(), browser_factory, provider)
    provider.down = True
    out = await browser.post("/auth/logout")
    assert out.status_code == 303
    assert (await browser.get("/me")).status_code == 303


async def test_events_reach_the_hook(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    events: list[GuardEvent] = []

    async def hook(event: GuardEvent) -> None:
        events.append(event)

    browser, _ = await signed_in(guard_factory(on_event=hook), browser_factory, provider)
    clock.advance(3600)
    await browser.get("/me")
    provider.down = True
    clock.advance(3600)
    await browser.get("/me")
    provider.down = False
    provider.revoke_grants("alice")
    await browser.get("/me")
    await browser.post("/auth/logout")
    kinds = [(e.kind, e.reason) for e in events]
    assert kinds == [
        ("code_exchange", None),
        ("login", None),
        ("refresh", None),
        ("refresh_failed", None),
        ("refresh_failed", Reason.refresh_rejected),
        ("relogin", Reason.refresh_rejected),
        ("logout", None),
    ]
    assert events[0].detail == "ok" and events[1].sub == "alice"
    assert {e.sub for e in events if e.kind in ("refresh", "refresh_failed")} == {"alice"}


async def test_one_failed_refresh_is_one_event_however_many_requests_shared_it(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    events: list[GuardEvent] = []
    browser, _ = await signed_in(guard_factory(on_event=events.append), browser_factory, provider)
    provider.revoke_grants("alice")
    clock.advance(3600)
    hold = provider.hold(endpoint="token")
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(browser.get, "/api/me")
        await hold.wait_entered(1)
        await anyio.wait_all_tasks_blocked()
        hold.release()
    failed = [e for e in events if e.kind == "refresh_failed"]
    assert len(failed) == 1 and failed[0].reason is Reason.refresh_rejected
    assert len([e for e in events if e.kind == "relogin"]) == 10  # each request got the re-login response


async def test_a_failing_event_hook_does_not_break_requests(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    def hook(event: GuardEvent) -> None:
        raise RuntimeError("metrics backend down")

    browser, _ = await signed_in(guard_factory(on_event=hook), browser_factory, provider)
    assert (await browser.get("/me")).status_code == 200


async def test_custom_relogin_handler_gets_the_request_and_reason(
    guard_factory: GuardFactory, browser_factory: BrowserFactory
) -> None:
    seen: list[Reason] = []

    def handler(request: Request, reason: Reason) -> JSONResponse:
        seen.append(reason)
        return JSONResponse({"custom": reason.value, "path": request.url.path}, status_code=418)

    browser = browser_factory(guard_factory(relogin=handler))
    response = await browser.get("/me")
    assert response.status_code == 418 and response.json() == {"custom": "login_required", "path": "/me"}
    assert seen == [Reason.login_required]


async def test_page_mode_shows_a_sign_in_button(
    guard_factory: GuardFactory, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard_factory(relogin="page"))
    page = await browser.get("/me")
    assert page.status_code == 401 and 'id="sign-in"' in page.text and "/auth/login?next=%2Fme" in page.text
    api = await browser.get("/api/me", headers={"accept": "application/json"})
    assert api.status_code == 401 and api.json()["reason"] == "login_required"


def test_provider_descriptions_are_logged_without_what_we_sent() -> None:
    from asgi_oauth_guard import TokenEndpointError

    error = TokenEndpointError("invalid_grant", "AADSTS70000: refresh token rt-123456789 was revoked\x1b[31m")
    assert (
        error.describe("rt-123456789")
        == "invalid_grant: AADSTS70000: refresh token <redacted> was revoked?[31m"
    )
    assert TokenEndpointError("invalid_grant").describe("x") == "invalid_grant"


class FlakyStore(MemoryStore):
    """A MemoryStore whose named operations raise, like a backend that lost its connection."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.failing: set[str] = set()

    def _check(self, operation: str) -> None:
        if operation in self.failing:
            raise ConnectionError("store unreachable")

    async def get(self, key: str) -> bytes | None:
        self._check("get")
        return await super().get(key)

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        self._check("set")
        await super().set(key, value, ttl=ttl)

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        self._check("add")
        return await super().add(key, value, ttl=ttl)

    async def acquire(self, key: str, owner: str, *, lease: float) -> bool:
        self._check("acquire")
        return await super().acquire(key, owner, lease=lease)


@pytest.mark.parametrize("operation", ["get", "set", "add", "acquire"])
async def test_a_store_outage_is_a_503_on_every_route_and_loses_no_session(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    operation: str,
) -> None:
    store = FlakyStore(clock)
    guard = guard_factory(store=store)
    browser, _ = await signed_in(guard, browser_factory, provider)
    callback = await start_login(browser, provider, "/me")
    clock.advance(3600)  # the session's token is due: a request reads, locks, refreshes and writes
    store.failing = {operation}
    answers = [
        await browser.get("/api/me", headers={"accept": "application/json"}),
        await browser.get(callback),
        await browser.get("/auth/login"),
    ]
    failed = [a for a in answers if a.status_code == 503]
    assert failed, [a.status_code for a in answers]
    assert all(a.status_code < 500 or (a.status_code == 503 and a.headers["retry-after"]) for a in answers)
    store.failing = set()
    assert (await browser.get("/api/me", headers={"accept": "application/json"})).json()["user"] == "alice"
    # A refresh whose save failed is saved later, never redone with the rotated-away refresh token.
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1
    assert provider.count(endpoint="token", error="invalid_grant") == 0


class FailingSaves(MemoryStore):
    """A MemoryStore whose next ``failures`` session saves (``replace``) raise: a master that died while
    the provider answered a refresh, and the promoted replica taking writes a moment later."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.failures = 0

    async def replace(self, key: str, value: bytes, *, ttl: float) -> bool:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store unreachable")
        return await super().replace(key, value, ttl=ttl)


async def test_rotated_tokens_the_store_failed_to_take_are_saved_once_it_answers_again(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    # The new refresh token exists only in this process: left for a later request, it is lost when another
    # worker gets the session after the claim expires and presents the old one (the Sentinel failover soak).
    store = FailingSaves(clock)
    guard = guard_factory(store=store)
    browser, _ = await signed_in(guard, browser_factory, provider)
    clock.advance(3600)
    store.failures = 3
    answer = await browser.get("/api/me", headers={"accept": "application/json"})
    assert answer.status_code == 200 and answer.json()["user"] == "alice"
    assert store.failures == 0
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1
    # What the store holds is the rotated session: another process (no memory of it) refreshes with the
    # new refresh token, never the old one.
    clock.advance(3600)
    elsewhere = browser_factory(guard_factory(store=store))
    elsewhere.cookies = browser.cookies
    assert (await elsewhere.get("/api/me", headers={"accept": "application/json"})).json()["user"] == "alice"
    assert provider.count(endpoint="token", grant_type="refresh_token") == 2
    assert provider.count(endpoint="token", error="invalid_grant") == 0
