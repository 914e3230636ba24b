"""Replayed callbacks: the recorded session goes only to true duplicates (same browser, same code, within
``duplicate_window``); the binding cookie is renewed at sign-in; cookie names take the strongest prefix."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from asgi_oauth_guard import ConfigurationError
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from .conftest import BrowserFactory, GuardFactory, login, start_login

pytestmark = pytest.mark.anyio


def set_cookies(response: object) -> dict[str, str]:
    values = response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    return {v.split("=", 1)[0]: v.split(";", 1)[0].split("=", 1)[1] for v in values}


def with_code(callback: str, code: str) -> str:
    parts = urlsplit(callback)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    params["code"] = code
    return f"{parts.path}?{urlencode(params)}"


async def test_a_duplicate_within_the_window_gets_the_session(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    """A double click whose first answer was lost: the second load, with the same cookies and code, gets the
    same session, even though its request carries the binding the first answer renewed."""
    guard = guard_factory(duplicate_window=30)
    browser = browser_factory(guard)
    callback = await start_login(browser, provider, "/me")
    binding = browser.cookies["guard_session_tx"]
    first = await browser.get(callback)
    twin = browser_factory(guard)
    twin.cookies.set("guard_session_tx", binding, domain="app.test")  # the cookies the double click sent
    clock.advance(29)
    second = await twin.get(callback)
    assert second.status_code == 303 and second.headers["location"] == "/me"
    assert set_cookies(second)["guard_session"] == set_cookies(first)["guard_session"]
    assert (await twin.get("/me")).json()["user"] == "alice"
    assert provider.count(endpoint="token") == 1


async def test_a_replay_with_the_victims_state_and_another_code_gets_no_session(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """An attacker holding the victim's binding cookie (planted, or copied) and the callback's state, but not
    its code, gets nothing: the outcome answers only the code that was exchanged."""
    guard = guard_factory()
    victim = browser_factory(guard)
    callback = await start_login(victim, provider, "/me")
    binding = victim.cookies["guard_session_tx"]
    assert (await victim.get(callback)).status_code == 303
    attacker = browser_factory(guard)
    attacker.cookies.set("guard_session_tx", binding, domain="app.test")
    for code in ("another-code", "", "x" * 43):
        replay = await attacker.get(with_code(callback, code))
        assert "guard_session" not in set_cookies(replay), code
    assert (await attacker.get("/me")).status_code == 303
    assert provider.count(endpoint="token") == 1
    assert (await victim.get("/me")).json()["user"] == "alice"


async def test_a_replay_after_the_window_gets_no_session(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    """The right code and binding, but after ``duplicate_window``: the callback URL from history or a log
    gives no session; a browser that has one keeps it and goes to ``next``."""
    guard = guard_factory(duplicate_window=30)
    victim = browser_factory(guard)
    callback = await start_login(victim, provider, "/me")
    binding = victim.cookies["guard_session_tx"]
    assert (await victim.get(callback)).status_code == 303
    clock.advance(31)
    attacker = browser_factory(guard)
    attacker.cookies.set("guard_session_tx", binding, domain="app.test")
    replay = await attacker.get(callback)
    assert replay.status_code == 303 and "guard_session" not in set_cookies(replay)
    assert "reason=state_expired" in replay.headers["location"]
    assert (await attacker.get("/me")).status_code == 303
    back = await victim.get(callback)  # the back button, signed in
    assert back.status_code == 303 and "guard_session" not in set_cookies(back)
    assert (await victim.get("/me")).json()["user"] == "alice"


async def test_the_binding_cookie_is_renewed_at_sign_in_and_other_tabs_still_finish(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory()
    browser = browser_factory(guard)
    first_tab = await start_login(browser, provider, "/me?tab=1")
    second_tab = await start_login(browser, provider, "/me?tab=2")
    before = browser.cookies["guard_session_tx"]
    done = await browser.get(first_tab)
    after = set_cookies(done)["guard_session_tx"]
    assert after != before
    opened_before = guard._keyring.open_binding_cookie(before)
    opened_after = guard._keyring.open_binding_cookie(after)
    assert opened_before is not None and opened_after is not None
    assert opened_after.current != opened_before.current and opened_after.previous == opened_before.current
    # the second tab's sign-in was bound to the old id: it still completes, and does not renew again
    second = await browser.get(second_tab)
    assert second.status_code == 303 and second.headers["location"] == "/me?tab=2"
    assert "guard_session" in set_cookies(second) and "guard_session_tx" not in set_cookies(second)
    # a sign-in started now is bound to the new id
    third = await login(browser, provider, "/me?tab=3")
    assert third.headers["location"] == "/me?tab=3"
    assert provider.count(endpoint="token") == 3


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"public_url": "https://app.test"}, "__Host-guard_session"),
        ({"cookie_secure": True}, "__Host-guard_session"),
        ({"public_url": "https://app.test", "cookie_path": "/app"}, "__Secure-guard_session"),
        ({"public_url": "https://app.test", "cookie_domain": "app.test"}, "__Secure-guard_session"),
        ({"public_url": "http://app.test"}, "guard_session"),
        ({}, "guard_session"),  # Secure decided per request: no prefix, or http requests would lose it
        ({"public_url": "https://app.test", "cookie_name": "sid"}, "sid"),
    ],
)
async def test_cookie_names_take_the_strongest_prefix_their_attributes_allow(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    settings: dict[str, object],
    name: str,
) -> None:
    guard = guard_factory(**settings)
    browser = browser_factory(guard, base_url="https://app.test")
    started = await browser.get("/auth/login")
    assert list(set_cookies(started)) == [name + "_tx"]
    if settings.get("cookie_path", "/") == "/":
        done = await browser.get(await provider.complete_authorization(started.headers["location"]))
        assert name in set_cookies(done)
        assert (await browser.get("/me")).json()["user"] == "alice"


@pytest.mark.parametrize(
    "settings",
    [
        {"cookie_name": "__Host-x", "cookie_secure": False},
        {"cookie_name": "__Host-x", "cookie_secure": True, "cookie_domain": "app.test"},
        {"cookie_name": "__Host-x", "cookie_secure": True, "cookie_path": "/app"},
        {"cookie_name": "__Secure-x", "cookie_secure": False},
    ],
)
async def test_a_prefixed_cookie_name_the_browser_would_drop_is_refused(
    guard_factory: GuardFactory, settings: dict[str, object]
) -> None:
    with pytest.raises(ConfigurationError, match="cookie_name="):
        guard_factory(**settings)
