"""Behind proxies as they are run: uvicorn with its default proxy handling (and with it off), a proxy
process on loopback that sets ``X-Forwarded-For/-Proto/-Host``, and clients that forge those headers.

Loopback is a /8 on Linux: the proxy and uvicorn listen on 127.0.0.1 (the address uvicorn trusts by
default), while "remote" clients connect from 127.0.0.2, an address nobody trusts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_oauth_guard import MemoryStore, OAuthGuard
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET, ISSUER, SECRET_KEY, BrowserFactory, GuardFactory, login
from .served import Headers, forwarded, raw_request, reverse_proxy, serve

PUBLIC = "app.example.test"
REMOTE = "127.0.0.2"  # a client on the internet, as far as every party here is concerned


def redirect_uri(location: str | None) -> str:
    assert location is not None
    return parse_qs(urlsplit(location).query)["redirect_uri"][0]


@contextlib.contextmanager
def guarded(provider: OAuthTestProvider, clock: FakeClock, **uvicorn_options: Any) -> Iterator[int]:
    """A guarded app under uvicorn (its defaults, plus ``uvicorn_options``); guard settings come in
    ``uvicorn_options["guard"]``. Yields uvicorn's port."""
    settings = uvicorn_options.pop("guard", {})
    http = httpx.AsyncClient(transport=provider.transport())

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("home")

    guard = OAuthGuard(
        Starlette(routes=[Route("/", home)]),
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        secret_key=SECRET_KEY,
        http_client=http,
        store=MemoryStore(clock=clock),
        clock=clock,
        **settings,
    )
    try:
        with serve(guard, **uvicorn_options) as port:
            yield port
    finally:
        asyncio.run(http.aclose())  # in-process transport: no socket is bound to the server's loop


def login_via(port: int, headers: Headers, *, source: str = REMOTE) -> str:
    """The redirect URI a sign-in started from this request pins, as it appears in the Location."""
    response = raw_request(port, "/auth/login", headers=headers, source=source)
    assert response.status == 303, (response.status, response.text)
    return redirect_uri(response.header("location"))


def caddy_like(headers: Headers, peer: str) -> Headers:
    """Traefik, Caddy, cloud load balancers: the client's Host kept, TLS ended, X-Forwarded-* replaced."""
    return forwarded(headers, peer, proto="https")


def nginx_default_host(headers: Headers, peer: str) -> Headers:
    """nginx without ``proxy_set_header Host $host``: the upstream's name as Host, the public one only in
    ``X-Forwarded-Host``."""
    public = next(v for k, v in headers if k == "host")
    rewritten = [(k, "127.0.0.1:8000" if k == "host" else v) for k, v in headers]
    return forwarded(rewritten, peer, proto="https", host=public)


def appending(headers: Headers, peer: str) -> Headers:
    """A proxy that appends to whatever X-Forwarded-* the client sent (a chain, or a careless set-up)."""
    return forwarded(headers, peer, proto="https", append=True)


FORGED = [("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "http"), ("x-forwarded-for", "6.6.6.6")]


def test_behind_a_proxy_with_uvicorns_default_proxy_handling_the_redirect_uri_is_the_public_one(
    provider: OAuthTestProvider, clock: FakeClock
) -> None:
    with guarded(provider, clock) as app_port, reverse_proxy(app_port, rewrite=caddy_like) as proxy:
        plain = login_via(proxy, [("host", PUBLIC), ("accept", "text/html")])
        assert plain == f"https://{PUBLIC}/auth/callback"
        forging = login_via(proxy, [("host", PUBLIC), ("accept", "text/html"), *FORGED])
        assert forging == f"https://{PUBLIC}/auth/callback"  # the proxy replaced what the client sent


def test_with_proxy_headers_off_the_guard_reads_them_from_trusted_proxies_only(
    provider: OAuthTestProvider, clock: FakeClock
) -> None:
    options: dict[str, Any] = {"guard": {"trusted_proxies": ["127.0.0.1"]}, "proxy_headers": False}
    with guarded(provider, clock, **options) as app_port:
        with reverse_proxy(app_port, rewrite=nginx_default_host) as proxy:
            uri = login_via(proxy, [("host", PUBLIC), ("accept", "text/html"), *FORGED])
            assert uri == f"https://{PUBLIC}/auth/callback"
        with reverse_proxy(app_port, rewrite=appending) as proxy:
            # X-Forwarded-Host: evil.example, app.example.test: the value the proxy added wins.
            uri = login_via(proxy, [("host", PUBLIC), ("accept", "text/html"), *FORGED])
            assert uri == f"https://{PUBLIC}/auth/callback"
        direct = login_via(app_port, [("host", "direct.test"), ("accept", "text/html"), *FORGED])
        assert direct == "http://direct.test/auth/callback"  # not from a trusted proxy: ignored


def test_a_client_forging_the_headers_itself_gets_nothing(
    provider: OAuthTestProvider, clock: FakeClock
) -> None:
    forged = [("host", "direct.test"), ("accept", "text/html"), *FORGED[:1], ("x-forwarded-proto", "https")]
    with guarded(provider, clock, guard={"trusted_proxies": ["127.0.0.1"]}) as app_port:
        assert login_via(app_port, forged) == "http://direct.test/auth/callback"
    public = "https://www.example.com"
    with guarded(provider, clock, guard={"public_url": public}) as app_port:
        assert login_via(app_port, forged) == f"{public}/auth/callback"
        with reverse_proxy(app_port, rewrite=appending) as proxy:
            assert login_via(proxy, [("host", "evil.example"), *forged[1:]]) == f"{public}/auth/callback"


def test_a_repeated_host_header_is_refused(provider: OAuthTestProvider, clock: FakeClock) -> None:
    with guarded(provider, clock) as app_port:
        twice = raw_request(app_port, "/auth/login", headers=[("host", "a.test"), ("host", "evil.example")])
        assert twice.status == 400


@pytest.mark.anyio
async def test_with_public_url_every_absolute_url_comes_from_it(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    public = "https://www.example.com"
    guard = guard_factory(public_url=public, rp_initiated_logout=True, cookie_name="guard_session")
    browser = browser_factory(guard, base_url=public)
    browser.headers["x-forwarded-host"] = "evil.example"
    started = await browser.get("/auth/login", headers={"host": "evil.example"})
    assert redirect_uri(started.headers["location"]) == f"{public}/auth/callback"
    await login(browser, provider)
    out = await browser.post(
        "/auth/logout", headers={"host": "evil.example", "origin": "https://www.example.com"}
    )
    assert out.status_code == 303, out.text
    post_logout = parse_qs(urlsplit(out.headers["location"]).query)["post_logout_redirect_uri"][0]
    assert post_logout == f"{public}/"


@pytest.mark.anyio
async def test_a_bad_host_is_refused_before_any_side_effect(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    await login(browser, provider)
    revokes = provider.count(endpoint="revoke")
    refused = await browser.post(
        "/auth/logout",
        headers={"host": "bad host!", "origin": "http://app.test", "sec-fetch-site": "same-origin"},
    )
    assert refused.status_code == 400 and "Host" in refused.json()["message"]
    assert provider.count(endpoint="revoke") == revokes  # no token revoked
    me = await browser.get("/me", headers={"accept": "application/json"})
    assert me.status_code == 200 and me.json()["user"] == "alice"  # no session deleted
