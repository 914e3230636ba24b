"""Offline access per provider: each provider's grants apart, even for one sub at both."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import (
    ConfigurationError,
    ConsentRequired,
    MemoryStore,
    OAuthGuard,
    OfflineAccess,
    Provider,
    current_identity,
)
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider, providers_transport

from ..conftest import SECRET_KEY, BrowserFactory
from .conftest import SERVER_KEY

pytestmark = pytest.mark.anyio

ALPHA = "https://alpha.example.test"
BETA = "https://beta.example.test"
GAMMA = "https://gamma.example.test"


async def me(request: Request) -> JSONResponse:
    identity = current_identity()
    assert identity is not None
    return JSONResponse({"provider": identity.provider, "token": identity.access_token})


@pytest.fixture
def no_secrets_in_logs() -> None:
    """These providers are not the shared ``provider`` fixture: the test checks its own logs."""


@pytest.fixture
async def idps(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[dict[str, OAuthTestProvider]]:
    caplog.set_level(logging.DEBUG)
    made = {
        name: OAuthTestProvider(
            issuer=issuer, client_id=f"client-{name}", client_secret=f"secret-{name}-0123456789", clock=clock
        )
        for name, issuer in (("alpha", ALPHA), ("beta", BETA), ("gamma", GAMMA))
    }
    yield made
    issued = [s for idp in made.values() for s in idp.issued_secrets()]
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert not [s for s in issued if len(s) >= 8 and s in text], "a secret reached the logs"


def provider(name: str, issuer: str, **settings: object) -> Provider:
    return Provider(
        name=name,
        issuer=issuer,
        client_id=f"client-{name}",
        client_secret=f"secret-{name}-0123456789",
        **settings,
    )


async def sign_in(browser: httpx.AsyncClient, idp: OAuthTestProvider, name: str) -> dict[str, str]:
    started = await browser.get("/auth/login", params={"provider": name, "next": "/me"})
    assert started.status_code == 303, started.text
    callback = await idp.complete_authorization(started.headers["location"])
    assert (await browser.get(callback)).status_code == 303
    return next(c for c in reversed(idp.calls) if c.endpoint == "authorize").params


async def test_each_provider_keeps_its_own_grants_and_only_those_with_offline_access(
    idps: dict[str, OAuthTestProvider], clock: FakeClock, browser_factory: BrowserFactory
) -> None:
    async with httpx.AsyncClient(transport=providers_transport(*idps.values())) as http:
        guard = OAuthGuard(
            Starlette(routes=[Route("/me", me)]),
            providers=[
                provider("alpha", ALPHA, offline=OfflineAccess()),
                provider("beta", BETA, offline=OfflineAccess(end_with_sessions=True)),
                provider("gamma", GAMMA),
            ],
            secret_key=SECRET_KEY,
            server_keys=[SERVER_KEY],
            http_client=http,
            clock=clock,
            store=MemoryStore(clock=clock),
            require_login=["/me"],
        )
        browsers = {name: browser_factory(guard) for name in idps}
        asked = {name: await sign_in(browsers[name], idps[name], name) for name in idps}
        assert "offline_access" in asked["alpha"]["scope"].split()
        assert "offline_access" not in asked["gamma"]["scope"].split()
        async with guard.tokens() as tm:
            alpha = await tm.for_user("alice", provider="alpha")
            beta = await tm.for_user("alice", provider="beta")  # the same sub, another provider's grant
            assert (await tm.for_user("alice")).access_token == alpha.access_token  # the first is the default
            with pytest.raises(ConfigurationError, match="'gamma' has no offline access"):
                await tm.for_user("alice", provider="gamma")
        assert idps["alpha"].token_info(alpha.access_token)["active"]
        assert idps["beta"].token_info(beta.access_token)["active"]

        # Alpha's grant is revoked there: only alpha's jobs and sessions notice; the next alpha sign-in asks.
        idps["alpha"].revoke_grants("alice")
        clock.advance(3600)
        async with guard.tokens() as tm:
            with pytest.raises(ConsentRequired) as caught:
                await tm.for_user("alice", provider="alpha")
            assert caught.value.provider == "alpha"
            assert idps["beta"].grant_alive((await tm.for_user("alice", provider="beta")).access_token)
        assert (await browsers["gamma"].get("/me")).status_code == 200  # its own refresh token
        assert (await browsers["alpha"].get("/me")).status_code == 303
        assert (await sign_in(browsers["alpha"], idps["alpha"], "alpha")).get("prompt") == "consent"
        assert "prompt" not in await sign_in(browsers["beta"], idps["beta"], "beta")

        # Beta ends its grant with its sessions; alpha keeps its own.
        assert (
            await guard.end_sessions(sub="alice", provider="beta") == 1
        )  # a sign-in replaces the one before
        async with guard.tokens() as tm:
            with pytest.raises(ConsentRequired):
                await tm.for_user("alice", provider="beta")
            assert (await tm.for_user("alice", provider="alpha")).access_token


async def test_offline_on_the_guard_is_for_the_one_provider_form(idps: dict[str, OAuthTestProvider]) -> None:
    with pytest.raises(ConfigurationError, match="offline="):
        OAuthGuard(
            Starlette(),
            providers=[provider("alpha", ALPHA)],
            offline=OfflineAccess(),
            server_keys=[SERVER_KEY],
            secret_key=SECRET_KEY,
        )
    with pytest.raises(ConfigurationError, match=r"provider 'alpha'\) needs server_keys="):
        OAuthGuard(
            Starlette(), providers=[provider("alpha", ALPHA, offline=OfflineAccess())], secret_key=SECRET_KEY
        )
