"""Back-channel logout (OIDC Back-Channel Logout 1.0), ending sessions from the app, listing a user's sessions."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from asgi_oauth_guard import GuardEvent, MemoryStore, OAuthGuard
from asgi_oauth_guard._backchannel import EVENT, InvalidLogoutToken, check_logout_token
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from .conftest import CLIENT_ID, ISSUER, BrowserFactory, GuardFactory, login

pytestmark = pytest.mark.anyio

ROUTE = "/auth/backchannel-logout"


async def post_logout(guard: OAuthGuard, token: str | None, **kwargs: Any) -> httpx.Response:
    """What the provider does: a server-to-server POST, no cookies."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(guard), base_url="http://app.test") as rp:
        if token is None:
            return await rp.post(ROUTE, **kwargs)
        return await rp.post(ROUTE, data={"logout_token": token}, **kwargs)


async def signed_in(browser: httpx.AsyncClient) -> bool:
    response = await browser.get("/me")
    return response.status_code == 200 and response.json()["user"] is not None


def unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'logout+jwt'})}.{part(claims)}."


async def test_a_logout_token_for_one_provider_session_ends_that_session_only(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    events: list[GuardEvent] = []
    guard = guard_factory(on_event=events.append)
    laptop, phone = browser_factory(guard), browser_factory(guard)
    await login(laptop, provider)
    await login(phone, provider)
    laptop_sid, phone_sid = provider.session_ids("alice")
    response = await post_logout(guard, provider.logout_token(sid=laptop_sid))
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    assert not await signed_in(laptop) and await signed_in(phone)
    again = await laptop.get("/me")
    assert again.status_code == 303 and "reason=session_expired" in again.headers["location"]
    assert [(e.kind, e.detail) for e in events if e.kind == "session_ended"] == [
        ("session_ended", "backchannel")
    ]
    # sid and sub together: both must match
    assert (await post_logout(guard, provider.logout_token(sid=phone_sid, sub="bob"))).status_code == 200
    assert await signed_in(phone)
    assert (await post_logout(guard, provider.logout_token(sid=phone_sid, sub="alice"))).status_code == 200
    assert not await signed_in(phone)


async def test_a_logout_token_for_a_user_ends_all_their_sessions_and_no_one_elses(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory()
    provider.add_user("bob")
    alices = [browser_factory(guard) for _ in range(3)]
    for browser in alices:
        await login(browser, provider)
    bob = browser_factory(guard)
    provider.login_as("bob")
    await login(bob, provider)
    assert (await post_logout(guard, provider.logout_token(sub="alice"))).status_code == 200
    assert [await signed_in(b) for b in alices] == [False, False, False]
    assert await signed_in(bob)
    assert await guard.sessions_of("alice") == []


async def test_a_replayed_logout_token_is_refused_and_ends_nothing(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory()
    browser = browser_factory(guard)
    await login(browser, provider)
    token = provider.logout_token(sub="alice")
    assert (await post_logout(guard, token)).status_code == 200
    await login(browser, provider)  # signs in again
    replay = await post_logout(guard, token)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_request"
    assert "already used" in replay.json()["error_description"]
    assert await signed_in(browser)


def _foreign_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}, auto_kid=True)


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("expired", {"exp": -120}),
    ("issued too long ago", {"iat": -3600, "exp": None}),
    ("issued in the future", {"iat": 3600}),
    ("another audience", {"aud": "another-client"}),
    ("another issuer", {"iss": "https://evil.example"}),
    ("with a nonce", {"nonce": "n"}),
    ("without events", {"events": None}),
    ("an event that is not an object", {"events": {EVENT: "yes"}}),
    ("another event", {"events": {"http://schemas.openid.net/event/other": {}}}),
    ("without sub and sid", {"sub": None}),
    ("without jti", {"jti": None}),
    ("a sub that is not a string", {"sub": 7}),
]


@pytest.mark.parametrize(("what", "claims"), INVALID, ids=[w for w, _ in INVALID])
async def test_an_invalid_logout_token_gets_400_and_ends_nothing(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    what: str,
    claims: dict[str, Any],
) -> None:
    guard = guard_factory()
    browser = browser_factory(guard)
    await login(browser, provider)
    now = int(clock())
    for name in ("iat", "exp"):
        if isinstance(claims.get(name), int):
            claims = {**claims, name: now + claims[name]}
    response = await post_logout(guard, provider.logout_token(**{"sub": "alice", **claims}))
    assert response.status_code == 400, what
    assert response.json()["error"] == "invalid_request" and response.headers["cache-control"] == "no-store"
    assert await signed_in(browser)


async def test_unsigned_and_foreign_logout_tokens_get_400_and_end_nothing(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    guard = guard_factory()
    browser = browser_factory(guard)
    await login(browser, provider)
    now = int(clock())
    claims = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "iat": now,
        "jti": "j-1",
        "sub": "alice",
        "events": {EVENT: {}},
    }
    key = _foreign_key()
    forged = jwt.encode({"alg": "RS256", "typ": "logout+jwt", "kid": key.kid}, claims, key)
    tampered = provider.logout_token(sub="alice").rsplit(".", 1)[0] + ".AAAA"  # its signature replaced
    for token in (unsigned(claims), forged, "not-a-jwt", "a.b.c", tampered):
        response = await post_logout(guard, token)
        assert response.status_code == 400 and response.json()["error"] == "invalid_request", token[:20]
    assert await signed_in(browser)


async def test_the_route_refuses_what_is_not_a_logout_request(
    guard_factory: GuardFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(guard), base_url="http://app.test") as rp:
        got = await rp.get(ROUTE)
        assert got.status_code == 405 and got.headers["allow"] == "POST"
        token = provider.logout_token(sub="alice")
        assert (await rp.post(ROUTE, json={"logout_token": token})).status_code == 400
        assert (await rp.post(ROUTE, data={"token": token})).status_code == 400
        twice = f"logout_token={token}&logout_token={token}"
        form = {"content-type": "application/x-www-form-urlencoded"}
        assert (await rp.post(ROUTE, content=twice, headers=form)).status_code == 400
        huge = "logout_token=" + "a" * 200_000
        assert (await rp.post(ROUTE, content=huge, headers=form)).status_code == 400
        assert (await rp.post(ROUTE, content=b"\xff\xfe=1", headers=form)).status_code == 400
    off = guard_factory(backchannel_logout_path=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(off), base_url="http://app.test") as rp:
        assert (await rp.post(ROUTE, data={"logout_token": token})).status_code == 404  # the app's


def test_check_logout_token_rules() -> None:
    base = {"iss": ISSUER, "aud": [CLIENT_ID], "iat": 1000, "jti": "j", "sid": "s", "events": {EVENT: {}}}
    request = check_logout_token({"typ": "logout+jwt"}, base, issuer=ISSUER, client_id=CLIENT_ID, now=1000)
    assert (request.sub, request.sid, request.jti) == (None, "s", "j")
    assert request.remember_until >= 1000 + 300
    for header, claims in [
        ({"typ": "JWT"}, base),
        ({}, {**base, "aud": [CLIENT_ID, "other"], "azp": "other"}),
        ({}, {**base, "iat": True}),
        ({}, {**base, "exp": "soon"}),
        ({}, {**base, "sid": ""}),
    ]:
        with pytest.raises(InvalidLogoutToken):
            check_logout_token(header, claims, issuer=ISSUER, client_id=CLIENT_ID, now=1000)


async def test_end_sessions_and_sessions_of_across_guards_sharing_a_store(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    """Two guards on one store stand for two workers: what one ends, the other sees ended."""
    events: list[GuardEvent] = []
    store = MemoryStore(clock=clock)
    one, two = guard_factory(store=store, on_event=events.append), guard_factory(store=store)
    first, second = browser_factory(one), browser_factory(two)
    await login(first, provider)
    clock.advance(10)
    await login(second, provider)
    listed = await two.sessions_of("alice")
    assert [s.created_at for s in listed] == [clock() - 10, clock()]
    assert all(s.issuer == ISSUER and s.last_used >= s.created_at for s in listed)
    assert await one.sessions_of("nobody") == []
    assert await one.end_sessions(sub="alice") == 2
    assert not await signed_in(first) and not await signed_in(second)
    assert await one.end_sessions(sub="alice") == 0
    assert [e.detail for e in events if e.kind == "session_ended"] == ["app", "app"]
    await login(first, provider)
    [sid] = provider.session_ids("alice")[-1:]
    assert await two.end_sessions(sid=sid) == 1
    assert not await signed_in(first)
    with pytest.raises(TypeError):
        await one.end_sessions()


async def test_a_user_keeps_at_most_max_sessions_per_user(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    events: list[GuardEvent] = []
    guard = guard_factory(max_sessions_per_user=2, on_event=events.append)
    browsers = [browser_factory(guard) for _ in range(3)]
    for browser in browsers:
        clock.advance(1)
        await login(browser, provider)
    assert [await signed_in(b) for b in browsers] == [False, True, True]  # the oldest ended
    assert len(await guard.sessions_of("alice")) == 2
    assert [e.detail for e in events if e.kind == "session_ended"] == ["user_limit"]


async def test_sign_out_unfiles_the_session_and_the_index_leaves_no_trace_of_the_user(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    store = MemoryStore(clock=clock)
    guard = guard_factory(store=store)
    browser = browser_factory(guard)
    await login(browser, provider)
    assert len(await guard.sessions_of("alice")) == 1
    dump = [key.encode() for key in store._data] + [value for value, _ in store._data.values()]
    dump += [key.encode() for key in store._indexes]
    assert not [item for item in dump if b"alice" in item]  # the index keys are HMAC tags
    await browser.post("/auth/logout")
    assert await guard.sessions_of("alice") == []
    assert not [k for k in store._data if k.startswith("m:")]
    assert not [k for k in store._indexes if store._indexes[k]]
