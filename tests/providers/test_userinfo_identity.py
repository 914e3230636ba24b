"""A provider without ID tokens: the identity from one userinfo call at sign-in, held to a stable string
``sub`` and a bounded size; whatever the answer or the app's mapper does, a page and never a 500."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import (
    IDTokenError,
    MemoryStore,
    OAuthGuard,
    Provider,
    ProviderUnavailable,
    current_identity,
)
from asgi_oauth_guard.providers._userinfo import (
    MAX_CLAIMS_BYTES,
    bounded_claims,
    primary_verified_email,
    read_answer,
    userinfo_claims,
)
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET, ISSUER, SECRET_KEY, BrowserFactory, start_login

pytestmark = pytest.mark.anyio

Mapper = Callable[[Mapping[str, Any]], Mapping[str, Any]]


async def me(request: Request) -> JSONResponse:
    identity = current_identity()
    assert identity is not None
    return JSONResponse({"sub": identity.sub, "claims": dict(identity.claims)})


class Userinfo(httpx.AsyncBaseTransport):
    """The embedded provider, except that its userinfo endpoint answers ``answer`` when one is set."""

    def __init__(self, provider: OAuthTestProvider) -> None:
        self.inner = provider.transport()
        self.answer: httpx.Response | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/userinfo" and self.answer is not None:
            return self.answer
        return await self.inner.handle_async_request(request)


@pytest.fixture
def userinfo(provider: OAuthTestProvider) -> Userinfo:
    return Userinfo(provider)


def guard_for(transport: Userinfo, clock: FakeClock, mapper: Mapper | None) -> OAuthGuard:
    return OAuthGuard(
        Starlette(routes=[Route("/me", me)]),
        providers=[
            Provider(
                name="plain",
                issuer=ISSUER,
                discovery="none",
                authorization_endpoint=f"{ISSUER}/authorize",
                token_endpoint=f"{ISSUER}/token",
                userinfo_endpoint=f"{ISSUER}/userinfo",
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                scopes=("profile", "email"),  # no openid: no ID token, userinfo is the identity
                userinfo_claims=mapper,
                fetch_userinfo=True,
            )
        ],
        secret_key=SECRET_KEY,
        http_client=httpx.AsyncClient(transport=transport),
        clock=clock,
        store=MemoryStore(clock=clock),
        require_login=["/me"],
    )


def by_name(info: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"sub": info["preferred_username"], "email": info.get("email")}


async def test_the_identity_comes_from_one_userinfo_call_through_the_mapper(
    provider: OAuthTestProvider, userinfo: Userinfo, clock: FakeClock, browser_factory: BrowserFactory
) -> None:
    browser = browser_factory(guard_for(userinfo, clock, by_name))
    assert (await browser.get(await start_login(browser, provider, "/me"))).status_code == 303
    assert (await browser.get("/me")).json() == {
        "sub": "alice",
        "claims": {"sub": "alice", "email": "alice@example.test"},
    }
    clock.advance(3600)  # a refresh does not read userinfo again
    assert (await browser.get("/me")).status_code == 200
    assert provider.count("userinfo") == 1 and provider.count("token") == 2


@pytest.mark.parametrize(
    ("answer", "page"),
    [
        (httpx.Response(200, html="<html>GitHub is down for maintenance</html>"), "unavailable"),
        (httpx.Response(502, text="Bad gateway"), "unavailable"),
        (
            httpx.Response(
                403, json={"message": "API rate limit exceeded"}, headers={"x-ratelimit-remaining": "0"}
            ),
            "unavailable",
        ),
        (httpx.Response(401, json={"message": "Bad credentials"}), "access_denied"),
        (httpx.Response(200, json=["not", "an", "object"]), "access_denied"),
        (httpx.Response(200, json={"name": "no sub at all"}), "access_denied"),
        (httpx.Response(200, json={"sub": ""}), "access_denied"),
        (httpx.Response(200, json={"sub": True}), "access_denied"),
        (httpx.Response(200, json={"sub": "x" * 256}), "access_denied"),
        (httpx.Response(200, json={"sub": "a", "blob": "x" * 300_000}), "access_denied"),
    ],
    ids=[
        "html",
        "502",
        "rate-limited",
        "401",
        "array",
        "no-sub",
        "empty-sub",
        "bool-sub",
        "long-sub",
        "huge",
    ],
)
async def test_a_userinfo_answer_that_names_nobody_is_a_page_never_a_500(
    provider: OAuthTestProvider,
    userinfo: Userinfo,
    clock: FakeClock,
    browser_factory: BrowserFactory,
    answer: httpx.Response,
    page: str,
) -> None:
    userinfo.answer = answer
    browser = browser_factory(guard_for(userinfo, clock, None))
    callback = await start_login(browser, provider, "/me")
    response = await browser.get(callback)
    if page == "unavailable":
        assert response.status_code == 503 and 'data-kind="unavailable"' in response.text
    else:
        assert response.status_code == 303 and "reason=access_denied" in response.headers["location"]
    # The outcome is recorded: a reload neither exchanges the code again nor reads userinfo again.
    await browser.get(callback)
    assert provider.count("token") == 1
    assert (await browser.get("/me")).status_code == 303  # nobody signed in


async def test_a_mapper_that_fails_refuses_the_sign_in_and_says_so_in_the_log(
    provider: OAuthTestProvider,
    userinfo: Userinfo,
    clock: FakeClock,
    browser_factory: BrowserFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(info: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"sub": info["no-such-field"]}

    browser = browser_factory(guard_for(userinfo, clock, broken))
    with caplog.at_level(logging.WARNING, logger="asgi_oauth_guard"):
        response = await browser.get(await start_login(browser, provider, "/me"))
    assert response.status_code == 303 and "reason=access_denied" in response.headers["location"]
    assert any(
        "userinfo_claims= failed" in r.getMessage() and "KeyError" in r.getMessage() for r in caplog.records
    )


def test_an_integer_sub_is_kept_as_its_decimal_string() -> None:
    assert userinfo_claims({"id": 583231}, lambda u: {"sub": u["id"]}) == {"sub": "583231"}
    with pytest.raises(IDTokenError, match="userinfo_claims= must return one"):
        userinfo_claims({"id": 1}, lambda u: {"sub": None})
    with pytest.raises(IDTokenError, match="mapping"):
        userinfo_claims({"id": 1}, lambda u: ["sub"])  # type: ignore[arg-type,return-value]
    with pytest.raises(IDTokenError):
        userinfo_claims({"sub": " padded "}, None)


def test_what_a_session_keeps_of_userinfo_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    claims = {"bio": "b" * MAX_CLAIMS_BYTES, "sub": "42", "login": "octocat", "odd": object()}
    with caplog.at_level(logging.WARNING, logger="asgi_oauth_guard"):
        kept = bounded_claims(claims)
    assert kept == {"sub": "42", "login": "octocat"}
    assert "bio" in caplog.text and "odd" in caplog.text and "bbbb" not in caplog.text


def test_answers_are_read_as_what_they_are() -> None:
    with pytest.raises(ProviderUnavailable):
        read_answer(200, {}, b"<html></html>", "userinfo")
    with pytest.raises(ProviderUnavailable):
        read_answer(403, {"retry-after": "60"}, b"{}", "userinfo")
    with pytest.raises(IDTokenError):
        read_answer(403, {}, b'{"message": "Resource not accessible by integration"}', "userinfo")
    assert read_answer(200, {}, b'{"sub": "a"}', "userinfo") == {"sub": "a"}


def test_only_a_primary_verified_address_is_an_email() -> None:
    assert (
        primary_verified_email(
            [
                {"email": "noreply@users.noreply.github.com", "primary": False, "verified": True},
                {"email": "me@example.test", "primary": True, "verified": True},
            ]
        )
        == "me@example.test"
    )
    assert primary_verified_email([{"email": "me@example.test", "primary": True, "verified": False}]) is None
    assert primary_verified_email([{"email": "me@example.test", "primary": "yes", "verified": True}]) is None
    assert primary_verified_email({"message": "Not Found"}) is None
