"""Interop tests against panva's oidc-provider (pinned in interop/package.json), run by node on loopback.

The session fixture `oidc_provider` installs the provider from interop/package-lock.json when
interop/node_modules is missing (`npm ci`), starts `node interop/server.mjs` on a free port with a fresh
client, and stops it at the end. `running_oidc_provider(...)` starts one more with other settings.
Without node or npm the tests fail with a message saying so: they are never skipped silently.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
INTEROP_DIR = REPO / "interop"
SERVER = INTEROP_DIR / "server.mjs"
OIDC_PROVIDER_VERSION = "9.13.3"

READY_TIMEOUT = 30.0  # seconds from spawning node to its READY line
NPM_CI_TIMEOUT = 600.0
STOP_TIMEOUT = 5.0

ACCESS_TOKEN_TTL = 5
CODE_TTL = 10
REFRESH_TOKEN_TTL = 3600
# Registered redirect URIs. The client is a "native" one, so any port on these loopback URIs is accepted.
REDIRECT_URIS = (
    "http://127.0.0.1/auth/callback",
    "http://localhost/auth/callback",
    "http://127.0.0.1/callback",
    "http://localhost/callback",
)
POST_LOGOUT_REDIRECT_URIS = ("http://127.0.0.1/", "http://localhost/")


# --------------------------------------------------------------------------------------------------------
# marking and backend


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------------------------------------
# the provider process


@dataclass(frozen=True)
class InteropProvider:
    """A running oidc-provider: where it is, and the confidential client registered in it."""

    issuer: str
    client_id: str
    client_secret: str
    port: int
    redirect_uris: tuple[str, ...] = REDIRECT_URIS
    access_token_ttl: int = ACCESS_TOKEN_TTL
    code_ttl: int = CODE_TTL
    refresh_token_ttl: int = REFRESH_TOKEN_TTL
    output: collections.deque[str] = field(default_factory=collections.deque, repr=False, compare=False)

    def url(self, path: str) -> str:
        return f"{self.issuer}{path}"

    def revoke_grants(self, sub: str) -> None:
        """Revoke every grant of `sub` and end their sessions (what a password change does)."""
        response = httpx.post(self.url("/admin/revoke-grants"), params={"sub": sub}, timeout=5)
        response.raise_for_status()

    async def arevoke_grants(self, sub: str) -> None:
        """`revoke_grants` for async tests."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(self.url("/admin/revoke-grants"), params={"sub": sub})
            response.raise_for_status()

    def advance_clock(self, seconds: float) -> None:
        """Move the provider's clock forward (every TTL it checks), so expiry tests need no sleep.

        It moves for every test that shares this provider; use `running_oidc_provider()` for a private one.
        """
        response = httpx.post(self.url("/admin/advance-clock"), params={"seconds": seconds}, timeout=5)
        response.raise_for_status()

    async def aadvance_clock(self, seconds: float) -> None:
        """`advance_clock` for async tests."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(self.url("/admin/advance-clock"), params={"seconds": seconds})
            response.raise_for_status()

    def log(self) -> str:
        """What the provider printed so far (stdout and stderr), for failure messages."""
        return "".join(self.output)


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"`{tool}` is not on PATH: the interop tests run panva's oidc-provider {OIDC_PROVIDER_VERSION} "
            "under Node.js (20 or later) and install it with npm. Install Node.js and npm "
            "(e.g. `apt-get install nodejs npm`), then run `npm ci` in interop/.",
            pytrace=False,
        )
    return path


def ensure_node_modules() -> None:
    """Run `npm ci` in interop/ unless the pinned oidc-provider is already installed there."""
    _require("node")
    installed = INTEROP_DIR / "node_modules" / "oidc-provider" / "package.json"
    if installed.is_file() and f'"version": "{OIDC_PROVIDER_VERSION}"' in installed.read_text():
        return
    npm = _require("npm")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=INTEROP_DIR,
        capture_output=True,
        text=True,
        timeout=NPM_CI_TIMEOUT,
        check=False,
    )
    if result.returncode != 0 or not installed.is_file():
        pytest.fail(
            f"`npm ci` in {INTEROP_DIR} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}",
            pytrace=False,
        )


def _drain(stream: Any, output: collections.deque[str], ready: list[str], event: threading.Event) -> None:
    for line in stream:
        output.append(line)
        if not ready and line.startswith("READY "):
            ready.append(line.split(" ", 1)[1].strip())
            event.set()
    event.set()  # end of output: the process is gone


@contextmanager
def running_oidc_provider(
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    redirect_uris: tuple[str, ...] = REDIRECT_URIS,
    post_logout_redirect_uris: tuple[str, ...] = POST_LOGOUT_REDIRECT_URIS,
    access_token_ttl: int = ACCESS_TOKEN_TTL,
    code_ttl: int = CODE_TTL,
    refresh_token_ttl: int = REFRESH_TOKEN_TTL,
    extra_env: dict[str, str] | None = None,
) -> Iterator[InteropProvider]:
    """Start `node interop/server.mjs` on a free loopback port; stop it on exit."""
    ensure_node_modules()
    node = _require("node")
    client_id = client_id or f"interop-{secrets.token_hex(4)}"
    # URL-safe characters only: oidc-provider form-decodes the Basic credentials (RFC 6749 2.3.1)
    client_secret = client_secret or secrets.token_urlsafe(32)
    env = {
        **{k: v for k, v in os.environ.items() if k != "ISSUER"},
        "PORT": "0",
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": client_secret,
        "REDIRECT_URIS": ",".join(redirect_uris),
        "POST_LOGOUT_REDIRECT_URIS": ",".join(post_logout_redirect_uris),
        "ACCESS_TOKEN_TTL": str(access_token_ttl),
        "CODE_TTL": str(code_ttl),
        "REFRESH_TOKEN_TTL": str(refresh_token_ttl),
        **(extra_env or {}),
    }
    with serving(
        [node, str(SERVER)],
        cwd=INTEROP_DIR,
        env=env,
        what="oidc-provider",
        command=f"node {SERVER.relative_to(REPO)}",
    ) as (issuer, output):
        yield InteropProvider(
            issuer=issuer,
            client_id=client_id,
            client_secret=client_secret,
            port=int(urlsplit(issuer).port or 80),
            redirect_uris=tuple(redirect_uris),
            access_token_ttl=access_token_ttl,
            code_ttl=code_ttl,
            refresh_token_ttl=refresh_token_ttl,
            output=output,
        )


@contextmanager
def serving(
    argv: list[str], *, cwd: Path, env: dict[str, str], what: str, command: str
) -> Iterator[tuple[str, collections.deque[str]]]:
    """Run a test server until the block ends: ``(the URL of its READY line, its output so far)``.

    Fails the test, with the server's output, when no ``READY <url>`` line comes within READY_TIMEOUT."""
    output: collections.deque[str] = collections.deque(maxlen=5000)
    ready: list[str] = []
    event = threading.Event()
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    reader = threading.Thread(
        target=_drain, args=(process.stdout, output, ready, event), name=f"{what}-output", daemon=True
    )
    reader.start()
    try:
        event.wait(READY_TIMEOUT)
        if not ready:
            try:
                state = f"exited with code {process.wait(1)}"
            except subprocess.TimeoutExpired:
                state = "is running but silent"
            pytest.fail(
                f"{what} did not start (no READY line within {READY_TIMEOUT:.0f} s; it {state}). "
                f"Output of `{command}`:\n" + "".join(output),
                pytrace=False,
            )
        yield ready[0], output
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        reader.join(STOP_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[InteropProvider]:
    with running_oidc_provider() as provider:
        yield provider


# --------------------------------------------------------------------------------------------------------
# a headless OAuth client, for tests that talk to the provider directly


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class Authorization:
    """The outcome of one authorization request: where the provider finally sent the browser."""

    redirect_uri: str
    verifier: str
    state: str
    nonce: str
    location: str  # the last Location header: the redirect_uri with code (or error) in its query

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.location).query).items()}

    @property
    def code(self) -> str:
        params = self.params
        assert "code" in params, f"no code in {self.location}"
        return params["code"]


async def authorize(
    client: httpx.AsyncClient,
    provider: InteropProvider,
    *,
    redirect_uri: str,
    scope: str = "openid profile email offline_access",
    login_hint: str | None = None,
    max_hops: int = 8,
    **extra: str,
) -> Authorization:
    """Run /auth → /interaction/{uid} → /auth/{uid} → redirect_uri, following Location by hand.

    `client` keeps the provider's cookies (it is the browser). Nothing needs to listen at redirect_uri: the
    walk stops at the first Location that points there.
    """
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params = {
        "client_id": provider.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **({"login_hint": login_hint} if login_hint else {}),
        **extra,
    }
    url = httpx.URL(provider.url("/auth"), params=params)
    for _ in range(max_hops):
        response = await client.get(url, follow_redirects=False)
        assert response.is_redirect, f"{response.status_code} from {url}: {response.text[:500]}"
        location = urljoin(str(url), response.headers["location"])
        if location.split("?", 1)[0] == redirect_uri:
            return Authorization(redirect_uri, verifier, state, nonce, location)
        url = httpx.URL(location)
    raise AssertionError(f"no redirect to {redirect_uri} after {max_hops} hops (last: {url})")


async def token_request(
    client: httpx.AsyncClient, provider: InteropProvider, data: dict[str, str], *, auth: str = "basic"
) -> httpx.Response:
    """POST to the token endpoint with the client authenticated by client_secret_basic or _post."""
    if auth == "basic":
        return await client.post(
            provider.url("/token"), data=data, auth=(provider.client_id, provider.client_secret)
        )
    body = {**data, "client_id": provider.client_id, "client_secret": provider.client_secret}
    return await client.post(provider.url("/token"), data=body)


def code_grant(authorization: Authorization, **overrides: str) -> dict[str, str]:
    """The token request that redeems ``authorization``'s code (its redirect_uri and PKCE verifier)."""
    return {
        "grant_type": "authorization_code",
        "code": authorization.code,
        "redirect_uri": authorization.redirect_uri,
        "code_verifier": authorization.verifier,
        **overrides,
    }


def refresh_grant(refresh_token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token}


async def exchange_code(
    client: httpx.AsyncClient, provider: InteropProvider, authorization: Authorization, **overrides: str
) -> httpx.Response:
    return await token_request(client, provider, code_grant(authorization, **overrides))


async def refresh(client: httpx.AsyncClient, provider: InteropProvider, refresh_token: str) -> httpx.Response:
    return await token_request(client, provider, refresh_grant(refresh_token))


async def walk_to_callback(idp: httpx.AsyncClient, authorize_url: str, *, user: str, callback: str) -> str:
    """oidc-provider's headless interaction (interop/server.mjs), as the user ``user`` (``login_hint``): from
    the authorization request the app redirected to, the callback URL the provider sends back (not loaded)."""
    url = httpx.URL(authorize_url).copy_merge_params({"login_hint": user})
    for _ in range(8):
        answer = await idp.get(url)
        assert answer.is_redirect, f"{answer.status_code} from {url}: {answer.text[:300]}"
        target = urljoin(str(url), answer.headers["location"])
        if target.split("?", 1)[0] == callback:
            return target
        url = httpx.URL(target)
    raise AssertionError("oidc-provider never redirected to the callback")


class AppBrowser:
    """One user's browser for a guard served in-process: a client for the app (pages asked as HTML) and one
    for the providers' sign-in pages (real HTTP). Subclasses say how each provider signs the user in."""

    def __init__(self, guard: Any, user: str, *, app_url: str) -> None:
        self.user = user
        self.app = httpx.AsyncClient(
            transport=httpx.ASGITransport(guard), base_url=app_url, headers={"accept": "text/html"}
        )
        self.idp = httpx.AsyncClient(timeout=20)

    async def aclose(self) -> None:
        await self.app.aclose()
        await self.idp.aclose()

    async def authorize_location(self, provider: str) -> str:
        """The guard's login route for ``provider``: where it sends the browser."""
        response = await self.app.get("/auth/login", params={"provider": provider, "next": "/api/me"})
        assert response.status_code == 303, response.text[:300]
        return str(response.headers["location"])

    async def me(self) -> dict[str, Any]:
        response = await self.app.get("/api/me", headers={"accept": "application/json"})
        assert response.status_code == 200, response.text[:300]
        body: dict[str, Any] = response.json()
        return body


def unique_user(prefix: str = "u") -> str:
    """An account id of its own for one test (the provider accepts any well-formed id as a user)."""
    return f"{prefix}-{secrets.token_hex(6)}"


@pytest.fixture(scope="session")
def dot_provider() -> Iterator[Any]:
    """django-oauth-toolkit from interop/dot/ (tests/interop/dot.py), shared by the session's tests."""
    from .dot import running_dot_provider

    with running_dot_provider() as provider:
        yield provider
