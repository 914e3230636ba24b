"""What a newcomer and an attacker meet first with several providers: the chooser, a mangled login link,
and the settings mistakes that must fail at startup with the fix named (never later, at a sign-in)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette

from asgi_oauth_guard import ConfigurationError, OAuthGuard, Provider, providers

from .conftest import SECRET_KEY, BrowserFactory

SECRET = "secret-0123456789-abcdef"


def two_providers(title: str = "Alpha") -> list[Provider]:
    return [
        Provider(name="alpha", title=title, issuer="https://alpha.test", client_id="a", client_secret=SECRET),
        Provider(name="beta", issuer="https://beta.test", client_id="b", client_secret=SECRET),
    ]


def guard(**options: Any) -> OAuthGuard:
    options.setdefault("providers", two_providers())
    return OAuthGuard(Starlette(), secret_key=SECRET_KEY, **options)


@pytest.mark.anyio
async def test_the_chooser_escapes_titles_and_never_reflects_a_junk_provider(
    browser_factory: BrowserFactory,
) -> None:
    browser = browser_factory(guard(providers=two_providers('<img src=x onerror="alert(1)"> & Co')))
    page = await browser.get("/auth/login")
    assert page.status_code == 200
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; Co" in page.text
    assert "<img" not in page.text
    for junk in ["<script>alert(1)</script>", "alpha\r\nSet-Cookie: a=b", "ALPHA", "é\u202e", "a" * 300]:
        answer = await browser.get("/auth/login", params={"provider": junk})
        assert answer.status_code == 400 and 'data-kind="chooser"' in answer.text, junk
        assert junk not in answer.text and "set-cookie" not in answer.headers, junk


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("provider=" + "a" * 20_000, "The query string is too long."),
        ("provider=alpha&provider=beta", "The parameter 'provider' is repeated."),
        ("provider=%ff%fe", "The query string is not valid UTF-8 or ASCII."),
    ],
)
async def test_a_mangled_login_link_is_a_400_that_speaks_of_the_link(
    browser_factory: BrowserFactory, query: str, message: str
) -> None:
    browser = browser_factory(guard())
    page = await browser.get(f"/auth/login?{query}")
    assert page.status_code == 400 and 'data-kind="failed"' in page.text
    # The login route got a link, not a provider's response: the page must not blame a sign-in response.
    assert "link could not be read" in page.text and "response" not in page.text
    api = await browser.get(f"/auth/login?{query}", headers={"accept": "application/json"})
    assert api.status_code == 400 and api.json()["message"] == message
    callback = await browser.get(f"/auth/callback?{query}")
    assert callback.status_code == 400 and "sign-in response could not be read" in callback.text


@pytest.mark.parametrize(
    ("title", "words"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("Alpha\r\nSet-Cookie: a=b", "control characters"),
        ("Alpha\x00", "control characters"),
        ("A" * 65, "at most 64"),
    ],
)
def test_a_title_the_chooser_cannot_show_fails_at_startup(title: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match="title=") as caught:
        two_providers(title)
    assert words in str(caught.value)


def test_a_long_plain_title_is_fine() -> None:
    assert two_providers("Acme Corp — staff (Entra ID)")[0].label == "Acme Corp — staff (Entra ID)"


@pytest.mark.parametrize(
    ("make", "example"),
    [
        (
            lambda: providers.okta(domain="https://x.okta.com", client_id="a", client_secret=SECRET),
            "okta.com",
        ),
        (lambda: providers.auth0(domain="x.auth0.com/", client_id="a", client_secret=SECRET), "auth0.com"),
        (
            lambda: providers.entra(
                tenant="organizations", authority="https://login", client_id="a", client_secret=SECRET
            ),
            "login.microsoftonline.com",
        ),
    ],
)
def test_a_presets_host_mistake_shows_that_providers_own_example(make: Any, example: str) -> None:
    with pytest.raises(ConfigurationError, match="no https://, no path") as caught:
        make()
    text = str(caught.value)
    assert example in text and text.count("(") == text.count(")")
    if example != "auth0.com":
        assert "auth0" not in text


@pytest.mark.parametrize("telemetry", ["otel", True, object()])
def test_telemetry_that_is_not_a_backend_fails_at_startup_naming_one(telemetry: object) -> None:
    with pytest.raises(ConfigurationError, match=r"telemetry= must be .*GuardTelemetry\(\)"):
        guard(telemetry=telemetry)


def test_an_on_login_that_cannot_take_the_sign_in_fails_at_startup() -> None:
    with pytest.raises(ConfigurationError, match="one argument, the SignIn"):
        guard(on_login=lambda sign_in, extra: None)
    with pytest.raises(ConfigurationError, match="one argument, the SignIn"):
        guard(on_login=lambda: None)
    # Those that can take it (a default for a second parameter, *args, a callable object) are accepted.
    guard(on_login=lambda sign_in, extra=None: None)
    guard(on_login=lambda *args: None)
    guard(on_login=print)
