"""One app, three providers (#15): an embedded test provider, the embedded provider playing GitHub (OAuth 2.0
without OpenID Connect: no ID token, the user from its API, 200s with its own error codes, a GitHub App's
expiring tokens, sign-out by ``DELETE /applications/{client_id}/token``) and the real oidc-provider 9.13.3.

Each user signs in at the provider they pick, ten times at once on the same callback: one exchange each;
each session refreshes at its own token endpoint and signs out at its own revocation endpoint; a ``state``
from one provider's login never gets another provider's code exchanged. The embedded providers share the
guard's clock; oidc-provider runs on real time (its 5 s tokens are due when the guard's clock moves on).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import MemoryStore, OAuthGuard, Provider, current_identity, providers
from asgi_oauth_guard.testing import OAuthTestProvider, mimics, providers_transport

from .conftest import AppBrowser, InteropProvider, unique_user, walk_to_callback
from .guard_app import Journal, select

pytestmark = pytest.mark.anyio

APP_URL = "http://127.0.0.1:8765"  # served in-process; oidc-provider takes any port of this loopback URI
CALLBACK = f"{APP_URL}/auth/callback"
ALPHA = "https://alpha.example.test"
EMBEDDED_TTL = 60  # the embedded providers' access tokens; their clock is the guard's


class Clock:
    """Real time plus an offset the test moves (the embedded providers and the guard read it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def me(request: Request) -> JSONResponse:
    identity = current_identity()
    if identity is None:
        return JSONResponse({"user": None}, status_code=401)
    return JSONResponse(
        {
            "sub": identity.sub,
            "provider": identity.provider,
            "claims": dict(identity.claims),
            "token": hashlib.sha256(identity.access_token.encode()).hexdigest()[:16],
        }
    )


@dataclass
class Rig:
    guard: OAuthGuard
    clock: Clock
    alpha: OAuthTestProvider
    github: OAuthTestProvider
    node: InteropProvider


@pytest.fixture
async def rig(oidc_provider: InteropProvider) -> AsyncIterator[Rig]:
    clock = Clock()
    alpha = OAuthTestProvider(
        issuer=ALPHA,
        client_id="alpha-client",
        client_secret="alpha-secret-0123456789",
        clock=clock,
        access_token_ttl=EMBEDDED_TTL,
    )
    github = OAuthTestProvider(
        mimic=mimics.github(client_id="Iv1.0123456789abcdef", expiring=True),
        client_id="Iv1.0123456789abcdef",
        client_secret="github-secret-0123456789",
        clock=clock,
        access_token_ttl=EMBEDDED_TTL,
    )
    embedded = providers_transport(alpha, github)
    mounts = {f"https://{host}": embedded for host in ("alpha.example.test", "github.com", "api.github.com")}
    async with httpx.AsyncClient(timeout=10, mounts=mounts) as http:  # oidc-provider: real HTTP
        guard = OAuthGuard(
            Starlette(routes=[Route("/api/me", me)]),
            providers=[
                Provider(
                    name="alpha",
                    issuer=ALPHA,
                    client_id="alpha-client",
                    client_secret="alpha-secret-0123456789",
                ),
                providers.github(client_id="Iv1.0123456789abcdef", client_secret="github-secret-0123456789"),
                Provider(
                    name="node",
                    title="oidc-provider",
                    issuer=oidc_provider.issuer,
                    client_id=oidc_provider.client_id,
                    client_secret=oidc_provider.client_secret,
                ),
            ],
            secret_key=secrets.token_urlsafe(32),
            redirect_uri=CALLBACK,
            store=MemoryStore(),
            http_client=http,
            require_login=["/api/"],
            clock=clock,
        )
        yield Rig(guard, clock, alpha, github, oidc_provider)


class Browser(AppBrowser):
    """One user's browser on the three-provider app."""

    def __init__(self, rig: Rig, user: str) -> None:
        super().__init__(rig.guard, user, app_url=APP_URL)
        self.rig = rig

    async def start_login(self, provider: str) -> str:
        """The callback URL the provider sends the browser back to (not loaded yet)."""
        location = await self.authorize_location(provider)
        if provider == "alpha":
            return await self.rig.alpha.complete_authorization(location, user=self.user)
        if provider == "github":
            assert location.startswith("https://github.com/login/oauth/authorize?"), location
            return await self.rig.github.complete_authorization(location, user=self.user)
        return await walk_to_callback(self.idp, location, user=self.user, callback=CALLBACK)


@pytest.fixture
async def browsers(rig: Rig) -> AsyncIterator[Any]:
    made: list[Browser] = []

    def make(user: str) -> Browser:
        made.append(Browser(rig, user))
        return made[-1]

    yield make
    for browser in made:
        await browser.aclose()


async def ten_at_once(browser: Browser, callback: str) -> list[int]:
    statuses: list[int] = []

    async def load() -> None:
        statuses.append((await browser.app.get(callback)).status_code)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(load)
    return statuses


def embedded_counts(idp: OAuthTestProvider) -> dict[str, Any]:
    token = [c for c in idp.calls if c.endpoint == "token"]
    return {
        "exchanges": sum(1 for c in token if c.grant_type == "authorization_code"),
        "refreshes": sum(1 for c in token if c.grant_type == "refresh_token"),
        "errors": [c.error for c in token if c.error is not None],
        "revocations": [(c.method, c.status) for c in idp.calls if c.endpoint == "revoke"],
    }


async def test_three_providers_each_sign_in_refresh_and_sign_out_at_their_own(
    rig: Rig, browsers: Any
) -> None:
    journal = Journal(rig.node)
    mark = await journal.mark()
    users = {name: unique_user(f"three-{name}") for name in ("alpha", "github", "node")}
    for name, user in users.items():
        if name != "node":
            (rig.alpha if name == "alpha" else rig.github).add_user(
                user, email=f"{user}@example.test", name=user
            )
    signed_in: dict[str, Browser] = {}
    for name, user in users.items():
        browser = browsers(user)
        assert await ten_at_once(browser, await browser.start_login(name)) == [303] * 10
        body = await browser.me()
        assert body["provider"] == name and body["claims"]["email"] == f"{user}@example.test"
        signed_in[name] = browser
    # GitHub's identity: its numeric id, from its API; the others' from their ID tokens.
    github_id = mimics.github_user_id({"sub": users["github"]})
    assert (await signed_in["github"].me())["sub"] == str(github_id)
    assert (await signed_in["node"].me())["sub"] == users["node"]
    assert (await signed_in["alpha"].me())["sub"] == users["alpha"]

    tokens = {name: (await b.me())["token"] for name, b in signed_in.items()}
    rig.clock.offset += EMBEDDED_TTL + 1  # every access token is due (oidc-provider's live 5 s)
    for name, browser in signed_in.items():
        body = await browser.me()
        assert body["provider"] == name and body["token"] != tokens[name], name

    for browser in signed_in.values():
        out = await browser.app.post("/auth/logout", headers={"origin": APP_URL})
        assert out.status_code == 303

    assert embedded_counts(rig.alpha) == {
        "exchanges": 1,
        "refreshes": 1,
        "errors": [],
        "revocations": [("POST", 200)],  # RFC 7009
    }
    assert embedded_counts(rig.github) == {
        "exchanges": 1,
        "refreshes": 1,
        "errors": [],
        "revocations": [("DELETE", 204)],  # GitHub's token deletion
    }
    assert rig.github.count("userinfo") == 1 and rig.github.count("emails") == 1  # at sign-in only
    events = [e for e in await journal.since(mark) if e.get("sub") in (None, users["node"])]
    node_grants = select(events, "grant.success")
    assert {e["sub"] for e in node_grants} == {users["node"]}
    assert len(select(events, "grant.success", grant_type="authorization_code")) == 1
    # Its 5 s tokens may fall due once more on a slow machine; never a refresh token sent twice.
    assert len(select(events, "grant.success", grant_type="refresh_token")) >= 1
    assert not select(events, "grant.error")
    assert len(select(events, "request", path="/token/revocation")) == 1
    assert await journal.grants(users["node"]) == []


async def test_a_state_from_one_providers_login_is_refused_by_anothers_callback(
    rig: Rig, browsers: Any
) -> None:
    journal = Journal(rig.node)
    mark = await journal.mark()
    browser = browsers(unique_user("three-mix"))
    rig.alpha.add_user(browser.user, email="mix@example.test", name="Mix")
    rig.github.add_user(browser.user, email="mix@example.test", name="Mix")
    callbacks = {name: httpx.URL(await browser.start_login(name)) for name in ("alpha", "github", "node")}
    for own, callback in callbacks.items():
        for other, foreign in callbacks.items():
            if other == own:
                continue
            # The provider's answer (its code, and its iss where it sends one) with another's state.
            mixed = callback.copy_remove_param("iss").copy_set_param("code", foreign.params["code"])
            if "iss" in foreign.params:
                mixed = mixed.copy_set_param("iss", foreign.params["iss"])
            refused = await browser.app.get(str(mixed))
            assert refused.status_code == 400 and "unexpected issuer" in refused.text, (own, other)
    assert embedded_counts(rig.alpha)["exchanges"] == embedded_counts(rig.github)["exchanges"] == 0
    assert not select(await journal.since(mark), "request", path="/token")
    # Each honest answer still completes, at its own provider.
    for name, callback in callbacks.items():
        assert (await browser.app.get(str(callback))).status_code == 303
        assert (await browser.me())["provider"] == name
    assert embedded_counts(rig.alpha)["exchanges"] == embedded_counts(rig.github)["exchanges"] == 1
