"""Threats from SECURITY.md that the flow tests do not already cover, each with the attack played out."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from asgi_oauth_guard import MemoryStore
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET, ISSUER, SECRET_KEY, GuardFactory, login, start_login

pytestmark = pytest.mark.anyio

BrowserFactory = Callable[..., httpx.AsyncClient]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def with_params(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    params = {**query(url), **changes}
    return parts._replace(query=urlencode(params)).geturl()


def session_cookie(response: httpx.Response) -> str | None:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith("guard_session="):
            return value.split(";", 1)[0].split("=", 1)[1] or None
    return None


async def test_an_injected_code_gives_no_session(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """Code injection: an attacker who got hold of the victim's code puts it into a callback of a login of
    their own. The guard sends it with the attacker's PKCE verifier, so the provider refuses it."""
    guard = guard_factory()
    victim, attacker = browser_factory(guard), browser_factory(guard)
    stolen = query(await start_login(victim, provider, "/me"))["code"]
    own = await start_login(attacker, provider, "/me")
    response = await attacker.get(with_params(own, code=stolen))
    assert response.status_code == 303 and query(response.headers["location"])["reason"] == "state_expired"
    assert session_cookie(response) is None
    assert provider.count(endpoint="token", error="invalid_grant") == 1  # PKCE: the verifier does not match
    assert (await attacker.get("/me")).status_code == 303


async def test_an_id_token_for_another_nonce_is_refused(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """A code issued for another authorization request (another nonce) gives no session."""
    browser = browser_factory(guard_factory())
    started = await browser.get("/auth/login", params={"next": "/me"})
    authorize = with_params(started.headers["location"], nonce="n" * 43)
    response = await browser.get(await provider.complete_authorization(authorize))
    assert response.status_code == 303 and query(response.headers["location"])["reason"] == "access_denied"
    assert session_cookie(response) is None
    assert provider.count(endpoint="token") == 1
    assert (await browser.get("/me")).status_code == 303


async def test_a_planted_session_is_replaced_at_login(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """Session fixation: a session id the attacker knows (their own, planted in the victim's browser) is
    never adopted; the victim's login makes a new session and deletes the planted one."""
    guard = guard_factory()
    provider.add_user("mallory")
    attacker, victim = browser_factory(guard), browser_factory(guard)
    provider.login_as("mallory")
    planted = session_cookie(await login(attacker, provider))
    assert planted is not None
    victim.cookies.set("guard_session", planted, domain="app.test")
    assert (await victim.get("/me")).json()["user"] == "mallory"
    provider.login_as("alice")
    fresh = session_cookie(await login(victim, provider))
    assert fresh is not None and fresh != planted
    assert (await victim.get("/me")).json()["user"] == "alice"
    assert (await attacker.get("/me")).status_code == 303  # the planted session is gone for everyone


async def test_a_completed_callback_replayed_in_another_browser_gives_nothing(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """A callback URL from the victim's history or logs, after the victim signed in: its outcome is sealed
    with the victim's browser key, so another browser (even with a binding of its own) gets no session."""
    guard = guard_factory()
    victim, attacker = browser_factory(guard), browser_factory(guard)
    callback = await start_login(victim, provider, "/me")
    assert session_cookie(await victim.get(callback)) is not None
    for headers in ({}, {"accept": "application/json"}):
        replay = await attacker.get(callback, headers=headers)
        assert replay.status_code in (303, 401) and session_cookie(replay) is None
    await attacker.get("/auth/login")  # a binding of its own
    replay = await attacker.get(callback)
    assert replay.status_code == 303 and session_cookie(replay) is None
    assert "reason=state_expired" in replay.headers["location"]
    assert provider.count(endpoint="token") == 1
    assert (await attacker.get("/me")).status_code == 303


async def test_a_store_dump_reveals_no_secret(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    """Everything the guard stores, after a login, a refresh, a duplicate callback and a login in flight:
    no token, code, verifier, nonce, client secret, cookie, per-session key or browser id in any key or value."""
    store = MemoryStore(clock=clock)
    guard = guard_factory(store=store)
    browser = browser_factory(guard)
    callback = await start_login(browser, provider, "/me")
    await browser.get(callback)
    await browser.get(callback)  # a duplicate: its outcome is stored too
    renewed = guard._keyring.open_binding_cookie(browser.cookies["guard_session_tx"])
    assert renewed is not None and renewed.previous is not None  # a new browser id after the sign-in
    clock.advance(3590)
    assert (await browser.get("/me")).json()["refreshes"] == 1
    pending = await browser.get("/auth/login")  # a second tab's login, still in flight
    nonce = query(pending.headers["location"])["nonce"]

    cookie = browser.cookies["guard_session"]
    opened = guard._keyring.open_session_cookie(cookie)
    assert opened is not None
    binding = browser.cookies["guard_session_tx"]
    opened_binding = guard._keyring.open_binding_cookie(binding)
    assert opened_binding is not None
    verifiers = [c.params["code_verifier"] for c in provider.calls if "code_verifier" in c.params]
    texts = [
        *provider.issued_secrets(),
        *verifiers,
        nonce,
        CLIENT_SECRET,
        SECRET_KEY,
        cookie,
        binding,
        opened_binding.current,
        renewed.current,
        renewed.previous,
    ]
    dump = [key.encode() for key in store._data] + [value for value, _ in store._data.values()]
    assert len(dump) >= 8
    for item in dump:
        assert not [t for t in texts if t.encode() in item]
        assert opened[1] not in item  # the session's own key lives only in the cookie
        assert b"alice" not in item  # nor any claim


async def test_a_refused_code_behind_an_unusable_host_still_records_its_outcome(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """Regression: a refused code on a request whose Host the guard cannot use (a proxy passing on
    a malformed one) answered 400 without recording the outcome, so every reload waited for it and
    answered 503. Now the refusal is classified without the Host and answered at once, every time."""
    guard = guard_factory(public_url="https://www.example.com")
    browser = browser_factory(guard)
    started = await browser.get("/auth/login", headers={"host": "bad host!"})
    binding = started.headers["set-cookie"].split(";", 1)[0]
    callback = await provider.complete_authorization(started.headers["location"])
    provider.expire_codes()
    path = callback.removeprefix("https://www.example.com")
    headers = {"host": "bad host!", "cookie": binding}
    first = await browser.get(path, headers=headers)
    again = await browser.get(path, headers=headers)
    for response in (first, again):
        assert response.status_code == 303
        assert query(response.headers["location"]) == {"next": "/", "reason": "state_expired"}
    assert provider.count(endpoint="token") == 1


async def test_container_host_names_with_underscores_work(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory(), base_url="http://app_backend:8000")
    started = await browser.get("/auth/login")
    assert started.status_code == 303
    assert "redirect_uri=http%3A%2F%2Fapp_backend%3A8000%2Fauth%2Fcallback" in started.headers["location"]


async def test_host_prefixed_cookie_names_work(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """The hardening SECURITY.md recommends: ``__Host-`` cookies cannot be set by a sibling subdomain."""
    guard = guard_factory(cookie_name="__Host-guard", public_url="https://app.test")
    browser = browser_factory(guard, base_url="https://app.test")
    done = await login(browser, provider, "/me")
    for response in (done, await browser.get("/auth/login")):
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("__Host-guard") and "; Secure" in cookie and "; Path=/" in cookie
        assert "Domain=" not in cookie
    assert (await browser.get("/me")).json()["user"] == "alice"


async def test_a_replayed_old_callback_never_replaces_a_working_session(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    """Regression: after a grant was revoked and the user signed in again, pressing back onto the first
    login's callback swapped the browser back to the first, dead session: the user was signed out again."""
    provider = OAuthTestProvider(
        issuer=ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock, access_token_ttl=60
    )
    async with httpx.AsyncClient(transport=provider.transport()) as http:
        browser = browser_factory(guard_factory(http_client=http))
        first = await start_login(browser, provider, "/me")
        assert (await browser.get(first)).status_code == 303
        provider.revoke_grants("alice")
        clock.advance(40)  # the token is due: its refresh is refused
        assert "reason=refresh_rejected" in (await browser.get("/me")).headers["location"]
        await login(browser, provider, "/me")
        assert (await browser.get("/me")).json()["user"] == "alice"
        back = await browser.get(first)  # within the transaction TTL: its outcome is still stored
        # sealed for the browser id the first sign-in retired: a late replay, to the site's root
        assert back.status_code == 303 and back.headers["location"] == "/"
        assert session_cookie(back) is None
        assert (await browser.get("/me")).json()["user"] == "alice"
