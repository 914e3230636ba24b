"""The login and callback routes: exactly-once exchange, pinned redirect_uri, browser binding, bad input."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from anyio import wait_all_tasks_blocked

from asgi_oauth_guard import OAuthGuard
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from .conftest import GuardFactory, login, start_login

pytestmark = pytest.mark.anyio

BrowserFactory = Callable[..., httpx.AsyncClient]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def session_cookie(response: httpx.Response) -> str | None:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith("guard_session="):
            return value.split(";", 1)[0]
    return None


async def test_login_redirects_with_pkce_state_and_nonce(
    guard_factory: GuardFactory, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard_factory())
    response = await browser.get("/auth/login", params={"next": "/me"})
    assert response.status_code == 303
    assert response.headers["cache-control"] == "no-store"
    params = query(response.headers["location"])
    assert response.headers["location"].startswith("https://idp.example.test/authorize?")
    assert params["response_type"] == "code"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 32 and len(params["nonce"]) >= 32
    assert params["redirect_uri"] == "http://app.test/auth/callback"
    assert params["scope"] == "openid email profile"
    binding = response.headers["set-cookie"]
    assert binding.startswith("guard_session_tx=") and "HttpOnly" in binding and "SameSite=Lax" in binding
    assert "Secure" not in binding  # plain http in tests; see test_cookies_are_secure_on_https


async def test_cookies_are_secure_on_https(
    guard_factory: GuardFactory, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard_factory(), base_url="https://app.test")
    response = await browser.get("/auth/login")
    assert "; Secure" in response.headers["set-cookie"]


async def test_login_then_the_app_sees_the_user(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    done = await login(browser, provider, "/me?tab=2")
    assert done.headers["location"] == "/me?tab=2"
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    me = (await browser.get("/me")).json()
    assert me["user"] == "alice"
    assert provider.count(endpoint="token", grant_type="authorization_code") == 1
    async with httpx.AsyncClient(transport=provider.transport()) as idp:
        info = await idp.get(
            "https://idp.example.test/userinfo", headers={"Authorization": f"Bearer {me['access_token']}"}
        )
    assert info.status_code == 200 and info.json()["sub"] == "alice"


async def test_ten_concurrent_duplicate_callbacks_exchange_once(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    callback = await start_login(browser, provider, "/me")
    hold = provider.hold(endpoint="token")
    responses: list[httpx.Response] = []

    async def load() -> None:
        responses.append(await browser.get(callback))

    async with anyio.create_task_group() as tg:
        tg.start_soon(load)
        await hold.wait_entered(1)
        for _ in range(9):
            tg.start_soon(load)
        await wait_all_tasks_blocked()  # the nine duplicates are parked, waiting for the first
        hold.release()

    assert provider.count(endpoint="token", grant_type="authorization_code") == 1
    assert [r.status_code for r in responses] == [303] * 10
    assert {r.headers["location"] for r in responses} == {"/me"}
    cookies = {session_cookie(r) for r in responses}
    assert len(cookies) == 1 and None not in cookies
    me = (await browser.get("/me")).json()
    assert me["user"] == "alice" and provider.grant_alive(me["access_token"])


async def test_callback_replayed_after_login_goes_to_next(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    callback = await start_login(browser, provider, "/me")
    assert (await browser.get(callback)).status_code == 303
    again = await browser.get(callback)  # the back button
    assert again.status_code == 303 and again.headers["location"] == "/me"
    assert provider.count(endpoint="token") == 1
    assert (await browser.get("/me")).json()["user"] == "alice"


async def test_callback_replayed_much_later_with_a_session(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    browser = browser_factory(guard_factory())
    callback = await start_login(browser, provider, "/me")
    await browser.get(callback)
    clock.advance(3600)  # the state and its outcome are long gone
    again = await browser.get(callback)
    assert again.status_code == 303 and again.headers["location"] == "/"
    assert provider.count(endpoint="token", grant_type="authorization_code") == 1


def token_request(provider: OAuthTestProvider) -> dict[str, str]:
    calls = [c for c in provider.calls if c.endpoint == "token"]
    assert len(calls) == 1
    return dict(calls[0].params)


async def test_redirect_uri_is_pinned_byte_for_byte(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    response = await browser.get("/auth/login")
    authorize_redirect = query(response.headers["location"])["redirect_uri"]
    callback = await provider.complete_authorization(response.headers["location"])
    # The callback reaches the app under another spelling of its host: the exchange still sends the pinned one.
    other = callback.replace("http://app.test", "http://APP.test:80")
    assert (await browser.get(other)).status_code == 303
    assert token_request(provider)["redirect_uri"] == authorize_redirect == "http://app.test/auth/callback"


async def test_redirect_uri_behind_a_proxy_with_public_url(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory(public_url="https://www.example.com/")
    proxy_headers = {"x-forwarded-proto": "http", "x-forwarded-host": "10.0.0.7:8000"}
    browser = browser_factory(guard, base_url="http://10.0.0.7:8000")
    response = await browser.get("/auth/login", headers=proxy_headers)
    authorize_redirect = query(response.headers["location"])["redirect_uri"]
    assert authorize_redirect == "https://www.example.com/auth/callback"
    assert "; Secure" in response.headers["set-cookie"]
    callback = await provider.complete_authorization(response.headers["location"])
    path = callback.removeprefix("https://www.example.com")
    # Secure cookies are not sent over http by httpx; the proxy forwards what the browser sent over https.
    binding = response.headers["set-cookie"].split(";", 1)[0]
    done = await browser.get(path, headers={**proxy_headers, "cookie": binding})
    assert done.status_code == 303
    assert token_request(provider)["redirect_uri"] == authorize_redirect


async def test_forwarded_headers_are_trusted_only_from_configured_proxies(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    spoofed = {"x-forwarded-proto": "https", "x-forwarded-host": "evil.example"}
    untrusted = browser_factory(guard_factory())
    response = await untrusted.get("/auth/login", headers=spoofed)
    assert query(response.headers["location"])["redirect_uri"] == "http://app.test/auth/callback"

    trusted = browser_factory(guard_factory(trusted_proxies=["127.0.0.0/8"]))
    response = await trusted.get(
        "/auth/login", headers={"x-forwarded-proto": "https", "x-forwarded-host": "app.example"}
    )
    pinned = query(response.headers["location"])["redirect_uri"]
    assert pinned == "https://app.example/auth/callback"
    callback = await provider.complete_authorization(response.headers["location"])
    # The callback arrives with the proxy flipping the scheme: the stored redirect_uri is sent all the same.
    binding = response.headers["set-cookie"].split(";", 1)[0]
    path = callback.removeprefix("https://app.example")
    done = await trusted.get(path, headers={"x-forwarded-proto": "http", "cookie": binding})
    assert done.status_code == 303
    assert token_request(provider)["redirect_uri"] == pinned


async def test_callback_from_another_browser_is_refused(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory()
    rightful, attacker = browser_factory(guard), browser_factory(guard)
    callback = await start_login(rightful, provider, "/me")
    refused = await attacker.get(callback)
    assert refused.status_code == 303
    assert query(refused.headers["location"])["reason"] == "state_expired"
    assert session_cookie(refused) is None
    assert provider.count(endpoint="token") == 0
    assert (await attacker.get("/me")).status_code == 303  # still anonymous
    done = await rightful.get(callback)
    assert done.status_code == 303 and done.headers["location"] == "/me"
    assert (await rightful.get("/me")).json()["user"] == "alice"


async def test_callback_with_a_tampered_binding_cookie_is_refused(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory()
    rightful, attacker = browser_factory(guard), browser_factory(guard)
    callback = await start_login(rightful, provider)
    await attacker.get("/auth/login")  # the attacker's own, validly signed binding
    refused = await attacker.get(callback)
    assert refused.status_code == 303 and "reason=state_expired" in refused.headers["location"]
    assert provider.count(endpoint="token") == 0
    assert (await rightful.get(callback)).status_code == 303


async def test_expired_code_gets_the_relogin_response_with_a_reason(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    provider = OAuthTestProvider(
        issuer="https://idp.example.test",
        client_id="guard-client",
        client_secret="guard-secret-value-0123456789",
        clock=clock,
        code_ttl=60,
    )
    async with httpx.AsyncClient(transport=provider.transport()) as http:
        guard = guard_factory(http_client=http)
        browser = browser_factory(guard)
        callback = await start_login(browser, provider, "/me")
        clock.advance(90)
        response = await browser.get(callback)
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith("/auth/login?")
        assert query(location) == {"next": "/me", "reason": "code_expired"}
        assert provider.count(endpoint="token", error="invalid_grant") == 1
        page = await browser.get(location)  # a page with a button, not a loop back to the provider
        assert page.status_code == 200 and 'data-reason="code_expired"' in page.text
        duplicate = await browser.get(callback)  # the same answer, and the code is not sent again
        assert query(duplicate.headers["location"])["reason"] == "code_expired"
        assert provider.count(endpoint="token") == 1


async def test_refused_code_never_gives_a_500(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    callback = await start_login(browser, provider, "/me")
    provider.expire_codes()
    response = await browser.get(callback)
    assert response.status_code == 303
    assert query(response.headers["location"])["reason"] == "state_expired"
    api = await browser.get(callback, headers={"accept": "application/json"})
    assert api.status_code == 401
    assert api.json()["error"] == "login_required" and api.json()["login_url"].startswith("/auth/login?")


async def test_code_seen_before_is_never_sent_again(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    callback = await start_login(browser, provider, "/me")
    await browser.get(callback)
    code = query(callback)["code"]
    # The same code arrives with a second, fresh login's state (an injected or replayed code).
    second = await start_login(browser, provider, "/me")
    forged = second.replace(query(second)["code"], code)
    response = await browser.get(forged)
    assert response.status_code == 303
    assert provider.count(endpoint="token") == 1


async def test_prefetch_of_the_callback_consumes_nothing(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    callback = await start_login(browser, provider, "/me")
    for headers in (
        {"sec-purpose": "prefetch"},
        {"purpose": "prefetch"},
        {"sec-purpose": "prefetch;prerender"},
    ):
        prefetch = await browser.get(callback, headers=headers)
        assert prefetch.status_code == 503 and prefetch.headers["cache-control"] == "no-store"
        assert session_cookie(prefetch) is None
    assert (await browser.head(callback)).status_code == 503
    assert provider.count(endpoint="token") == 0
    real = await browser.get(callback)
    assert real.status_code == 303 and real.headers["location"] == "/me"


async def test_provider_error_is_access_denied(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    provider.disable_user("alice")
    callback = await start_login(browser, provider, "/me")
    assert query(callback)["error"] == "access_denied"
    response = await browser.get(callback)
    assert query(response.headers["location"])["reason"] == "access_denied"
    assert provider.count(endpoint="token") == 0


async def test_iss_from_another_issuer_is_refused(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    callback = await start_login(browser, provider)
    assert query(callback)["iss"] == "https://idp.example.test"
    mixed_up = callback.replace("iss=https%3A%2F%2Fidp.example.test", "iss=https%3A%2F%2Fevil.example")
    assert mixed_up != callback
    response = await browser.get(mixed_up, headers={"accept": "application/json"})
    assert response.status_code == 400 and "issuer" in response.json()["message"]
    page = await browser.get(mixed_up)
    assert page.status_code == 400 and "unexpected issuer" in page.text
    stripped = callback.split("&iss=")[0] if "&iss=" in callback else callback
    assert (await browser.get(stripped)).status_code == 400  # the provider announces iss: it must be there
    assert provider.count(endpoint="token") == 0
    assert (await browser.get(callback)).status_code == 303


async def test_several_tabs_log_in_at_once_and_the_cap_holds(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory(max_transactions_per_browser=3))
    callbacks = [await start_login(browser, provider, f"/me?tab={i}") for i in range(4)]
    first = await browser.get(callbacks[0])  # pushed out by the cap
    assert query(first.headers["location"])["reason"] == "state_expired"
    second = await browser.get(callbacks[2])
    assert second.headers["location"] == "/me?tab=2"
    third = await browser.get(callbacks[1])  # another tab finishing later: already signed in
    assert third.status_code == 303
    assert provider.count(endpoint="token") == 2


@pytest.mark.parametrize(
    ("next_path", "expected"),
    [
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok?x=1#frag", "/ok?x=1#frag"),
        ("/%0d%0aSet-Cookie:x", "/%0d%0aSet-Cookie:x"),
    ],
)
async def test_next_is_limited_to_same_site_paths(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    next_path: str,
    expected: str,
) -> None:
    browser = browser_factory(guard_factory())
    done = await login(browser, provider, next_path)
    assert done.headers["location"] == expected


async def test_each_login_gets_a_new_session_id(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory()
    browser = browser_factory(guard)
    first = session_cookie(await login(browser, provider))
    second = session_cookie(await login(browser, provider))
    assert first and second and first != second
    stale = browser_factory(guard)
    stale.cookies.set("guard_session", first.split("=", 1)[1])
    assert (await stale.get("/me")).status_code == 303  # the replaced session is gone


async def test_tokens_are_encrypted_at_rest(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    from asgi_oauth_guard import MemoryStore

    store = MemoryStore()
    browser = browser_factory(guard_factory(store=store))
    await login(browser, provider)
    me = (await browser.get("/me")).json()
    dump = b"".join(value for value, _ in store._data.values())
    assert me["access_token"].encode() not in dump
    assert b"alice" not in dump and b"refresh" not in dump


async def test_api_calls_get_401_json_and_browsers_a_redirect(
    guard_factory: GuardFactory, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard_factory())
    page = await browser.get("/me?x=1")
    assert page.status_code == 303
    assert query(page.headers["location"]) == {"next": "/me?x=1", "reason": "login_required"}
    api = await browser.get("/api/me", headers={"accept": "application/json"})
    assert api.status_code == 401
    assert api.json() == {
        "error": "login_required",
        "reason": "login_required",
        "login_url": "/auth/login?next=%2Fapi%2Fme&reason=login_required",
    }
    posted = await browser.post("/api/me")
    assert posted.status_code == 401
    assert (await browser.get("/public")).text == "public"


BAD_CALLBACKS = [
    ("missing code", "/auth/callback?state=abc"),
    ("missing state", "/auth/callback?code=abc"),
    ("repeated code", "/auth/callback?code=a&code=b&state=s"),
    ("repeated state", "/auth/callback?code=a&state=s&state=t"),
    ("oversized code", "/auth/callback?state=s&code=" + "a" * 5000),
    ("oversized state", "/auth/callback?code=c&state=" + "s" * 300),
    ("non-utf8 code", "/auth/callback?state=s&code=%ff%fe"),
    ("non-utf8 name", "/auth/callback?%ff=1&state=s&code=c"),
    ("unknown state", "/auth/callback?state=nope&code=c"),
    ("too many params", "/auth/callback?" + "&".join(f"p{i}=1" for i in range(40))),
    ("huge query", "/auth/callback?state=s&code=c&x=" + "y" * 9000),
    ("bad next", "/auth/login?next=%ff"),
    ("repeated next", "/auth/login?next=/a&next=/b"),
]


@pytest.mark.parametrize(("name", "path"), BAD_CALLBACKS, ids=[n for n, _ in BAD_CALLBACKS])
async def test_bad_input_gets_a_clear_4xx(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    name: str,
    path: str,
) -> None:
    browser = browser_factory(guard_factory())
    await browser.get("/auth/login")
    response = await browser.get(path)
    if name == "unknown state":
        assert response.status_code == 303 and "reason=state_expired" in response.headers["location"]
    else:
        # A person gets the "did not complete" page with a way back; an API client the JSON error.
        assert response.status_code == 400, response.text
        assert 'data-kind="failed"' in response.text and 'id="sign-in"' in response.text
        api = await browser.get(path, headers={"accept": "application/json"})
        assert api.status_code == 400
        assert api.json()["error"] == "invalid_request" and api.json()["message"]
    assert "Traceback" not in response.text
    assert provider.count(endpoint="token") == 0


@pytest.mark.parametrize(
    "cookie_header",
    [
        "guard_session=garbage",
        "guard_session=" + "x" * 5000,
        'guard_session="unterminated',
        "guard_session=a.b.c; guard_session_tx=d.e",
        "guard_session=%ff%00",
        "guard_session",
        ";;;=;",
    ],
)
async def test_garbage_and_tampered_cookies_are_anonymous_not_500(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    cookie_header: str,
) -> None:
    guard = guard_factory()
    browser = browser_factory(guard)
    for path in ("/me", "/public", "/auth/callback?state=s&code=c", "/auth/login", "/auth/logout"):
        response = await browser.get(path, headers={"cookie": cookie_header})
        assert response.status_code < 500, (path, response.status_code)


async def test_a_tampered_session_cookie_is_refused(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory()
    browser = browser_factory(guard)
    value = session_cookie(await login(browser, provider))
    assert value is not None
    raw = value.split("=", 1)[1]
    flipped = raw[:5] + ("A" if raw[5] != "A" else "B") + raw[6:]
    other = browser_factory(guard)
    response = await other.get("/me", headers={"cookie": f"guard_session={flipped}"})
    assert response.status_code == 303 and "reason=session_expired" in response.headers["location"]


async def test_own_routes_refuse_other_methods(
    guard_factory: GuardFactory, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard_factory())
    assert (await browser.post("/auth/login")).status_code == 405
    assert (await browser.put("/auth/callback")).status_code == 405


async def test_non_http_scopes_pass_through(guard_factory: GuardFactory) -> None:
    seen: list[str] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        seen.append(scope["type"])

    guard: OAuthGuard = guard_factory(app=app)
    await guard({"type": "websocket", "path": "/ws", "headers": []}, None, None)  # type: ignore[arg-type]
    assert seen == ["websocket"]


async def test_a_failed_callback_never_loops_back_to_the_provider(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """Cookies blocked: every callback lacks its binding. The browser must land on a page, not loop."""
    guard = guard_factory()
    browser = browser_factory(guard)
    callback = await start_login(browser, provider, "/me")
    browser.cookies.clear()
    location = (await browser.get(callback)).headers["location"]
    page = await browser.get(location)
    assert page.status_code == 200
    assert 'id="sign-in"' in page.text and "cookies blocked" in page.text.replace("\n", " ")
    assert "idp.example.test" not in page.headers.get("location", "")


async def test_provider_errors_in_the_callback(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    await browser.get("/auth/login")
    busy = await browser.get("/auth/callback?error=temporarily_unavailable&state=s")
    assert busy.status_code == 503 and busy.headers["retry-after"]
    odd = await browser.get("/auth/callback?error=%3Cscript%3E&state=s")
    assert query(odd.headers["location"])["reason"] == "access_denied"
    assert provider.count(endpoint="token") == 0


async def test_an_issuer_spelled_without_the_providers_trailing_slash_works(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    """Auth0's issuer ends with a slash; users write it either way."""
    provider = OAuthTestProvider(
        issuer="https://tenant.example.test/",
        client_id="guard-client",
        client_secret="guard-secret-value-0123456789",
        clock=clock,
    )
    async with httpx.AsyncClient(transport=provider.transport()) as http:
        for spelling in ("https://tenant.example.test", "https://tenant.example.test/"):
            browser = browser_factory(guard_factory(http_client=http, issuer=spelling))
            await login(browser, provider, "/me")
            assert (await browser.get("/me")).json()["user"] == "alice"


async def test_a_strict_session_cookie_still_lets_sign_in_complete(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory(cookie_same_site="strict"))
    response = await browser.get("/auth/login")
    assert "SameSite=Lax" in response.headers["set-cookie"]  # the binding cookie rides the cross-site return
    callback = await provider.complete_authorization(response.headers["location"])
    done = await browser.get(callback)
    assert "SameSite=Strict" in done.headers["set-cookie"]
