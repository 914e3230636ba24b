"""Bad configuration fails when the middleware is built, with a message that says what to fix."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from starlette.responses import PlainTextResponse

import asgi_oauth_guard
from asgi_oauth_guard import ConfigurationError, OAuthGuard, Provider
from asgi_oauth_guard._lifetime import Lifetime

GOOD: dict[str, Any] = {
    "issuer": "https://idp.example.test",
    "client_id": "client",
    "client_secret": "secret",
    "secret_key": "k" * 32,
}


def build(**changes: Any) -> OAuthGuard:
    settings = {**GOOD, **changes}
    for name, value in list(settings.items()):
        if value is ...:
            del settings[name]
    return OAuthGuard(PlainTextResponse("app"), **settings)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"issuer": ...}, "exactly one of issuer="),
        (
            {
                "provider": Provider(
                    issuer="https://a.test",
                    authorization_endpoint="https://a.test/a",
                    token_endpoint="https://a.test/t",
                )
            },
            "exactly one of issuer=",
        ),
        ({"issuer": "idp.example.test"}, "issuer= must be an absolute http(s) URL"),
        ({"issuer": "ftp://idp.example.test"}, "issuer= must be an absolute http(s) URL"),
        ({"client_id": ""}, "client_id= is empty"),
        ({"client_secret": ""}, "client_secret= is empty"),
        ({"client_auth": "tls_client_auth"}, "client_auth= must be"),
        ({"client_auth": "private_key_jwt"}, "needs client_key="),
        ({"client_auth": "private_key_jwt", "client_key": "not a key"}, "client_key= is not"),
        ({"client_key": "-----BEGIN PRIVATE KEY-----"}, "client_key= is only used"),
        ({"id_token_signed_response_alg": "none"}, "is not a JWS algorithm"),
        ({"fetch_userinfo": "header"}, "fetch_userinfo= must be"),
        (
            {
                "issuer": ...,
                "fetch_userinfo": True,
                "provider": Provider(
                    issuer="https://a.test",
                    authorization_endpoint="https://a.test/a",
                    token_endpoint="https://a.test/t",
                ),
            },
            "fetch_userinfo= needs Provider(userinfo_endpoint=...)",
        ),
        ({"secret_key": "short"}, "secret_key= must be at least 32 characters"),
        ({"secret_key": []}, "secret_key= must be at least 32 characters"),
        ({"scopes": "openid email"}, "scopes= must be a list"),
        ({"scopes": ["openid email"]}, "scopes= must be a list"),
        ({"login_path": "auth/login"}, "login_path= must be a path"),
        ({"callback_path": "//evil/cb"}, "callback_path= must be a path"),
        ({"logout_path": "/auth/login"}, "must differ"),
        ({"transaction_ttl": 0}, "transaction_ttl= must be positive"),
        ({"session_max_age": -1}, "session_max_age= must be positive"),
        ({"session_idle_timeout": 30}, "session_idle_timeout= must be at least 120 seconds"),
        ({"session_ttl": 60, "session_max_age": 60}, "give session_max_age= only"),
        ({"http_timeout": 0}, "http_timeout= must be positive"),
        ({"refresh_leeway": -5}, "refresh_leeway= must be zero or more"),
        ({"max_transactions_per_browser": 0}, "max_transactions_per_browser="),
        ({"cookie_same_site": "lax-ish"}, "cookie_same_site= must be"),
        ({"cookie_same_site": "none", "cookie_secure": False}, "needs cookie_secure=True"),
        ({"cookie_name": "bad name;"}, "cookie_name= is not a valid cookie name"),
        ({"public_url": "https://a.test", "redirect_uri": "https://a.test/auth/callback"}, "not both"),
        ({"redirect_uri": "https://a.test/oauth/cb"}, "does not end with callback_path"),
        ({"public_url": "/relative"}, "public_url= must be an absolute http(s) URL"),
        ({"trusted_proxies": ["not-an-ip"]}, "trusted_proxies="),
        ({"post_logout_redirect": "https://evil.example"}, "post_logout_redirect="),
        ({"relogin": "teleport"}, "relogin= must be"),
    ],
)
def test_bad_settings_say_what_to_fix(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(**changes)


def test_session_ttl_is_the_deprecated_name_of_session_max_age() -> None:
    with pytest.warns(DeprecationWarning, match="use session_max_age="):
        guard = build(session_ttl=3600)
    assert guard._sessions.lifetime.max_age == 3600
    assert build()._sessions.lifetime == Lifetime(max_age=12 * 3600, idle_timeout=8 * 3600)


def test_provider_endpoints_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="token_endpoint"):
        Provider(issuer="https://a.test", authorization_endpoint="https://a.test/a", token_endpoint="/token")


def test_good_settings_build() -> None:
    guard = build(public_url="https://app.example.com", trusted_proxies=["10.0.0.0/8"], scopes=["openid"])
    assert guard.login_path == "/auth/login"
    explicit = build(
        issuer=...,
        provider=Provider(
            issuer="https://a.test",
            authorization_endpoint="https://a.test/a",
            token_endpoint="https://a.test/t",
        ),
        client_auth="client_secret_post",
        secret_key=["o" * 32, "n" * 32],
    )
    assert explicit.login_path == "/auth/login"


def test_public_surface_is_small_and_sorted() -> None:
    exported = asgi_oauth_guard.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    for name in exported:
        assert getattr(asgi_oauth_guard, name) is not None
    public_modules = {n for n in dir(asgi_oauth_guard) if not n.startswith("_") and n not in exported}
    assert public_modules <= {"testing", "integrations", "otel", "providers"}, public_modules


def _sequence_settings() -> list[str]:
    """Every setting whose type takes a sequence: new ones are covered here without editing this test."""
    signature = inspect.signature(OAuthGuard.__init__)
    # providers= takes Provider objects, not strings: tests/test_providers.py covers it.
    return [
        name
        for name, p in signature.parameters.items()
        if "Sequence[" in str(p.annotation) and name != "providers"
    ]


EXAMPLE_ITEM = {
    "scopes": "openid",
    "trusted_proxies": "10.0.0.0/8",
    "secret_key": "k" * 32,
    "allowed_origins": "https://admin.example.com",
    "server_keys": "s" * 32,
}


def test_the_sequence_settings_are_found() -> None:
    expected = {"secret_key", "scopes", "trusted_proxies", "require_login", "public_paths", "api_prefixes"}
    assert expected <= set(_sequence_settings())


@pytest.mark.parametrize("name", _sequence_settings())
def test_a_sequence_setting_given_one_string_says_what_to_write(name: str) -> None:
    item = EXAMPLE_ITEM.get(name, "/health")
    annotation = str(inspect.signature(OAuthGuard.__init__).parameters[name].annotation)
    if annotation.startswith("str |"):  # the setting takes one string too (secret_key: one key)
        assert build(**{name: item}) is not None
        return
    with pytest.raises(ConfigurationError, match=rf"{name}= must be a list") as caught:
        build(**{name: item})
    # server_keys: a secret, never echoed in the message
    assert repr([item]) in str(caught.value) or name in ("scopes", "server_keys")
    # The list form it suggests builds.
    assert build(**{name: [item]}) is not None
    with pytest.raises(ConfigurationError, match=rf"{name}= must be a list"):
        build(**{name: item.encode()})
    with pytest.raises(ConfigurationError, match=rf"{name}= must be a list of strings"):
        build(**{name: [item, 7]})


def test_one_string_of_scopes_suggests_the_split_list() -> None:
    with pytest.raises(ConfigurationError, match=r"write scopes=\['openid', 'email'\]"):
        build(scopes="openid email")


def test_authorize_params_must_be_a_mapping() -> None:
    with pytest.raises(ConfigurationError, match="authorize_params= must be a mapping"):
        build(authorize_params="prompt=consent")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("public_paths", "health"),
        ("public_paths", "/a//b"),
        ("public_paths", "/a/../b"),
        ("require_login", "/admin."),
        ("api_prefixes", "/api%2F"),
        ("public_paths", "/a?x=1"),
    ],
)
def test_path_prefixes_must_be_plain_paths(setting: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"{setting}= entr"):
        build(**{setting: [value]})
