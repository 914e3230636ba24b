"""Offline grants: one refresh token per grant, shared by the user's sessions and the token manager."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from asgi_oauth_guard import (
    ConfigurationError,
    ConsentRequired,
    GuardEvent,
    MemoryStore,
    OAuthGuard,
    OfflineAccess,
    ServerKeyError,
)
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import BrowserFactory, GuardFactory, login, start_login
from .conftest import NEW_SERVER_KEY, SERVER_KEY

pytestmark = pytest.mark.anyio


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def offline_guard(guard_factory: GuardFactory, **settings: Any) -> OAuthGuard:
    settings.setdefault("offline", OfflineAccess())
    settings.setdefault("server_keys", [SERVER_KEY])
    return guard_factory(**settings)


async def signed_in(
    guard: OAuthGuard, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> httpx.AsyncClient:
    browser = browser_factory(guard)
    await login(browser, provider)
    return browser


async def test_sign_in_moves_the_refresh_token_into_a_sealed_offline_record(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    store = MemoryStore(clock=clock)
    guard = offline_guard(guard_factory, store=store)
    await signed_in(guard, browser_factory, provider)
    authorize = next(c for c in provider.calls if c.endpoint == "authorize")
    assert "offline_access" in authorize.params["scope"].split()
    assert "prompt" not in authorize.params  # consent only when a grant must be restored
    dump = b"".join(value for value, _ in store._data.values()) + repr(store._indexes).encode()
    for secret in provider.issued_secrets():
        assert secret.encode() not in dump
    async with guard.tokens() as tm:
        token = await tm.for_user("alice")
    assert provider.count(endpoint="token", grant_type="refresh_token") == 0  # the sign-in's token is fresh
    assert provider.token_info(token.access_token)["sub"] == "alice"
    assert token.access_token not in repr(token)


async def test_a_hundred_jobs_and_the_browser_at_expiry_share_one_refresh(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    guard = offline_guard(guard_factory)
    browser = await signed_in(guard, browser_factory, provider)
    before = (await browser.get("/api/me")).json()["access_token"]
    clock.advance(3600 - 30)  # inside the leeway
    hold = provider.hold(endpoint="token")
    tokens: list[str] = []
    pages: list[httpx.Response] = []

    async with guard.tokens() as tm:

        async def job() -> None:
            tokens.append((await tm.for_user("alice")).access_token)

        async def page() -> None:
            pages.append(await browser.get("/api/me"))

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(job)
                if i % 10 == 0:
                    tg.start_soon(page)
            await hold.wait_entered(1)
            await anyio.wait_all_tasks_blocked()
            hold.release()

    assert provider.count(endpoint="token", grant_type="refresh_token") == 1
    assert len(set(tokens)) == 1 and tokens[0] != before
    assert {p.json()["access_token"] for p in pages} == {tokens[0]}  # the session draws on the grant
    assert provider.grant_alive(tokens[0])
    # Later: the session's next due token comes from the grant the job refreshed, without a refresh.
    clock.advance(3600 - 30)
    async with guard.tokens() as tm:
        job_token = (await tm.for_user("alice")).access_token
    page_token = (await browser.get("/api/me")).json()["access_token"]
    assert page_token == job_token
    assert provider.count(endpoint="token", grant_type="refresh_token") == 2
    assert provider.grant_alive(job_token)


async def test_a_grant_revoked_at_the_provider_asks_for_consent_once_and_sign_in_restores_it(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    events: list[GuardEvent] = []
    guard = offline_guard(guard_factory, on_event=events.append)
    browser = await signed_in(guard, browser_factory, provider)
    provider.revoke_grants("alice")
    clock.advance(3600)
    async with guard.tokens() as tm:
        for _ in range(3):
            with pytest.raises(ConsentRequired) as caught:
                await tm.for_user("alice")
            assert caught.value.reason == "revoked" and caught.value.sub == "alice"
        assert await tm.consent_needed("alice")
    lost = [e for e in events if e.kind == "offline_grant_lost"]
    assert lost == [GuardEvent(kind="offline_grant_lost", sub="alice", provider="default", detail="revoked")]
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1  # never tried again
    # The browser's session drew on that grant: the user must sign in, and that sign-in asks for consent.
    answer = await browser.get("/api/me")
    assert answer.status_code == 401 and answer.json()["reason"] == "refresh_rejected"
    provider.reset_calls()
    await login(browser, provider)
    authorize = next(c for c in provider.calls if c.endpoint == "authorize")
    assert authorize.params.get("prompt") == "consent"
    assert [e.kind for e in events].count("offline_grant_restored") == 1
    async with guard.tokens() as tm:
        assert not await tm.consent_needed("alice")
        clock.advance(3600)
        token = await tm.for_user("alice")
    assert provider.grant_alive(token.access_token)
    # The next sign-in does not ask again.
    provider.reset_calls()
    await login(browser_factory(guard), provider)
    authorize = next(c for c in provider.calls if c.endpoint == "authorize")
    assert "prompt" not in authorize.params


async def test_sign_out_keeps_the_offline_grant_unless_told_to_end_it(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    guard = offline_guard(guard_factory)
    browser = await signed_in(guard, browser_factory, provider)
    assert (await browser.post("/auth/logout")).status_code == 303
    assert provider.count(endpoint="revoke") == 0
    clock.advance(3600)
    async with guard.tokens() as tm:
        token = await tm.for_user("alice")
    assert provider.grant_alive(token.access_token)

    ending = offline_guard(guard_factory, offline=OfflineAccess(end_with_sessions=True))
    browser = await signed_in(ending, browser_factory, provider)
    async with ending.tokens() as tm:
        token = await tm.for_user("alice")
    assert (await browser.post("/auth/logout")).status_code == 303
    assert provider.count(endpoint="revoke") == 1
    assert not provider.grant_alive(token.access_token)
    async with ending.tokens() as tm:
        with pytest.raises(ConsentRequired) as caught:
            await tm.for_user("alice")
    assert caught.value.reason == "no_grant"


async def test_end_sessions_ends_the_offline_grant_when_asked(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = offline_guard(guard_factory)
    await signed_in(guard, browser_factory, provider)
    assert await guard.end_sessions(sub="alice") == 1
    async with guard.tokens() as tm:
        token = await tm.for_user("alice")  # kept: end_with_sessions is off
        assert await guard.end_sessions(sub="alice", offline=True) == 0
        with pytest.raises(ConsentRequired):
            await tm.for_user("alice")
    assert not provider.grant_alive(token.access_token)


async def test_key_rotation_keeps_old_grants_readable_and_reencrypts_them(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    store = MemoryStore(clock=clock)
    await signed_in(offline_guard(guard_factory, store=store), browser_factory, provider)
    rotated = offline_guard(guard_factory, store=store, server_keys=[SERVER_KEY, NEW_SERVER_KEY])
    async with rotated.tokens() as tm:
        assert (await tm.for_user("alice")).access_token
        assert await tm.reencrypt() == 1
        assert await tm.reencrypt() == 0
    only_new = offline_guard(guard_factory, store=store, server_keys=[NEW_SERVER_KEY])
    clock.advance(3600)
    async with only_new.tokens() as tm:
        token = await tm.for_user("alice")  # refreshed with the re-encrypted record
    assert provider.grant_alive(token.access_token)
    wrong = offline_guard(guard_factory, store=store, server_keys=[SERVER_KEY])
    async with wrong.tokens() as tm:
        with pytest.raises(ServerKeyError, match="not in this process's server_keys"):
            await tm.for_user("alice")


async def test_offline_access_without_server_keys_is_refused(guard_factory: GuardFactory) -> None:
    with pytest.raises(ConfigurationError, match=r"offline access \(provider .default.\) needs server_keys="):
        guard_factory(offline=OfflineAccess())


async def test_a_resource_gets_its_own_token_and_the_grant_rotates_once_per_refresh(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    api_a, api_b = "https://api-a.example.test", "https://api-b.example.test"
    guard = offline_guard(guard_factory, offline=OfflineAccess(resources=(api_a, api_b)))
    browser = await signed_in(guard, browser_factory, provider)
    authorize = next(c for c in provider.calls if c.endpoint == "authorize")
    assert (
        authorize.params["resource"] == api_a
    )  # one resource parameter per API (the record keeps the first)
    async with guard.tokens() as tm:
        with pytest.raises(ConfigurationError, match="OfflineAccess\\(resources="):
            await tm.for_user("alice", resource="https://api-c.example.test")  # never asked for
        a = await tm.for_user("alice", resource=api_a)
        b = await tm.for_user("alice", resource=api_b)
        assert (await tm.for_user("alice", resource=api_a)).access_token == a.access_token  # cached
        default = await tm.for_user("alice")
    assert provider.token_info(a.access_token)["aud"] == api_a
    assert provider.token_info(b.access_token)["aud"] == api_b
    assert provider.token_info(default.access_token)["aud"] != api_a
    assert provider.count(endpoint="token", grant_type="refresh_token") == 2
    # The refreshes for the resources rotated the grant's refresh token: the session still works.
    clock.advance(3600)
    me = await browser.get("/api/me")
    assert me.status_code == 200 and provider.grant_alive(me.json()["access_token"])


async def test_the_user_auth_gets_another_token_once_when_the_api_refuses_it(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = offline_guard(guard_factory)
    browser = await signed_in(guard, browser_factory, provider)
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(401 if len(seen) == 1 else 200)

    async with guard.tokens() as tm, httpx.AsyncClient(transport=httpx.MockTransport(api)) as http:
        answer = await http.get("https://api.example.test/", auth=tm.user_auth("alice"))
    assert answer.status_code == 200
    assert len(seen) == 2 and seen[0] != seen[1]
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1
    # The grant rotated under the session's feet: the session still works, with no refresh of its own.
    assert (await browser.get("/api/me")).status_code == 200
    assert provider.grant_alive(seen[1].removeprefix("Bearer "))
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1


class GoogleLikeTokens(httpx.AsyncBaseTransport):
    """Google's way: a code exchange answers a refresh token only after an authorization request that
    asked for consent (``prompt=consent``), once the user has consented before."""

    def __init__(self, provider: OAuthTestProvider) -> None:
        self._inner = provider.transport()
        self._provider = provider

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.url.path != "/token" or b"grant_type=authorization_code" not in request.content:
            return response
        authorize = [c for c in self._provider.calls if c.endpoint == "authorize"]
        await response.aread()
        body = response.json()
        if len(authorize) > 1 and authorize[-1].params.get("prompt") != "consent":
            body.pop("refresh_token", None)
        return httpx.Response(response.status_code, json=body)


async def test_a_lost_grant_without_a_session_in_the_browser_is_asked_for_once_more_at_its_sign_in(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    async with httpx.AsyncClient(transport=GoogleLikeTokens(provider)) as http:
        guard = offline_guard(guard_factory, http_client=http)
        browser = await signed_in(guard, browser_factory, provider)
        provider.revoke_grants("alice")
        clock.advance(3600)
        async with guard.tokens() as tm:
            with pytest.raises(ConsentRequired):
                await tm.for_user("alice")
        assert (await browser.post("/auth/logout")).status_code == 303  # no session left to tell
        fresh = browser_factory(guard)
        callback = await start_login(fresh, provider)
        assert "prompt" not in query(callback) and "prompt" not in provider.calls[-1].params
        again = await fresh.get(callback)
        # Signed in, but the grant is still lost (no refresh token came): once more, asking for consent.
        assert again.status_code == 303 and again.headers["location"].startswith("/auth/login?")
        asked = await fresh.get(again.headers["location"])
        assert query(asked.headers["location"])["prompt"] == "consent"
        done = await fresh.get(await provider.complete_authorization(asked.headers["location"]))
        assert done.status_code == 303 and done.headers["location"] == "/"
        async with guard.tokens() as tm:
            assert not await tm.consent_needed("alice")
            token = await tm.for_user("alice", rejected="none")
        assert provider.grant_alive(token.access_token)


async def test_the_reason_says_idle_or_expired_when_that_is_what_ended_the_grant(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    events: list[GuardEvent] = []
    guard = offline_guard(
        guard_factory, offline=OfflineAccess(max_idle=7 * 24 * 3600), on_event=events.append
    )
    await signed_in(guard, browser_factory, provider)
    provider.revoke_grants("alice")  # what a provider does with a grant unused for its idle limit
    clock.advance(8 * 24 * 3600)
    async with guard.tokens() as tm:
        with pytest.raises(ConsentRequired) as caught:
            await tm.for_user("alice")
    assert caught.value.reason == "idle"
    assert [e.detail for e in events if e.kind == "offline_grant_lost"] == ["idle"]
