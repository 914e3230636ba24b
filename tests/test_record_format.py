"""Session records of format 2 (an array) and format 1 (an object, what the guard wrote before): both are
read whatever a guard writes, so processes that write either share a store (a rolling deploy onto format 2
with ``session_record_format=1`` until no process of the previous version is left, then 2)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from asgi_oauth_guard import ConfigurationError, MemoryStore, OAuthGuard
from asgi_oauth_guard._crypto import seal, unseal
from asgi_oauth_guard._session import SESSION_LAYOUT
from asgi_oauth_guard._sessions import SESSION_PREFIX
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from .conftest import GuardFactory, login

pytestmark = pytest.mark.anyio

BrowserFactory = Callable[..., httpx.AsyncClient]


async def stored_record(guard: OAuthGuard, browser: httpx.AsyncClient) -> Any:
    """The session record the store holds for the browser's session cookie, decrypted and parsed."""
    cookie = next(c.value for c in browser.cookies.jar if c.name == guard._cookies.session_name)
    opened = guard._keyring.open_session_cookie(cookie)
    assert opened is not None
    sid, key = opened
    blob = await guard.store.get(SESSION_PREFIX + sid)
    assert blob is not None
    plain = unseal(key, sid.encode(), blob)
    assert plain is not None
    return json.loads(plain)


def one_format_each(guard_factory: GuardFactory, clock: FakeClock) -> tuple[OAuthGuard, OAuthGuard]:
    """Two processes of a rolling deploy sharing one store: one writing format 1, one format 2."""
    store = MemoryStore(clock=clock)
    return guard_factory(store=store, session_record_format=1), guard_factory(store=store)


async def me(browser: httpx.AsyncClient) -> Any:
    answer = await browser.get("/me")
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("signs_in", ["format 1", "format 2"])
async def test_each_format_is_served_by_a_guard_writing_the_other(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    signs_in: str,
) -> None:
    old, new = one_format_each(guard_factory, clock)
    first, other = (old, new) if signs_in == "format 1" else (new, old)
    browser = browser_factory(first)
    await login(browser, provider)
    # The same browser, its next requests sent to the other process (a load balancer without affinity).
    elsewhere = browser_factory(other)
    elsewhere.cookies = browser.cookies
    written = await stored_record(first, browser)
    if first is old:
        assert type(written) is dict and written["sid"] and "last_seen" in written and "tokens" in written
    else:
        assert type(written) is list and written[0] == 2 and len(written) == 1 + len(SESSION_LAYOUT)
    seen = await me(elsewhere)
    assert seen["user"] == "alice"
    # The other process refreshes the token (it is due) and writes the session in its own format; the first
    # serves that, with the new token.
    clock.advance(3600 - 30)
    refreshed = await me(elsewhere)
    assert refreshed["user"] == "alice" and refreshed["access_token"] != seen["access_token"]
    rewritten = await stored_record(other, browser)
    assert type(rewritten) is (dict if other is old else list)
    assert (await me(browser))["access_token"] == refreshed["access_token"]
    assert provider.count(grant_type="refresh_token") == 1


@pytest.mark.parametrize("value", [0, 3, "2", True, 2.0, None])
async def test_a_record_format_it_does_not_write_is_refused(guard_factory: GuardFactory, value: Any) -> None:
    with pytest.raises(ConfigurationError, match="session_record_format="):
        guard_factory(session_record_format=value)


async def test_a_record_of_a_later_format_asks_for_a_sign_in_and_says_why_once_a_minute(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A rollback onto this version after a later one wrote format 3: each such user signs in again, and
    # the log says why (on a shared store, nothing else would).
    guard = guard_factory()
    browser = browser_factory(guard)
    await login(browser, provider)
    record = await stored_record(guard, browser)
    cookie = next(c.value for c in browser.cookies.jar if c.name == guard._cookies.session_name)
    opened = guard._keyring.open_session_cookie(cookie)
    assert opened is not None
    sid, key = opened
    later = seal(key, sid.encode(), json.dumps([3, *record[1:], "a field format 3 added"]).encode())
    await guard.store.set(SESSION_PREFIX + sid, later, ttl=3600)
    caplog.set_level(logging.WARNING, logger="asgi_oauth_guard")

    async def refused() -> list[str]:
        answer = await browser.get("/me", headers={"accept": "application/json"})
        assert answer.status_code == 401 and answer.json()["reason"] == "session_expired"
        return [r.getMessage() for r in caplog.records if "session record of format 3" in r.getMessage()]

    assert len(await refused()) == 1 and "reads formats up to 2" in (await refused())[0]
    clock.advance(59)
    assert len(await refused()) == 1  # at most once a minute
    clock.advance(1)
    assert len(await refused()) == 2
    assert cookie not in caplog.text and sid not in caplog.text and record[2][0] not in caplog.text
    assert await guard.store.get(SESSION_PREFIX + sid) == later  # kept: the later version still reads it
