"""An example app served for real against the interop provider, a scripted browser, and the provider's journal.

``served_example()`` runs ``uvicorn examples.starlette_app:app`` in a subprocess on a socket the test opened
(``--fd``, so no other process can take the port), configured only through the environment of the example apps
contract (examples/README.md), and pointed at a running oidc-provider. ``Browser`` is an httpx client with a cookie
jar that walks the login by hand: app ``/auth/login`` → the provider's ``/auth`` → ``/interaction/{uid}`` →
``/auth/{uid}`` → the app's callback URL, which it returns without loading it. ``Journal`` reads what the
provider saw at its token and revocation endpoints (``GET /admin/events`` of interop/server.mjs).
"""

from __future__ import annotations

import collections
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import anyio
import httpx
import pytest

from .conftest import REPO, InteropProvider

READY_TIMEOUT = 30.0  # seconds from spawning uvicorn to every worker serving
STOP_TIMEOUT = 10.0
APP = "examples.starlette_app:app"

# uvicorn's loggers and the guard's, each line prefixed with the process id: which worker served what.
_LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(process)d %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "out": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    },
    "loggers": {
        name: {"handlers": ["out"], "level": "INFO", "propagate": False}
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "asgi_oauth_guard")
    },
}
_STARTED = "Application startup complete."


@dataclass(frozen=True)
class ServedApp:
    """One example app under uvicorn: its base URL, its store, its workers and its log."""

    base: str
    store: str  # "memory" or "redis"
    workers: int
    log_path: Path

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    @property
    def callback_url(self) -> str:
        return self.url("/auth/callback")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def log_mark(self) -> int:
        """A position in the log: ``count_by_pid(..., since=mark)`` looks only at what comes after."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def count_by_pid(self, pattern: str, *, since: int = 0) -> dict[int, int]:
        """How many log lines match ``pattern`` in each worker process (lines start with the pid)."""
        counts: collections.Counter[int] = collections.Counter()
        matcher = re.compile(pattern)
        with self.log_path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        for line in text.splitlines():
            pid, _, rest = line.partition(" ")
            if pid.isdigit() and matcher.search(rest):
                counts[int(pid)] += 1
        return dict(counts)


def example_env(
    provider: InteropProvider, *, base: str, store_url: str, secret_key: str | None = None
) -> dict[str, str]:
    """The example app's environment (the example apps contract, examples/README.md), nothing inherited that could
    change it."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OAUTH_", "GUARD_", "DEMO_")) and k != "PUBLIC_URL"
    }
    return {
        **inherited,
        "OAUTH_ISSUER": provider.issuer,
        "OAUTH_CLIENT_ID": provider.client_id,
        "OAUTH_CLIENT_SECRET": provider.client_secret,
        "OAUTH_SCOPES": "openid email profile",
        "PUBLIC_URL": base,  # the callback is PUBLIC_URL/auth/callback: a registered loopback URI, any port
        "GUARD_SECRET_KEY": secret_key or secrets.token_urlsafe(32),
        "GUARD_STORE": store_url,
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@contextmanager
def served_example(
    provider: InteropProvider,
    *,
    store: str,
    store_url: str,
    workers: int,
    logs: Path,
    app: str = APP,
    secret_key: str | None = None,
) -> Iterator[ServedApp]:
    """Serve ``app`` with ``workers`` uvicorn processes until the block ends; fail if it logged a traceback.

    Two servers given one ``secret_key`` and store take each other's session cookies, like two hosts."""
    logs.mkdir(parents=True, exist_ok=True)
    log_config = logs / "log-config.json"
    log_config.write_text(json.dumps(_LOG_CONFIG))
    log_path = logs / "uvicorn.log"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        argv = [
            sys.executable,
            *("-m", "uvicorn", app, "--fd", str(sock.fileno()), "--workers", str(workers)),
            *("--log-config", str(log_config), "--timeout-graceful-shutdown", "2"),
            # uvicorn closes idle connections after 5 s by default, the very moment httpx (keepalive_expiry
            # 5 s) may reuse one, and bursts 5 s apart hit that race ("Server disconnected without sending
            # a response"): a harness artefact, so the server keeps them longer and the client expires them.
            *("--timeout-keep-alive", "60"),
        ]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=example_env(provider, base=base, store_url=store_url, secret_key=secret_key),
                pass_fds=[sock.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    served = ServedApp(base=base, store=store, workers=workers, log_path=log_path)
    try:
        _wait_ready(process, served)
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
    assert "Traceback" not in served.log(), f"the app logged a traceback:\n{served.log_tail(80)}"


def _wait_ready(process: subprocess.Popen[bytes], served: ServedApp) -> None:
    """Until /public answers and every worker has finished its startup (bounded by READY_TIMEOUT)."""
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(timeout=2) as client:
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"uvicorn exited ({process.returncode}) before serving {APP}:\n{served.log_tail()}",
                    pytrace=False,
                )
            try:
                up = client.get(served.url("/public")).status_code == 200
            except httpx.TransportError:
                up = False
            if up and served.log().count(_STARTED) >= served.workers:
                return
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{APP} was not serving with {served.workers} worker(s) within {READY_TIMEOUT:.0f} s:\n"
                    + served.log_tail(),
                    pytrace=False,
                )
            time.sleep(0.05)  # polling readiness, bounded by the deadline


# --------------------------------------------------------------------------------------------------------
# the scripted browser


class Browser:
    """A browser: one cookie jar for the app and the provider (cookies ignore ports), pages asked as HTML.

    The user "types their name" at the provider: the browser adds ``login_hint=<user>`` to the authorization
    request the app redirected it to, and the harness's headless interaction signs that account in. The
    guard's own parameters (state, PKCE challenge, nonce, redirect_uri) are left as they are.
    """

    def __init__(self, app: ServedApp, provider: InteropProvider, user: str) -> None:
        self.app = app
        self.provider = provider
        self.user = user
        self.client = httpx.AsyncClient(timeout=20, headers={"accept": "text/html"})

    async def aclose(self) -> None:
        await self.client.aclose()

    async def start_login(self, next_path: str = "/", *, login_url: str | None = None) -> str:
        """The app's login route (or ``login_url``, a re-login response's target), then the provider's
        redirects; returns the callback URL, not loaded."""
        if login_url is not None:
            response = await self.client.get(self.app.url(login_url))
        else:
            response = await self.client.get(self.app.url("/auth/login"), params={"next": next_path})
        assert response.status_code == 303, f"{response.status_code} from /auth/login: {response.text[:300]}"
        assert response.headers["cache-control"] == "no-store"
        url = httpx.URL(response.headers["location"])
        assert str(url).startswith(self.provider.url("/auth?")), url
        params = dict(url.params)
        assert params["redirect_uri"] == self.app.callback_url
        assert params["code_challenge_method"] == "S256" and params["code_challenge"]
        url = url.copy_merge_params({"login_hint": self.user})
        for _ in range(8):
            response = await self.client.get(url)
            assert response.is_redirect, f"{response.status_code} from {url}: {response.text[:500]}"
            location = urljoin(str(url), response.headers["location"])
            if location.split("?", 1)[0] == self.app.callback_url:
                return location
            url = httpx.URL(location)
        raise AssertionError(f"the provider never redirected to {self.app.callback_url} (last: {url})")

    async def load(self, url: str) -> httpx.Response:
        """A page load (no redirect followed)."""
        return await self.client.get(url)

    async def login(self, next_path: str = "/") -> httpx.Response:
        """A whole login; returns the callback's answer (a 303 to ``next_path`` with the session cookie)."""
        callback = await self.start_login(next_path)
        response = await self.load(callback)
        assert response.status_code == 303, f"callback answered {response.status_code}: {response.text[:300]}"
        assert response.headers["location"] == next_path
        return response

    async def api(self, path: str = "/api/me", *, at: ServedApp | None = None) -> httpx.Response:
        """An API call from the page (``fetch`` asking for JSON), with the browser's cookies; ``at``: another
        server of the same app (the cookie jar ignores ports)."""
        return await self.client.get((at or self.app).url(path), headers={"accept": "application/json"})

    async def me(self) -> dict[str, Any]:
        response = await self.api()
        assert response.status_code == 200, f"/api/me answered {response.status_code}: {response.text[:300]}"
        body: dict[str, Any] = response.json()
        return body


async def concurrently(count: int, request: Callable[[], Awaitable[httpx.Response]]) -> list[httpx.Response]:
    """``count`` calls of ``request`` started at once; their answers."""
    answers: list[httpx.Response] = []

    async def one() -> None:
        answers.append(await request())

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    return answers


def session_cookie(response: httpx.Response) -> str | None:
    """The value of the guard's session cookie that ``response`` sets ('' when it clears it)."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name.strip() == "guard_session":
            return rest.split(";", 1)[0]
    return None


def login_redirect(response: httpx.Response) -> dict[str, str]:
    """The query of a 303 to the app's login path (the browser's re-login response)."""
    assert response.status_code == 303, f"{response.status_code}: {response.text[:300]}"
    location = urlsplit(response.headers["location"])
    assert location.path == "/auth/login", response.headers["location"]
    return dict(httpx.URL(response.headers["location"]).params)


async def wait_until(moment: float) -> None:
    """Sleep until the wall clock reads ``moment`` (the guard's clock: when a token expires or falls due)."""
    delay = moment - time.time()
    if delay > 0:
        await anyio.sleep(delay)


# --------------------------------------------------------------------------------------------------------
# what the provider saw


class Journal:
    """The provider's record of token-endpoint and revocation traffic (``GET /admin/events``).

    Entries: ``request`` (``path``: ``/token`` or ``/token/revocation``, counted on arrival), ``grant.success``
    and ``grant.error`` (one per token request: ``grant_type``, ``sub``, ``error``, ``detail``),
    ``grant.revoked`` (``grant_id``; after reuse detection, RFC 7009 revocation).
    """

    def __init__(self, provider: InteropProvider) -> None:
        self.provider = provider

    async def mark(self) -> int:
        """A position: ``since(mark)`` returns what happens after this call."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self.provider.url("/admin/events"), params={"since": 2**50})
        response.raise_for_status()
        return int(response.json()["next"])

    async def since(self, mark: int) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self.provider.url("/admin/events"), params={"since": mark})
        response.raise_for_status()
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    async def grants(self, sub: str) -> list[dict[str, Any]]:
        """The user's grants that still exist, each with its live (unconsumed) refresh and access tokens."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self.provider.url("/admin/grants"), params={"sub": sub})
        response.raise_for_status()
        grants: list[dict[str, Any]] = response.json()["grants"]
        return grants


def select(events: list[dict[str, Any]], event: str, **fields: Any) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == event and all(e.get(k) == v for k, v in fields.items())]


def tally(events: list[dict[str, Any]]) -> dict[str, int]:
    """Counts for reports: token requests, exchanges, refreshes, invalid_grant answers, revocations."""
    return {
        "token_requests": len(select(events, "request", path="/token")),
        "code_exchanges": len(select(events, "grant.success", grant_type="authorization_code")),
        "refreshes": len(select(events, "grant.success", grant_type="refresh_token")),
        "grant_errors": len(select(events, "grant.error")),
        "invalid_grant": len(select(events, "grant.error", error="invalid_grant")),
        "revocation_requests": len(select(events, "request", path="/token/revocation")),
        "grants_revoked": len(select(events, "grant.revoked")),
    }
