"""Sign-out that another site cannot trigger (logout CSRF), and the app's own origins it is checked against."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.types import Scope

from asgi_oauth_guard import ConfigurationError
from asgi_oauth_guard._http import ForwardedTrust
from asgi_oauth_guard._origins import OwnOrigins, normal_origin
from asgi_oauth_guard.testing import OAuthTestProvider

from .conftest import APP_URL, BrowserFactory, GuardFactory, login

pytestmark = pytest.mark.anyio

EVIL = "https://evil.example"


async def signed_in(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    base_url: str = APP_URL,
    **settings: object,
) -> httpx.AsyncClient:
    browser = browser_factory(guard_factory(**settings), base_url=base_url)
    await login(browser, provider)
    assert (await browser.get("/me")).json()["user"] == "alice"
    return browser


async def still_signed_in(browser: httpx.AsyncClient, provider: OAuthTestProvider) -> None:
    """The session works, no token was revoked and no cookie was touched."""
    assert (await browser.get("/me")).json()["user"] == "alice"
    assert provider.count(endpoint="revoke") == 0


def without_origin(browser: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same browser (cookies, app) sending only the headers a test gives: no ``Origin`` of its own."""
    return httpx.AsyncClient(transport=browser._transport, base_url=APP_URL, cookies=browser.cookies)


def confirm_token(page: str) -> str:
    found = re.search(r'name="confirm" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


async def test_a_get_shows_a_confirm_page_and_signs_no_one_out(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """An <img src=/auth/logout> or a link on another site: a GET changes nothing."""
    browser = await signed_in(guard_factory, browser_factory, provider)
    for headers in ({}, {"sec-fetch-site": "cross-site", "sec-fetch-dest": "image"}, {"origin": EVIL}):
        page = await browser.get("/auth/logout", headers=headers)
        assert page.status_code == 200 and "set-cookie" not in page.headers
        assert '<form method="post" action="/auth/logout">' in page.text and "<script" not in page.text
        policy = page.headers["content-security-policy"].split("; ")
        assert "frame-ancestors 'none'" in policy  # no clickjacking
        assert page.headers["cache-control"] == "no-store"
    assert (await browser.head("/auth/logout")).status_code == 200
    await still_signed_in(browser, provider)


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": EVIL},
        {"origin": "null"},  # a sandboxed frame, a data: URL
        {"origin": "http://app.test.evil.example"},
        {"origin": "https://app.test"},  # another scheme is another origin
        {"origin": "http://app.test:8080"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},  # a sibling subdomain is another origin
    ],
)
async def test_a_cross_site_post_ends_no_session_and_revokes_nothing(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    headers: dict[str, str],
) -> None:
    browser = await signed_in(guard_factory, browser_factory, provider)
    async with without_origin(browser) as sender:
        answer = await sender.post("/auth/logout", headers=headers)
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
    assert '<form method="post" action="/auth/logout">' in answer.text  # the user may still confirm here
    await still_signed_in(browser, provider)


async def test_a_post_from_the_apps_own_origin_signs_out(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    for headers in ({"origin": APP_URL}, {"origin": "HTTP://APP.TEST:80"}, {"sec-fetch-site": "same-origin"}):
        browser = await signed_in(guard_factory, browser_factory, provider)
        async with without_origin(browser) as sender:
            out = await sender.post("/auth/logout", headers=headers)
        assert out.status_code == 303, (headers, out.text)
        assert "guard_session=;" in out.headers["set-cookie"]
        assert (await browser.get("/me")).status_code == 303


async def test_an_old_browser_without_origin_or_fetch_metadata_confirms_with_a_token(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """A POST saying neither where it comes from is what an old browser sends, for a form of ours or of
    another site alike: it gets the confirm page, and the page's form (carrying a token bound to the
    session, which another site cannot read) signs out."""
    browser = await signed_in(guard_factory, browser_factory, provider)
    async with without_origin(browser) as bare:
        page = await bare.post("/auth/logout")
        assert page.status_code == 200 and "set-cookie" not in page.headers
        await still_signed_in(browser, provider)
        wrong = await bare.post("/auth/logout", data={"confirm": "x" * 22})
        assert wrong.status_code == 200
        await still_signed_in(browser, provider)
        out = await bare.post("/auth/logout", data={"confirm": confirm_token(page.text)})
        assert out.status_code == 303 and "guard_session=;" in out.headers["set-cookie"]
    assert provider.count(endpoint="revoke") == 1


async def test_a_token_from_another_session_signs_no_one_out(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """The attacker reads the confirm token of their own session, and makes the victim's old browser
    post it."""
    guard = guard_factory()
    attacker, victim = browser_factory(guard), browser_factory(guard)
    await login(attacker, provider)
    await login(victim, provider)
    token = confirm_token((await attacker.get("/auth/logout")).text)
    async with without_origin(victim) as bare:
        assert (await bare.post("/auth/logout", data={"confirm": token})).status_code == 200
    assert (await victim.get("/me")).json()["user"] == "alice"


async def test_own_origins_come_from_public_url_when_set_plus_allowed_origins(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    public = "https://app.example.com"
    settings = {"public_url": public, "allowed_origins": ["https://admin.example.com"]}
    browser = await signed_in(guard_factory, browser_factory, provider, public, **settings)
    # A request whose Host is not what public_url says: its own origin is not one of ours.
    internal = {"host": "app.internal", "origin": "https://app.internal"}
    assert (await browser.post("/auth/logout", headers=internal)).status_code == 403
    assert (
        await browser.post("/auth/logout", headers={"origin": "https://admin.example.com"})
    ).status_code == 303
    browser = await signed_in(guard_factory, browser_factory, provider, public, **settings)
    assert (await browser.post("/auth/logout", headers={"origin": public})).status_code == 303


@pytest.mark.parametrize("value", ["https://admin.example.com", ["https://x.example/path"], ["x.example"]])
async def test_allowed_origins_must_be_a_list_of_origins(guard_factory: GuardFactory, value: object) -> None:
    with pytest.raises(ConfigurationError, match="allowed_origins="):
        guard_factory(allowed_origins=value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://App.Example:443", "https://app.example"),
        ("http://app.example:8080", "http://app.example:8080"),
        ("wss://app.example", "https://app.example"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("null", None),
        ("https://app.example/path", None),
        ("https://user@app.example", None),
        ("ftp://app.example", None),
        ("https://app.example:99999", None),
        ("", None),
    ],
)
def test_normal_origin(value: str, expected: str | None) -> None:
    assert normal_origin(value) == expected


def scope(*headers: tuple[bytes, bytes], scheme: str = "http", client: str = "10.0.0.1") -> Scope:
    return {"type": "http", "scheme": scheme, "headers": list(headers), "client": (client, 1234)}


def test_own_origin_without_public_url_is_the_requests_own_through_trusted_proxies_only() -> None:
    origins = OwnOrigins(public_url=None, allowed=(), trust=ForwardedTrust(["10.0.0.0/8"]))
    forwarded = (
        (b"host", b"backend:8000"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"app.example"),
    )
    assert origins.includes(scope(*forwarded), "https://app.example")
    assert not origins.includes(scope(*forwarded, client="192.0.2.1"), "https://app.example")
    assert origins.includes(scope(*forwarded, client="192.0.2.1"), "http://backend:8000")
    assert origins.includes(scope((b"host", b"app.example"), scheme="wss"), "https://app.example")
    assert not origins.includes(scope((b"host", b"bad host!")), "http://bad host!")
    assert origins.verdict(scope((b"host", b"a.example"), (b"origin", b"http://a.example"))) == "same"
    two = scope((b"host", b"a.example"), (b"origin", b"http://a.example"), (b"origin", b"http://a.example"))
    assert origins.verdict(two) == "cross"
    assert origins.verdict(scope((b"host", b"a.example"))) == "unknown"
