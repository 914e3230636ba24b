"""Pushed Authorization Requests (RFC 9126): when the provider requires them and on request.

The login route pushes the authorization parameters (with the client's authentication) and sends the
browser with only ``client_id`` and the one-time ``request_uri``; a refused push is the misconfigured page,
a provider that does not answer a 503, and neither starts a sign-in at the provider.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.responses import PlainTextResponse

from asgi_oauth_guard import ConfigurationError, OAuthGuard, Provider, ProviderUnavailable
from asgi_oauth_guard.providers._par import request_uri_of
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider, mimics, providers_transport
from asgi_oauth_guard.testing._keys import rsa_key

from .conftest import CLIENT_ID, CLIENT_SECRET, ISSUER, BrowserFactory, GuardFactory

pytestmark = pytest.mark.anyio


@pytest.fixture
def provider(clock: FakeClock) -> OAuthTestProvider:
    """A provider whose metadata says require_pushed_authorization_requests."""
    return OAuthTestProvider(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        clock=clock,
        require_pushed_authorization_requests=True,
        request_uri_ttl=60,
    )


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def test_a_provider_that_requires_par_gets_the_request_pushed_and_the_browser_only_a_request_uri(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    browser = browser_factory(guard_factory())
    start = await browser.get("/auth/login", params={"next": "/me"})
    assert start.status_code == 303
    location = start.headers["location"]
    assert location.startswith(ISSUER + "/authorize?")
    sent = query(location)
    assert set(sent) == {"client_id", "request_uri"} and sent["client_id"] == [CLIENT_ID]
    assert sent["request_uri"][0].startswith("urn:ietf:params:oauth:request_uri:")
    (pushed,) = [c for c in provider.calls if c.endpoint == "par"]
    assert pushed.status == 201 and pushed.method == "POST"
    assert pushed.params["code_challenge_method"] == "S256" and len(pushed.params["code_challenge"]) == 43
    assert pushed.params["redirect_uri"] == "http://app.test/auth/callback" and pushed.params["state"]
    assert "client_secret" not in pushed.params  # client_secret_basic: the secret is in the header
    callback = await provider.complete_authorization(location)
    done = await browser.get(callback)
    assert done.status_code == 303 and done.headers["location"] == "/me"
    assert (await browser.get("/me")).json()["user"] == "alice"
    assert provider.count(endpoint="token", grant_type="authorization_code") == 1
    # RFC 9126 section 4: the request_uri is used once; the provider refuses it again.
    with pytest.raises(ValueError, match="request_uri is unknown, used or expired"):
        await provider.complete_authorization(location)


async def test_a_request_that_was_not_pushed_is_refused_by_such_a_provider(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
) -> None:
    """The embedded provider's side, which the test above relies on: a plain authorization request is
    sent back with invalid_request."""
    browser = browser_factory(guard_factory())
    start = await browser.get("/auth/login")
    (pushed,) = [c for c in provider.calls if c.endpoint == "par"]
    plain = httpx.URL(ISSUER + "/authorize", params=pushed.params)
    answer = await provider.complete_authorization(str(plain))
    assert query(answer)["error"] == ["invalid_request"]
    assert "code" not in query(answer)
    # A request_uri past its expires_in is refused too.
    location = start.headers["location"]
    clock.advance(61)
    with pytest.raises(ValueError, match="request_uri is unknown, used or expired"):
        await provider.complete_authorization(location)


async def test_use_par_true_pushes_to_a_provider_that_does_not_require_it(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    optional = OAuthTestProvider(issuer=ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)
    for use_par, pushes in ((True, 1), (None, 0)):
        http = httpx.AsyncClient(transport=optional.transport())
        guard = guard_factory(
            issuer=None, provider=Provider(issuer=ISSUER, use_par=use_par), http_client=http
        )
        browser = browser_factory(guard)
        start = await browser.get("/auth/login")
        assert ("request_uri" in query(start.headers["location"])) is bool(pushes)
        assert optional.count(endpoint="par") == pushes
        done = await browser.get(await optional.complete_authorization(start.headers["location"]))
        assert done.status_code == 303
        assert (await browser.get("/me")).json()["user"] == "alice"
        optional.reset_calls()
        await http.aclose()


async def test_use_par_false_against_a_provider_that_requires_it_says_what_to_fix(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = guard_factory(issuer=None, provider=Provider(issuer=ISSUER, use_par=False))
    response = await browser_factory(guard).get("/auth/login")
    assert response.status_code == 502 and 'data-kind="misconfigured"' in response.text
    assert "remove use_par=False" in caplog.text
    assert provider.count(endpoint="par") == 0 and provider.count(endpoint="authorize") == 0


@pytest.mark.parametrize("fault", ["fail", "timeout", "down"])
async def test_a_provider_that_does_not_answer_the_push_is_a_503_and_the_next_login_works(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider, fault: str
) -> None:
    browser = browser_factory(guard_factory())
    await browser.get("/auth/login")  # discovery done: only the push meets the fault
    if fault == "fail":
        provider.fail_next(1, 503, endpoint="par")
    elif fault == "timeout":
        provider.timeout_next(1, endpoint="par")
    else:
        provider.down = True
    response = await browser.get("/auth/login")
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    provider.down = False
    again = await browser.get("/auth/login")
    assert again.status_code == 303 and "request_uri" in query(again.headers["location"])


async def test_a_push_refused_for_the_clients_credentials_is_the_misconfigured_page_with_the_fix(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider.set_client_secret("rotated-at-the-provider-0123456789")
    response = await browser_factory(guard_factory()).get("/auth/login")
    assert response.status_code == 502 and 'data-kind="misconfigured"' in response.text
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("invalid_client" in m and "client_secret" in m for m in errors), errors
    assert CLIENT_SECRET not in caplog.text
    assert provider.count(endpoint="authorize") == 0


@pytest.mark.parametrize("client_auth", ["client_secret_post", "client_secret_basic"])
async def test_each_secret_method_names_the_client_once_in_the_push(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    client_auth: str,
) -> None:
    """The pushed parameters carry client_id already; a method that adds its own must not make it two
    (the provider refuses repeated parameters)."""
    browser = browser_factory(guard_factory(client_auth=client_auth))
    start = await browser.get("/auth/login")
    (pushed,) = [c for c in provider.calls if c.endpoint == "par"]
    assert pushed.status == 201, pushed.error
    assert ("client_secret" in pushed.params) is (client_auth == "client_secret_post")
    done = await browser.get(await provider.complete_authorization(start.headers["location"]))
    assert done.status_code == 303


async def test_private_key_jwt_authenticates_the_push_with_a_signed_assertion(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    key = rsa_key("client")
    provider = OAuthTestProvider(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        clock=clock,
        client_jwks={"keys": [key.as_dict(private=False)]},
        require_pushed_authorization_requests=True,
    )
    http = httpx.AsyncClient(transport=provider.transport())
    guard = guard_factory(
        client_secret="",
        client_auth="private_key_jwt",
        client_key=key.as_dict(private=True),
        http_client=http,
    )
    browser = browser_factory(guard)
    start = await browser.get("/auth/login")
    (pushed,) = [c for c in provider.calls if c.endpoint == "par"]
    assert pushed.status == 201 and "client_assertion" in pushed.params
    assert "client_secret" not in pushed.params
    done = await browser.get(await provider.complete_authorization(start.headers["location"]))
    assert done.status_code == 303 and (await browser.get("/me")).json()["user"] == "alice"
    await http.aclose()


@pytest.mark.parametrize(
    ("status", "body", "raised", "message"),
    [
        (201, {"request_uri": "urn:x", "expires_in": 60}, None, ""),
        (200, {"request_uri": "urn:x"}, None, ""),
        (503, None, ProviderUnavailable, "answered 503"),
        (429, {"error": "slow_down"}, ProviderUnavailable, "answered 429"),
        (400, {"error": "temporarily_unavailable"}, ProviderUnavailable, "temporarily_unavailable"),
        (201, {"expires_in": 60}, ProviderUnavailable, "without a request_uri"),
        (201, ["urn:x"], ProviderUnavailable, "without a request_uri"),
        (401, {"error": "invalid_client"}, ConfigurationError, "check client_id and client_secret"),
        (400, {"error": "invalid_scope"}, ConfigurationError, "check scopes="),
        (400, {"error": "invalid_request"}, ConfigurationError, "register 'https://a.test/cb'"),
        (404, "<html>", ConfigurationError, "pushed_authorization_request_endpoint"),
    ],
)
def test_the_push_answers_are_classified(
    status: int, body: Any, raised: type[Exception] | None, message: str
) -> None:
    if raised is None:
        assert request_uri_of(status, body) == "urn:x"
        return
    with pytest.raises(raised, match=message):
        request_uri_of(status, body, redirect_uri="https://a.test/cb")


def test_use_par_without_discovery_needs_the_endpoint() -> None:
    with pytest.raises(ConfigurationError, match="needs pushed_authorization_request_endpoint="):
        Provider(
            issuer="https://a.test",
            authorization_endpoint="https://a.test/a",
            token_endpoint="https://a.test/t",
            use_par=True,
        )
    with pytest.raises(ConfigurationError, match="use_par= must be True, False or None"):
        Provider(issuer="https://a.test", use_par="yes")  # type: ignore[arg-type]


async def test_use_par_that_cannot_work_fails_startup_naming_the_fix(
    guard_factory: GuardFactory, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    refusing = guard_factory(issuer=None, provider=Provider(issuer=ISSUER, use_par=False))
    with pytest.raises(ConfigurationError, match="remove use_par=False"):
        await refusing.check()
    without = OAuthTestProvider(
        mimic=mimics.google(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock
    )
    assert "pushed_authorization_request_endpoint" not in without.metadata
    http = httpx.AsyncClient(transport=without.transport())
    guard = guard_factory(
        issuer=None, provider=Provider(issuer=without.issuer, use_par=True), http_client=http
    )
    with pytest.raises(ConfigurationError, match="metadata does not name"):
        await guard.check()
    await http.aclose()


async def test_failed_pushes_leave_no_sign_in_in_flight_to_crowd_out_the_other_tabs(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider
) -> None:
    """A browser keeps a few sign-ins in flight at most; retries against a provider refusing the push must
    not count, or the tab that started first could not finish."""
    browser = browser_factory(guard_factory(max_transactions_per_browser=2))
    first = await browser.get("/auth/login", params={"next": "/me"})
    provider.fail_next(3, 503, endpoint="par")
    for _ in range(3):
        assert (await browser.get("/auth/login")).status_code == 503
    done = await browser.get(await provider.complete_authorization(first.headers["location"]))
    assert done.status_code == 303 and done.headers["location"] == "/me", done.text


async def test_each_provider_of_a_guard_pushes_by_its_own_metadata_and_settings(
    browser_factory: BrowserFactory, clock: FakeClock
) -> None:
    """Two providers in one guard: the one that requires PAR gets pushed requests, at its own endpoint with
    its own client's credentials; the other gets plain ones."""
    strict = OAuthTestProvider(
        issuer="https://strict.example.test",
        client_id="client-s",
        client_secret="secret-s-0123456789",
        clock=clock,
        require_pushed_authorization_requests=True,
    )
    plain = OAuthTestProvider(
        issuer="https://plain.example.test",
        client_id="client-p",
        client_secret="secret-p-0123456789",
        clock=clock,
    )
    async with httpx.AsyncClient(transport=providers_transport(strict, plain)) as http:
        guard = OAuthGuard(
            PlainTextResponse("app"),
            providers=[
                Provider(
                    name="strict",
                    issuer=strict.issuer,
                    client_id="client-s",
                    client_secret="secret-s-0123456789",
                ),
                Provider(
                    name="plain",
                    issuer=plain.issuer,
                    client_id="client-p",
                    client_secret="secret-p-0123456789",
                ),
            ],
            secret_key="k" * 32,
            http_client=http,
            clock=clock,
        )
        browser = browser_factory(guard)
        for name, idp, pushed in (("strict", strict, True), ("plain", plain, False)):
            start = await browser.get("/auth/login", params={"provider": name})
            location = start.headers["location"]
            assert location.startswith(idp.issuer + "/authorize?")
            assert ("request_uri" in query(location)) is pushed
            assert idp.count(endpoint="par") == int(pushed)
            done = await browser.get(await idp.complete_authorization(location))
            assert done.status_code == 303
            assert idp.count(endpoint="token", grant_type="authorization_code") == 1
