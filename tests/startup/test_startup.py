"""Fail fast and say what to fix: the startup check, the misconfigured page, the startup warnings."""

from __future__ import annotations

import logging

import httpx
import pytest
from anyio import wait_all_tasks_blocked
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from asgi_oauth_guard import ConfigurationError, OAuthGuard, ProviderUnavailable
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET, ISSUER, SECRET_KEY, BrowserFactory, GuardFactory, start_login
from ..lifespan import lifespan

pytestmark = pytest.mark.anyio


def bare_guard(http: httpx.AsyncClient | None, **settings: str) -> OAuthGuard:
    return OAuthGuard(
        Starlette(),
        issuer=settings.pop("issuer", ISSUER),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        secret_key=SECRET_KEY,
        http_client=http,
        **settings,
    )


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "asgi_oauth_guard" and r.levelno == level]


async def test_a_wrong_issuer_fails_startup_naming_the_fix(guard_factory: GuardFactory) -> None:
    # The provider's discovery document names https://idp.example.test; the app was told another URL.
    guard = guard_factory(issuer="https://idp.example.test/realms/app")
    async with lifespan(guard) as started:
        assert started["type"] == "lifespan.startup.failed"
    message = started["message"]
    assert message.startswith("asgi-oauth-guard: ") and "set issuer=" in message
    with pytest.raises(ConfigurationError, match="set issuer="):
        await guard.check()


async def test_an_issuer_whose_discovery_names_another_fails_startup(provider: OAuthTestProvider) -> None:
    http = httpx.AsyncClient(transport=provider.transport())
    # The right host, spelled differently: the document disagrees.
    guard = bare_guard(http, issuer="https://idp.example.test.")
    async with http, lifespan(guard) as started:
        assert started["type"] == "lifespan.startup.failed"
    assert "names issuer 'https://idp.example.test'" in started["message"]
    assert "set issuer= to exactly the provider's issuer URL" in started["message"]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(404, text="Not Found"), "answered 404: set issuer= to the provider's issuer URL"),
        (httpx.Response(200, html="<html>sign in</html>"), "did not answer a JSON object: set issuer="),
        (
            httpx.Response(301, headers={"location": "https://idp.example.test/"}),
            "answered 301 (a redirect to 'https://idp.example.test/'): set issuer=",
        ),
        (httpx.Response(200, json={"issuer": ISSUER}), "lacks 'authorization_endpoint'"),
    ],
)
async def test_permanent_discovery_mistakes_fail_startup(response: httpx.Response, expected: str) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: response))
    guard = bare_guard(http)
    async with http, lifespan(guard) as started:
        assert started["type"] == "lifespan.startup.failed"
    assert expected in started["message"]


async def test_a_key_set_404_fails_startup(provider: OAuthTestProvider) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/jwks":
            return httpx.Response(404)
        return httpx.Response(200, json=provider.metadata)

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    guard = bare_guard(http)
    async with http, lifespan(guard) as started:
        assert started["type"] == "lifespan.startup.failed"
    assert "jwks_uri" in started["message"] and "answered 404" in started["message"]


async def test_an_unreachable_issuer_starts_logs_and_serves_503_until_it_answers(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = guard_factory()
    browser = browser_factory(guard)
    provider.down = True
    async with lifespan(guard) as started:
        assert started["type"] == "lifespan.startup.complete"
        assert any("did not answer at startup" in m for m in records(caplog, logging.WARNING))
        tried = provider.count(endpoint="discovery")
        for _ in range(3):
            response = await browser.get("/auth/login")
            assert response.status_code == 503 and response.headers["retry-after"]
            assert 'data-kind="unavailable"' in response.text
        api = await browser.get("/auth/login", headers={"accept": "application/json"})
        assert api.status_code == 503 and api.json()["error"] == "temporarily_unavailable"
        # Inside the backoff, requests fail at once instead of each waiting for the provider again.
        assert provider.count(endpoint="discovery") == tried
        provider.down = False
        clock.advance(1.5)
        response = await browser.get("/auth/login")
        assert response.status_code == 303 and response.headers["location"].startswith(ISSUER)
    provider.down = True
    with pytest.raises(ProviderUnavailable):
        await guard_factory().check()  # for servers without lifespan: the caller decides


async def test_an_app_without_lifespan_support_still_gets_the_check(
    guard_factory: GuardFactory, provider: OAuthTestProvider
) -> None:
    async def http_only(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http", "this app speaks http only"

    async with lifespan(guard_factory(app=http_only)) as started:
        assert started["type"] == "lifespan.startup.complete"
    assert provider.count(endpoint="discovery") == 1 and provider.count(endpoint="jwks") == 1
    async with lifespan(guard_factory(app=http_only, issuer=ISSUER + "/other")) as started:
        assert started["type"] == "lifespan.startup.failed" and "set issuer=" in started["message"]


async def test_the_apps_own_lifespan_runs_and_its_failures_are_its_own(guard_factory: GuardFactory) -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        events.append("app startup")
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        events.append("app shutdown")
        await send({"type": "lifespan.shutdown.complete"})

    async with lifespan(guard_factory(app=app)) as started:
        assert started["type"] == "lifespan.startup.complete"
    assert events == ["app startup", "app shutdown"]
    events.clear()
    async with lifespan(guard_factory(app=app, issuer=ISSUER + "/wrong")) as started:
        assert started["type"] == "lifespan.startup.failed"
        await wait_all_tasks_blocked()  # the guard shuts the app down: it is not left to be cancelled
    assert events == ["app startup", "app shutdown"]

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "the app's database is down"})

    async with lifespan(guard_factory(app=failing)) as started:
        assert started == {"type": "lifespan.startup.failed", "message": "the app's database is down"}


async def test_the_guards_own_client_is_closed_at_shutdown(provider: OAuthTestProvider) -> None:
    guard = bare_guard(None)
    guard.client._http = guard._http = httpx.AsyncClient(transport=provider.transport())
    async with lifespan(guard) as started:
        assert started["type"] == "lifespan.startup.complete"
    assert guard._http.is_closed


# -- at run time -----------------------------------------------------------------------------------


async def test_invalid_client_at_sign_in_is_the_misconfigured_page_and_an_error_log(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    browser = browser_factory(guard_factory(client_secret="not-the-secret-the-provider-knows"))
    callback = await start_login(browser, provider)
    response = await browser.get(callback)
    assert response.status_code == 502
    assert 'data-kind="misconfigured"' in response.text and "Sign-in is misconfigured" in response.text
    assert "try again" not in response.text.lower() and "shortly" not in response.text.lower()
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    errors = records(caplog, logging.ERROR)
    assert any("invalid_client" in m and "check client_id and client_secret" in m for m in errors), errors
    again = await browser.get(callback)  # a reload answers the same, without a second exchange
    assert again.status_code == 502 and 'data-kind="misconfigured"' in again.text
    assert provider.count(endpoint="token") == 1
    api = await browser.get(callback, headers={"accept": "application/json"})
    assert api.status_code == 502 and api.json()["error"] == "misconfigured"


async def test_an_authorization_error_caused_by_the_app_is_misconfiguration(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    browser = browser_factory(guard_factory(public_url="https://app.test"))
    response = await browser.get("/auth/callback", params={"error": "invalid_scope", "state": "s"})
    assert response.status_code == 502 and 'data-kind="misconfigured"' in response.text
    assert any("scopes=" in m for m in records(caplog, logging.ERROR))
    cancelled = await browser.get("/auth/callback", params={"error": "access_denied", "state": "s"})
    assert cancelled.status_code == 303 and "reason=access_denied" in cancelled.headers["location"]


async def test_a_discovery_mistake_found_at_run_time_is_the_misconfigured_page(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    browser = browser_factory(guard_factory(issuer=ISSUER + "/nope"))  # no lifespan: found at first use
    response = await browser.get("/auth/login")
    assert response.status_code == 502 and 'data-kind="misconfigured"' in response.text
    assert any("answered 404: set issuer=" in m for m in records(caplog, logging.ERROR))


async def test_a_callback_visited_with_nothing_is_a_page_for_people_and_json_for_api_clients(
    guard_factory: GuardFactory, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard_factory())
    page = await browser.get("/auth/callback")
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
    assert 'data-kind="failed"' in page.text and "Start the sign-in from the app" in page.text
    assert 'href="/auth/login?next=%2F"' in page.text and 'id="home" href="/"' in page.text
    api = await browser.get("/auth/callback", headers={"accept": "application/json"})
    assert api.status_code == 400 and api.json()["error"] == "invalid_request"


# -- settings that half-work -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "warning"),
    [
        ({"public_url": "http://app.example.com"}, "is http:// on 'app.example.com'"),
        ({"redirect_uri": "http://10.1.2.3:8000/auth/callback"}, "is http:// on '10.1.2.3'"),
        ({"cookie_same_site": "none"}, "cookie_same_site='none' without https"),
        ({"cookie_same_site": "none", "public_url": "http://localhost:8000"}, "without https"),
    ],
)
async def test_settings_that_half_work_are_warned_about_at_startup(
    guard_factory: GuardFactory, caplog: pytest.LogCaptureFixture, settings: dict[str, str], warning: str
) -> None:
    guard = guard_factory(**settings)
    async with lifespan(guard) as started:
        assert started["type"] == "lifespan.startup.complete"
    assert any(warning in m for m in records(caplog, logging.WARNING)), records(caplog, logging.WARNING)


@pytest.mark.parametrize(
    "settings",
    [
        {"public_url": "http://localhost:8000"},
        {"public_url": "http://127.0.0.1:8000"},
        {"public_url": "http://[::1]:8000"},
        {"public_url": "https://app.example.com", "cookie_same_site": "none"},
    ],
)
async def test_good_settings_start_without_warnings(
    guard_factory: GuardFactory, caplog: pytest.LogCaptureFixture, settings: dict[str, str]
) -> None:
    await guard_factory(**settings).check()
    assert records(caplog, logging.WARNING) == []


def test_the_callback_url_pasted_as_public_url_is_refused() -> None:
    for url in ("https://app.example.com/auth/callback", "https://app.example.com/auth/callback/"):
        with pytest.raises(ConfigurationError, match="is the callback URL") as caught:
            bare_guard(None, public_url=url)
        assert "'https://app.example.com'" in str(caught.value)
    with pytest.raises(ConfigurationError, match="query or fragment"):
        bare_guard(None, public_url="https://app.example.com/?x=1")


# -- one canonical origin --------------------------------------------------------------------------


async def test_a_sign_in_started_on_another_origin_moves_to_the_public_url_first(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory(public_url="http://localhost:8000")
    other = browser_factory(guard, base_url="http://127.0.0.1:8000")
    moved = await other.get("/auth/login", params={"next": "/me?tab=2"})
    assert moved.status_code == 303 and "set-cookie" not in moved.headers
    target = moved.headers["location"]
    assert target == "http://localhost:8000/auth/login?next=%2Fme%3Ftab%3D2&moved=1"
    public = browser_factory(guard, base_url="http://localhost:8000")
    started = await public.get(target)
    assert started.status_code == 303 and started.headers["location"].startswith(ISSUER)
    done = await public.get(await provider.complete_authorization(started.headers["location"]))
    assert done.status_code == 303 and done.headers["location"] == "/me?tab=2"
    same = await public.get("/auth/login")  # already on the public origin: straight to the provider
    assert same.headers["location"].startswith(ISSUER)


async def test_a_sign_in_that_still_arrives_elsewhere_after_moving_goes_on_and_warns(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # A proxy that rewrites Host and sends no X-Forwarded-*: the guard never sees the public origin.
    guard = guard_factory(public_url="https://app.example.com")
    behind = browser_factory(guard, base_url="http://10.0.0.5:8000")
    moved = await behind.get("/auth/login")
    assert moved.headers["location"] == "https://app.example.com/auth/login?moved=1"
    again = await behind.get("/auth/login?moved=1")
    assert again.status_code == 303 and again.headers["location"].startswith(ISSUER)  # no loop
    assert any("trusted_proxies" in m for m in records(caplog, logging.WARNING))
    forwarded = await behind.get("/auth/login", headers={"x-forwarded-host": "app.example.com"})
    assert forwarded.headers["location"].startswith(ISSUER)  # an untrusted proxy's headers: unknown origin
