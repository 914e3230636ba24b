"""The examples' settings, read from the environment (the example apps contract, examples/README.md)."""

from __future__ import annotations

import importlib

import httpx
import pytest

from asgi_oauth_guard import ConfigurationError, MemoryStore, PostgresStore, RedisStore
from examples._settings import Settings, setup

from .conftest import CASES

EXTERNAL = {
    "OAUTH_ISSUER": "https://login.example.com",
    "OAUTH_CLIENT_ID": "my-app",
    "OAUTH_CLIENT_SECRET": "my-secret",
    "GUARD_SECRET_KEY": "k" * 32,
}


def test_nothing_configured_means_the_embedded_provider() -> None:
    settings = Settings.from_env({})
    assert settings.embedded and settings.embedded_issuer == "http://127.0.0.1:8000/idp"
    assert len(settings.secret_key) >= 32 and settings.secret_key != Settings.from_env({}).secret_key
    assert settings.store_url == "memory://" and settings.scopes == ("openid", "email", "profile")
    assert not settings.demo_auto_approve and settings.demo_token_lifetime == 30


def test_the_embedded_provider_follows_public_url() -> None:
    settings = Settings.from_env({"PUBLIC_URL": "http://localhost:9000/", "DEMO_TOKEN_LIFETIME": "12"})
    assert settings.embedded_issuer == "http://localhost:9000/idp"
    assert settings.public_url == "http://localhost:9000/" and settings.demo_token_lifetime == 12


def test_an_issuer_uses_discovery() -> None:
    settings = Settings.from_env({**EXTERNAL, "OAUTH_SCOPES": "openid, email offline_access"})
    assert not settings.embedded and settings.issuer == "https://login.example.com"
    assert settings.provider is None and settings.client_id == "my-app"
    assert settings.scopes == ("openid", "email", "offline_access")


@pytest.mark.parametrize("missing", ["OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "GUARD_SECRET_KEY"])
def test_a_real_provider_needs_credentials_and_a_key(missing: str) -> None:
    env = {k: v for k, v in EXTERNAL.items() if k != missing}
    with pytest.raises(ConfigurationError, match=f"set {missing}"):
        Settings.from_env(env)


def test_explicit_endpoints_skip_discovery() -> None:
    settings = Settings.from_env(
        {
            **EXTERNAL,
            "OAUTH_AUTHORIZATION_ENDPOINT": "https://login.example.com/oauth/authorize",
            "OAUTH_TOKEN_ENDPOINT": "https://login.example.com/oauth/token",
            "OAUTH_REVOCATION_ENDPOINT": "https://login.example.com/oauth/revoke",
        }
    )
    assert settings.issuer is None and settings.provider is not None
    assert settings.provider.issuer == "https://login.example.com"
    assert settings.provider.token_endpoint == "https://login.example.com/oauth/token"
    assert settings.provider.revocation_endpoint == "https://login.example.com/oauth/revoke"
    assert setup(settings).guard_options()["provider"] is settings.provider


def test_one_explicit_endpoint_is_not_enough() -> None:
    env = {**EXTERNAL, "OAUTH_TOKEN_ENDPOINT": "https://login.example.com/oauth/token"}
    with pytest.raises(ConfigurationError, match="set OAUTH_AUTHORIZATION_ENDPOINT"):
        Settings.from_env(env)


def test_redirect_uri_wins_over_public_url() -> None:
    env = {
        **EXTERNAL,
        "OAUTH_REDIRECT_URI": "https://app.example.com/auth/callback",
        "PUBLIC_URL": "https://x",
    }
    settings = Settings.from_env(env)
    assert settings.redirect_uri == "https://app.example.com/auth/callback" and settings.public_url is None


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis.asyncio
async def test_the_store_comes_from_guard_store() -> None:
    assert isinstance(setup(Settings.from_env(EXTERNAL)).store, MemoryStore)
    redis = setup(Settings.from_env({**EXTERNAL, "GUARD_STORE": "redis://127.0.0.1:6399/2"})).store
    assert isinstance(redis, RedisStore)  # no connection is made until the first request
    await redis.aclose()
    for url, kind in (
        ("redis+cluster://127.0.0.1:7000", RedisStore),
        ("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/1", RedisStore),
        ("postgresql://guard:pw@127.0.0.1:5432/app", PostgresStore),
    ):
        store = setup(Settings.from_env({**EXTERNAL, "GUARD_STORE": url})).store
        assert isinstance(store, kind), url  # made without connecting: the pool opens on first use
        await store.aclose()  # type: ignore[attr-defined]


@pytest.mark.anyio
@pytest.mark.parametrize(("example", "anyio_backend"), CASES)
async def test_with_a_real_provider_there_is_no_idp_and_no_demo(example: str) -> None:
    app = importlib.import_module(f"examples.{example}_app").create_app(Settings.from_env(EXTERNAL))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app.test") as client:
        assert (await client.get("/public")).status_code == 200
        assert (await client.get("/idp/.well-known/openid-configuration")).status_code == 404
        assert (await client.post("/demo/revoke")).status_code == 404
        assert "You are not signed in." in (await client.get("/")).text
