"""MemoryStore under pressure: bounded by entries and bytes, and never locking people out of signing in."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from asgi_oauth_guard import MemoryStore
from asgi_oauth_guard._index import META_PREFIX, OP_SESSION_PREFIX, USER_PREFIX
from asgi_oauth_guard._memory import EVICTABLE_PREFIXES
from asgi_oauth_guard._protocol import MAX_NEXT_STORED_BYTES, stored_next
from asgi_oauth_guard._sessions import SESSION_PREFIX
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import BrowserFactory, GuardFactory, login, start_login

pytestmark = pytest.mark.anyio


def test_the_guards_session_records_are_the_evictable_ones() -> None:
    assert {SESSION_PREFIX, META_PREFIX, USER_PREFIX, OP_SESSION_PREFIX} == set(EVICTABLE_PREFIXES)


async def fill_with_sessions(store: MemoryStore, *, value: bytes = b"x" * 100) -> int:
    """Session records until the store is at its limit (entries or bytes): how many it took."""
    written = 0
    while True:
        before = store.evicted_sessions
        await store.set(f"s:filler-{written}", value, ttl=14 * 24 * 3600)
        written += 1
        if store.evicted_sessions > before:
            return written


@pytest.mark.parametrize("limit", ["entries", "bytes"])
async def test_a_store_full_of_sessions_still_takes_every_new_sign_in(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    limit: str,
) -> None:
    store = (
        MemoryStore(max_entries=300, clock=clock)
        if limit == "entries"
        else MemoryStore(max_bytes=64 * 1024, clock=clock)
    )
    guard = guard_factory(store=store)
    early = browser_factory(guard)
    await login(early, provider)  # one real session, among the oldest
    await fill_with_sessions(store)
    full = (len(store), store.size)
    for _ in range(20):  # new users keep signing in
        browser = browser_factory(guard)
        done = await login(browser, provider, "/me")
        assert done.headers["location"] == "/me"
        assert (await browser.get("/me")).json()["user"] == "alice"
        assert len(store) <= 300 if limit == "entries" else store.size <= 64 * 1024
    assert store.evicted_sessions > 0 and len(store) <= full[0] + 1
    assert (await early.get("/me")).status_code == 303  # the least recently used session gave way
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "MemoryStore is full" in r.message
    ]
    assert len(warnings) == 1  # rate-limited: once a minute, however many were evicted


async def test_sessions_go_least_recently_used_first() -> None:
    clock = FakeClock()
    store = MemoryStore(max_entries=4, clock=clock)
    for name in ("a", "b", "c"):
        await store.set(f"s:{name}", b"1", ttl=1000)
    await store.get("s:a")  # used: now the most recent
    await store.set("s:d", b"1", ttl=1000)
    await store.set(
        "s:e", b"1", ttl=5000
    )  # full: b, the least recently used, goes (not the soonest to expire)
    assert [await store.get(f"s:{k}") is not None for k in "abcde"] == [True, False, True, True, True]


async def test_sessions_never_push_out_sign_ins_in_flight_and_a_flood_pushes_out_only_itself() -> None:
    clock = FakeClock()
    store = MemoryStore(max_entries=10, clock=clock)
    for i in range(4):
        await store.set(f"tx:{i}", b"1", ttl=600)
    for i in range(40):  # sessions keep coming: they push out each other, never the sign-ins
        await store.set(f"s:{i}", b"1", ttl=1000)
    assert all([await store.get(f"tx:{i}") is not None for i in range(4)])
    assert len(store) == 10
    for i in range(100):  # a flood of sign-ins: once it holds half, it pushes out itself, not sessions
        await store.set(f"tx:flood-{i}", b"1", ttl=600 + i)
    sessions = [i for i in range(40) if await store.get(f"s:{i}") is not None]
    assert len(sessions) == 5 and len(store) == 10
    assert await store.get("tx:flood-99") is not None


async def test_bytes_are_bounded_and_counted_for_indexes_too() -> None:
    clock = FakeClock()
    store = MemoryStore(max_bytes=8192, clock=clock)
    for i in range(200):
        await store.set(f"s:{i}", b"v" * 200, ttl=1000)
        await store.index_add("iu:user", f"member-{i}", ttl=1000)
        assert store.size <= 8192
    assert 0 < len(await store.index_members("iu:user")) < 200
    big = b"b" * 5000
    await store.set("tx:big", big, ttl=600)  # fits once sessions give way
    assert await store.get("tx:big") == big and store.size <= 8192
    await store.delete("tx:big")
    await store.index_discard("iu:user", "member-199")
    for key in list(store._sizes):
        await store.delete(key)
    assert store.size == 0 and len(store) == 0


async def test_next_is_capped_in_bytes_as_stored(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    wide = "/" + "é" * 2000  # 2001 characters, under the 2048 cap; 12 KB as stored JSON
    assert len(json.dumps(wide)) > MAX_NEXT_STORED_BYTES and stored_next(wide) == "/"
    assert stored_next("/ok?q=" + "é" * 1000) == "/ok"  # the path alone
    assert stored_next("/a?b=c") == "/a?b=c"
    browser = browser_factory(guard_factory())
    callback = await start_login(browser, provider, "/x?q=" + "é" * 1000)
    done = await browser.get(callback)
    assert done.status_code == 303 and done.headers["location"] == "/x"


def test_memory_store_refuses_a_useless_byte_bound() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryStore(max_bytes=100)


async def test_flood_keeps_sign_ins_working_for_real_users(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    """Anonymous clients flood the login route while real users sign in: both stay within bounds."""
    store = MemoryStore(max_entries=200, clock=clock)
    guard = guard_factory(store=store)
    flood = browser_factory(guard)
    users: list[httpx.AsyncClient] = []
    for round_ in range(10):
        for _ in range(40):
            assert (await flood.get("/auth/login")).status_code == 303
            flood.cookies.clear()
        user = browser_factory(guard)
        await login(user, provider)
        users.append(user)
        assert len(store) <= 200, round_
    assert [(await u.get("/me")).json()["user"] for u in users] == ["alice"] * 10
