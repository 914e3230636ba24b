"""One guard, two real providers at once: panva's oidc-provider 9.13.3 and django-oauth-toolkit 3.4.1.

Each user signs in at the provider they pick (``/auth/login?provider=NAME``), and their session stays with it:
duplicate callbacks make one exchange at that provider, the refresh goes to its token endpoint, the sign-out
revokes at its revocation endpoint (django-oauth-toolkit's found in its RFC 8414 metadata), and the other
provider sees none of it. The guard runs in this process at a loopback URL both providers accept on any port;
its clock is shared with both providers' (``/admin/advance-clock``), so tokens fall due without sleeping.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import MemoryStore, OAuthGuard, Provider, current_identity

from .conftest import AppBrowser, InteropProvider, running_oidc_provider, unique_user, walk_to_callback
from .dot import REVOCATION_PATH, TOKEN_PATH, DotProvider, running_dot_provider, sign_in
from .guard_app import Journal, select

pytestmark = pytest.mark.anyio

# Nothing listens here: the app is served in-process. Both providers ignore the port of http://127.0.0.1
# redirect URIs (RFC 8252 7.3), and both register http://127.0.0.1/auth/callback.
APP_URL = "http://127.0.0.1:8765"
CALLBACK = f"{APP_URL}/auth/callback"
# Long enough that no token falls due by itself while the other user signs in on a loaded machine: only
# the clock's jump makes them due (the guard's leeway is half of it).
ACCESS_TOKEN_TTL = 60
LEEWAY = ACCESS_TOKEN_TTL / 2


@pytest.fixture(scope="module")
def node() -> Iterator[InteropProvider]:
    with running_oidc_provider(access_token_ttl=ACCESS_TOKEN_TTL) as provider:
        yield provider


@pytest.fixture(scope="module")
def dot() -> Iterator[DotProvider]:
    with running_dot_provider(access_token_ttl=ACCESS_TOKEN_TTL) as provider:
        yield provider


class SharedClock:
    """Real time plus an offset; ``advance`` moves both providers' clocks by as much."""

    def __init__(self, *providers: InteropProvider) -> None:
        self.providers = providers
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    async def advance(self, seconds: float) -> None:
        for provider in self.providers:
            await provider.aadvance_clock(seconds)
        self.offset += seconds


async def me(request: Request) -> JSONResponse:
    identity = current_identity()
    if identity is None:
        return JSONResponse({"user": None}, status_code=401)
    return JSONResponse(
        {
            "sub": identity.sub,
            "provider": identity.provider,
            "email": identity.claims.get("email"),
            "expires_at": identity.expires_at,
            "refreshes": identity.refreshes,
            "token": hashlib.sha256(identity.access_token.encode()).hexdigest()[:16],
        }
    )


@dataclass
class Rig:
    guard: OAuthGuard
    clock: SharedClock
    node: InteropProvider
    dot: DotProvider
    journals: dict[str, Journal]


@pytest.fixture
async def rig(node: InteropProvider, dot: DotProvider) -> AsyncIterator[Rig]:
    clock = SharedClock(node, dot)
    async with httpx.AsyncClient(timeout=10) as http:
        guard = OAuthGuard(
            Starlette(routes=[Route("/api/me", me)]),
            providers=[
                Provider(
                    name="node",
                    title="oidc-provider",
                    issuer=node.issuer,
                    client_id=node.client_id,
                    client_secret=node.client_secret,
                ),
                Provider(
                    name="dot",
                    title="django-oauth-toolkit",
                    issuer=dot.issuer,
                    client_id=dot.client_id,
                    client_secret=dot.client_secret,
                ),
            ],
            secret_key=secrets.token_urlsafe(32),
            redirect_uri=CALLBACK,
            store=MemoryStore(),
            http_client=http,
            require_login=["/api/"],
            clock=clock,
        )
        yield Rig(guard, clock, node, dot, {"node": Journal(node), "dot": Journal(dot)})


class Browser(AppBrowser):
    """One user's browser on the two-real-provider app."""

    def __init__(self, rig: Rig, user: str) -> None:
        super().__init__(rig.guard, user, app_url=APP_URL)
        self.rig = rig

    async def start_login(self, provider: str) -> str:
        """The callback URL the provider sends the browser back to (not loaded yet)."""
        location = await self.authorize_location(provider)
        if provider == "dot":
            assert location.startswith(self.rig.dot.endpoint("/authorize/?")), location
            return await sign_in(self.idp, self.rig.dot, location, user=self.user, redirect_uri=CALLBACK)
        assert location.startswith(self.rig.node.url("/auth?")), location
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


def counts(events: list[dict[str, Any]], token_path: str, revocation_path: str) -> dict[str, int]:
    return {
        "token_requests": len(select(events, "request", path=token_path)),
        "exchanges": len(select(events, "grant.success", grant_type="authorization_code")),
        "refreshes": len(select(events, "grant.success", grant_type="refresh_token")),
        "errors": len(select(events, "grant.error")),
        "revocations": len(select(events, "request", path=revocation_path)),
    }


async def ten_at_once(browser: Browser, callback: str) -> list[httpx.Response]:
    answers: list[httpx.Response] = []

    async def load() -> None:
        answers.append(await browser.app.get(callback))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(load)
    return answers


PATHS = {"node": ("/token", "/token/revocation"), "dot": (TOKEN_PATH, REVOCATION_PATH)}


async def test_one_guard_signs_users_in_through_both_providers_at_once(rig: Rig, browsers: Any) -> None:
    chooser = await httpx.AsyncClient(transport=httpx.ASGITransport(rig.guard), base_url=APP_URL).get(
        "/auth/login"
    )
    assert (
        chooser.status_code == 200
        and "oidc-provider" in chooser.text
        and "django-oauth-toolkit" in chooser.text
    )

    marks = {name: await journal.mark() for name, journal in rig.journals.items()}
    users = {"node": unique_user("two-node"), "dot": unique_user("two-dot")}
    signed_in: dict[str, Browser] = {}
    for name, user in users.items():
        browser = browsers(user)
        callback = await browser.start_login(name)
        answers = await ten_at_once(browser, callback)  # 10 duplicate callbacks for each provider
        assert [a.status_code for a in answers] == [303] * 10
        body = await browser.me()
        assert (body["sub"], body["provider"], body["email"]) == (user, name, f"{user}@example.test")
        signed_in[name] = browser

    # both tokens fall due: each session refreshes at its own provider
    due = max([(await b.me())["expires_at"] for b in signed_in.values()]) - LEEWAY
    await rig.clock.advance(due - rig.clock() + 0.05)
    for name, browser in signed_in.items():
        body = await browser.me()
        assert (body["provider"], body["refreshes"]) == (name, 1)

    for browser in signed_in.values():
        out = await browser.app.post("/auth/logout", headers={"origin": APP_URL})
        assert out.status_code == 303

    for name, journal in rig.journals.items():
        events = await journal.since(marks[name])
        figures = counts(events, *PATHS[name])
        # one exchange, one refresh and one revocation each, none at the other provider
        assert figures == {
            "token_requests": 2,
            "exchanges": 1,
            "refreshes": 1,
            "errors": 0,
            "revocations": 1,
        }, (
            name,
            events,
        )
        assert {e["sub"] for e in select(events, "grant.success")} == {users[name]}
        assert await journal.grants(users[name]) == []
