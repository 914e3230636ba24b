"""The headers a security review expects: on every answer of the guard, and on signed-in pages of the app."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from asgi_oauth_guard import Reason
from asgi_oauth_guard._headers import private_send
from asgi_oauth_guard.testing import OAuthTestProvider

from .conftest import BrowserFactory, GuardFactory, login, start_login

pytestmark = pytest.mark.anyio

OWN = {"referrer-policy": "no-referrer", "x-content-type-options": "nosniff"}
API = {"accept": "application/json"}


def has_own_headers(response: httpx.Response) -> bool:
    """The guard's headers; its HTML pages have a stricter policy that still forbids framing."""
    policy = response.headers.get("content-security-policy", "")
    never_framed = policy == "frame-ancestors 'none'" or (
        response.headers.get("content-type", "").startswith("text/html")
        and "frame-ancestors 'none'" in policy.split("; ")
        and "default-src 'none'" in policy.split("; ")
    )
    return never_framed and all(response.headers.get(name) == value for name, value in OWN.items())


def app_with_headers() -> Starlette:
    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("page")

    async def cached(request: Request) -> PlainTextResponse:
        return PlainTextResponse("cached", headers={"cache-control": "max-age=60", "vary": "Accept"})

    async def varies_on_cookie(request: Request) -> PlainTextResponse:
        return PlainTextResponse("v", headers={"vary": "Accept, Cookie"})

    return Starlette(routes=[Route("/", plain), Route("/cached", cached), Route("/varies", varies_on_cookie)])


async def test_every_answer_of_the_guard_carries_the_security_headers(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory(require_login=["/me", "/api/"]))
    answers = {
        "relogin redirect": await browser.get("/me"),
        "relogin json": await browser.get("/api/me", headers=API),
        "login": await browser.get("/auth/login"),
        "stop page": await browser.get("/auth/login", params={"reason": "state_expired"}),
        "bad request": await browser.get("/auth/callback"),
        "unknown state": await browser.get("/auth/callback", params={"state": "x", "code": "y"}),
        "method": await browser.put("/auth/login"),
    }
    await login(browser, provider)
    answers["logout"] = await browser.post("/auth/logout")
    for name, response in answers.items():
        assert has_own_headers(response), (name, response.status_code, response.headers)


async def test_page_and_custom_relogin_answers_carry_them(
    guard_factory: GuardFactory, browser_factory: BrowserFactory
) -> None:
    page = browser_factory(guard_factory(relogin="page"))
    assert has_own_headers(response := await page.get("/me")) and response.status_code == 401

    def custom(request: Request, reason: Reason) -> ASGIApp:
        async def teapot(scope: object, receive: object, send: object) -> None:
            await Response("custom", status_code=418)(scope, receive, send)  # type: ignore[arg-type]

        return teapot

    answer = await browser_factory(guard_factory(relogin=custom)).get("/me")
    assert answer.status_code == 418 and has_own_headers(answer)


async def test_an_outage_answer_carries_them(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    provider.fail_next(5, status=503, endpoint="discovery")
    response = await browser.get("/auth/login")
    assert response.status_code == 503 and has_own_headers(response)


async def test_signed_in_pages_are_private_and_vary_on_cookie(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory(app=app_with_headers()))
    anonymous = await browser.get("/")
    assert "cache-control" not in anonymous.headers and "vary" not in anonymous.headers
    await login(browser, provider)
    page = await browser.get("/")
    assert page.headers["cache-control"] == "private"
    assert page.headers.get_list("vary") == ["Cookie"]
    assert not has_own_headers(page)  # the app's own pages are the app's
    cached = await browser.get("/cached")  # the app's own Cache-Control is kept, Cookie joins its Vary
    assert cached.headers.get_list("cache-control") == ["max-age=60"]
    assert cached.headers.get_list("vary") == ["Accept", "Cookie"]
    varies = await browser.get("/varies")
    assert (
        varies.headers.get_list("vary") == ["Accept, Cookie"] and varies.headers["cache-control"] == "private"
    )


async def test_the_private_headers_can_be_turned_off(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory(app=app_with_headers(), private_cache_headers=False))
    await login(browser, provider)
    page = await browser.get("/")
    assert page.status_code == 200 and "cache-control" not in page.headers and "vary" not in page.headers


async def test_a_callback_answer_carries_them(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    done = await browser.get(await start_login(browser, provider))
    assert done.status_code == 303 and has_own_headers(done)


@pytest.mark.parametrize(
    ("headers", "added"),
    [
        ([], [(b"cache-control", b"private"), (b"vary", b"Cookie")]),
        ([(b"content-type", b"application/json")], [(b"cache-control", b"private"), (b"vary", b"Cookie")]),
        # names that only contain the two are not them: both still added
        (
            [(b"x-vary-by", b"a"), (b"x-cache-control-hint", b"b")],
            [(b"cache-control", b"private"), (b"vary", b"Cookie")],
        ),
        # names of the two lengths that are not them (only names of those lengths are lowered)
        (
            [(b"Last-Modified", b"x"), (b"etag", b'"1"'), (b"ETag", b'"1"')],
            [(b"cache-control", b"private"), (b"vary", b"Cookie")],
        ),
        ([(b"Cache-Control", b"no-store")], [(b"vary", b"Cookie")]),  # any case, as Django sends it
        ([(b"CACHE-CONTROL", b"no-store"), (b"Vary", b"Cookie")], []),
        ([(bytearray(b"VARY"), b"Accept")], [(b"cache-control", b"private"), (b"vary", b"Cookie")]),
        ([(b"vary", b"Accept, cookie")], [(b"cache-control", b"private")]),
        ([(b"vary", b"*"), (b"cache-control", b"private, max-age=5")], []),
    ],
)
@pytest.mark.parametrize("iterator", [False, True])  # headers may come as any iterable: read once
async def test_private_send_adds_what_the_answer_lacks(
    headers: list[tuple[bytes, bytes]], added: list[tuple[bytes, bytes]], iterator: bool
) -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    private = private_send(send)
    given: Any = iter(headers) if iterator else headers
    await private({"type": "http.response.start", "status": 200, "headers": given})
    await private({"type": "http.response.body", "body": b"x"})
    assert [tuple(h) for h in sent[0]["headers"]] == [*(tuple(h) for h in headers), *added]
    assert sent[1] == {"type": "http.response.body", "body": b"x"}  # other messages pass as they are


@pytest.mark.parametrize("as_dict", [True, False])
async def test_private_send_leaves_the_apps_message_as_it_was(as_dict: bool) -> None:
    """The app may send one message again (a constant, or a retry): the headers go on a copy."""
    from types import MappingProxyType

    sent: list[Any] = []

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"content-type", b"text/html")]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    message: Any = start if as_dict else MappingProxyType(start)
    for _ in range(2):
        await private_send(send)(message)
    assert start == {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/html")],
    }
    assert sent[0] == sent[1] and sent[0] is not start and sent[0]["headers"] is not headers
    assert sent[0]["headers"] == [*headers, (b"cache-control", b"private"), (b"vary", b"Cookie")]
    assert sent[0]["status"] == 200
