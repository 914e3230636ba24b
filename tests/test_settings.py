"""GuardSettings: OAuthGuard's settings checked in one place, and kept in step with its signature."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from starlette.responses import PlainTextResponse

from asgi_oauth_guard import ConfigurationError, OAuthGuard, OfflineAccess
from asgi_oauth_guard._settings import GuardSettings

GOOD = {
    "issuer": "https://idp.example.test",
    "client_id": "client",
    "client_secret": "s3cr3t-value",
    "secret_key": "k" * 32,
}


def test_the_settings_take_exactly_the_guards_keyword_arguments() -> None:
    """A setting added to OAuthGuard but not here (or with another default or type) fails this."""
    guard = {
        name: (str(p.annotation), p.default)
        for name, p in inspect.signature(OAuthGuard.__init__).parameters.items()
        if name not in ("self", "app")
    }
    settings = {
        f.name: (
            str(f.type),
            f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty,
        )
        for f in dataclasses.fields(GuardSettings)
        if f.init
    }
    missing = sorted(guard.keys() - settings.keys())
    assert not missing, f"add {missing} to GuardSettings (asgi_oauth_guard/_settings.py) and pass them on"
    assert settings == guard, "GuardSettings and OAuthGuard.__init__ differ in a type or a default"


def test_mistakes_are_refused_by_the_settings_alone() -> None:
    with pytest.raises(ConfigurationError, match="secret_key= must be at least 32 characters"):
        GuardSettings(**{**GOOD, "secret_key": "short"})
    with pytest.raises(ConfigurationError, match="exactly one of issuer="):
        GuardSettings(client_id="c", client_secret="s", secret_key="k" * 32)


def test_what_follows_from_the_settings_is_resolved_once() -> None:
    settings = GuardSettings(
        **GOOD,
        public_url="https://app.example.com/",
        scopes=["openid"],
        trusted_proxies=["10.0.0.0/8"],
        require_login=["/admin"],
        offline=OfflineAccess(),
        server_keys=["s" * 32],
    )
    assert settings.redirect_uri == "https://app.example.com/auth/callback"
    assert settings.cookie_secure is True
    assert settings.session_cookie_name.startswith("__Host-")
    assert settings.scopes == ("openid",)
    assert settings.require_login == ("/admin",)
    assert settings.max_age == 12 * 3600
    assert settings.secret_keys == ("k" * 32,)
    (provider,) = settings.configured_providers
    assert (provider.client_id, provider.issuer) == ("client", "https://idp.example.test")
    assert provider.scopes == ("openid", "offline_access")
    assert settings.sealing_keys is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.scopes = ()  # type: ignore[misc]


def test_the_settings_never_show_a_secret() -> None:
    shown = repr(GuardSettings(**GOOD, server_keys=["s" * 32]))
    assert "s3cr3t-value" not in shown and "k" * 32 not in shown and "s" * 32 not in shown
    assert "client_id='client'" in shown


def test_the_deprecation_warning_points_at_the_app_that_builds_the_guard() -> None:
    with pytest.warns(DeprecationWarning, match="use session_max_age=") as caught:
        OAuthGuard(PlainTextResponse("app"), **GOOD, session_ttl=60)
    assert caught[0].filename == __file__
