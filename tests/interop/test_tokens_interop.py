"""The token manager against panva's oidc-provider with refresh-token rotation and reuse detection.

Four worker processes and a job runner (five processes on one Redis) call ``for_user`` for one user 100
times at once when the access token is due, while the user's browser makes requests through a guard of its
own: the provider sees one refresh, no refresh token twice, and the grant stays alive. Then the grant is
revoked at the provider: the job gets ``ConsentRequired``, one event says so, the next sign-in asks for
consent, and the next job gets a token.

Each process's clock runs ``OFFSET`` seconds ahead, so the sign-in's token is due at once for them (and
still valid at the provider) without the test waiting for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx
import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from redis.asyncio import Redis

from asgi_oauth_guard import (
    ConfigurationError,
    ConsentRequired,
    GuardEvent,
    OAuthGuard,
    OfflineAccess,
    RedisStore,
)
from asgi_oauth_guard._resources import audience

from ..conftest import SECRET_KEY, inner_app
from .conftest import (
    REPO,
    InteropProvider,
    authorize,
    exchange_code,
    refresh,
    running_oidc_provider,
    token_request,
    unique_user,
)
from .guard_app import Journal, select

ACCESS_TOKEN_TTL = 60  # the guard refreshes at half of it (its leeway is capped there)
OFFSET = 40.0  # past the half, well before the end: due for the guard, valid at the provider
PUBLIC_URL = "http://127.0.0.1:8765"
SERVER_KEYS = ["interop-server-key-0123456789abcdef012345"]
PROCESSES = {"worker-1": 20, "worker-2": 20, "worker-3": 20, "worker-4": 20, "job-runner": 20}
START_TIMEOUT = 60.0


API_A = "https://api-a.example.test"
API_B = "https://api-b.example.test"


@pytest.fixture(scope="module")
def jobs_provider() -> Iterator[InteropProvider]:
    env = {"RESOURCES": f"{API_A},{API_B}", "CLIENT_CREDENTIALS": "1"}
    with running_oidc_provider(access_token_ttl=ACCESS_TOKEN_TTL, extra_env=env) as running:
        yield running


PREFIX = f"tokens-{os.getpid()}:"


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Any]:
    store = RedisStore.from_url(redis_url, key_prefix=PREFIX, socket_timeout=15.0)
    yield store
    await store.aclose()


def make_guard(provider: InteropProvider, store: Any, *, offset: float = 0.0, **settings: Any) -> OAuthGuard:
    settings.setdefault("offline", OfflineAccess())
    return OAuthGuard(
        inner_app(),
        issuer=provider.issuer,
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        secret_key=SECRET_KEY,
        server_keys=SERVER_KEYS,
        store=store,
        public_url=PUBLIC_URL,
        require_login=["/api/"],
        clock=lambda: time.time() + offset,
        **settings,
    )


async def sign_in(guard: OAuthGuard, browser: httpx.AsyncClient, idp: httpx.AsyncClient) -> dict[str, str]:
    """The login walk: the guard's login route, the provider's headless interaction, the callback. Returns
    the authorization request's parameters."""
    answer = await browser.get("/auth/login", params={"next": "/"})
    assert answer.status_code == 303, answer.text
    url = answer.headers["location"]
    asked = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    for _ in range(8):
        if url.startswith(PUBLIC_URL):
            break
        hop = await idp.get(url)
        assert hop.is_redirect, f"{hop.status_code}: {hop.text[:300]}"
        url = urljoin(url, hop.headers["location"])
    callback = await browser.get(url)
    assert callback.status_code == 303, callback.text
    return asked


async def redis_dump(url: str) -> bytes:
    """Every value under this test's key prefix, as bytes."""
    redis = Redis.from_url(url)
    try:
        chunks: list[bytes] = []
        async for key in redis.scan_iter(match=f"{PREFIX}*"):
            kind = (await redis.type(key)).decode()
            if kind == "string":
                chunks.append(await redis.get(key) or b"")
            elif kind == "zset":
                chunks.extend(await redis.zrange(key, 0, -1))
            elif kind == "hash":
                chunks.extend(v for pair in (await redis.hgetall(key)).items() for v in pair)
            elif kind == "set":
                chunks.extend(await redis.smembers(key))
        return b"\n".join(chunks)
    finally:
        await redis.aclose()


def spawn(name: str, calls: int, cfg: dict[str, Any], tmp: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "TOKEN_WORKER": json.dumps({**cfg, "calls": calls, "ready": str(tmp / f"{name}.ready")}),
    }
    with (tmp / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.interop.token_worker"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )


@pytest.mark.anyio
async def test_five_processes_and_the_browser_at_expiry_share_one_refresh_and_a_lost_grant_comes_back(
    jobs_provider: InteropProvider, store: Any, redis_url: str, tmp_path: Path
) -> None:
    provider = jobs_provider
    sub = unique_user("jobs")
    events: list[GuardEvent] = []
    web = make_guard(provider, store, authorize_params={"login_hint": sub})
    due = make_guard(provider, store, offset=OFFSET, on_event=events.append)  # the browser's other worker
    later = make_guard(provider, store, offset=2 * OFFSET, on_event=events.append)
    try:
        await run(provider, web, due, later, events, sub, redis_url, tmp_path)
    finally:
        for guard in (web, due, later):
            await guard.aclose()


async def run(
    provider: InteropProvider,
    web: OAuthGuard,
    due: OAuthGuard,
    later: OAuthGuard,
    events: list[GuardEvent],
    sub: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(web), base_url=PUBLIC_URL) as browser,
        httpx.AsyncClient(timeout=10) as idp,
    ):
        asked = await sign_in(web, browser, idp)
        assert "offline_access" in asked["scope"].split() and "prompt" not in asked
        journal = Journal(provider)
        mark = await journal.mark()

        cfg = {
            "issuer": provider.issuer,
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,
            "secret_key": SECRET_KEY,
            "server_keys": SERVER_KEYS,
            "store": redis_url,
            "key_prefix": PREFIX,
            "public_url": PUBLIC_URL,
            "offset": OFFSET,
            "sub": sub,
            "go": str(tmp_path / "go"),
        }
        processes = {name: spawn(name, calls, cfg, tmp_path) for name, calls in PROCESSES.items()}
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not all((tmp_path / f"{name}.ready").exists() for name in processes):
                for name, process in processes.items():
                    assert process.poll() is None, (tmp_path / f"{name}.log").read_text()
                assert time.monotonic() < deadline, "the worker processes did not start"
                await anyio.sleep(0.05)
            pages: list[httpx.Response] = []
            in_browser = httpx.AsyncClient(
                transport=httpx.ASGITransport(due), base_url=PUBLIC_URL, cookies=browser.cookies
            )

            async def page() -> None:
                pages.append(await in_browser.get("/api/me"))

            (tmp_path / "go").touch()
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(page)
            outputs = {}
            for name, process in processes.items():
                out, _ = await anyio.to_thread.run_sync(lambda p=process: p.communicate(timeout=60))
                assert process.stdout is not None
                process.stdout.close()
                assert process.returncode == 0, (tmp_path / f"{name}.log").read_text()
                outputs[name] = json.loads(out)
            await in_browser.aclose()
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
                if process.stdout is not None and not process.stdout.closed:
                    process.stdout.close()

        tokens = [token for got in outputs.values() for token in got]
        assert len(tokens) == 100
        happened = await journal.since(mark)
        refreshes = select(happened, "grant.success", grant_type="refresh_token")
        assert len(refreshes) == 1, happened
        assert select(happened, "grant.error") == []  # no refresh token presented twice
        assert [p.status_code for p in pages] == [200] * 10
        assert len(set(tokens) | {p.json()["access_token"] for p in pages}) == 1
        grants = await journal.grants(sub)
        assert len(grants) == 1 and grants[0]["refresh_tokens"] == 1  # alive, one current refresh token
        # A dump of the store (every key the guard wrote) holds none of these tokens in the clear.
        dump = await redis_dump(redis_url)
        assert dump and not any(token.encode() in dump for token in set(tokens))

        # The grant is revoked at the provider (a password change): the next job learns it, once.
        await provider.arevoke_grants(sub)
        async with later.tokens() as tm:
            for _ in range(2):
                with pytest.raises(ConsentRequired) as caught:
                    await tm.for_user(sub)
                assert caught.value.reason == "revoked"
        assert [e.detail for e in events if e.kind == "offline_grant_lost"] == ["revoked"]
        # The user's next sign-in (the same browser) asks for consent and restores the grant.
        asked = await sign_in(web, browser, idp)
        assert asked.get("prompt") == "consent"
        async with later.tokens() as tm:
            token = await tm.for_user(sub)
        assert token.access_token
        assert len(await journal.grants(sub)) == 1


async def api_accepts(provider: InteropProvider, token: str, *, api: str) -> bool:
    """What an API's audience check does with a JWT access token: the provider's signature, then ``aud``
    is this API, then not expired."""
    async with httpx.AsyncClient(timeout=5) as client:
        jwks_uri = (await client.get(provider.url("/.well-known/openid-configuration"))).json()["jwks_uri"]
        keys = KeySet.import_key_set((await client.get(jwks_uri)).json())
    try:
        claims = jwt.decode(token, keys).claims
    except (JoseError, ValueError):
        return False
    aud = claims.get("aud")
    return (aud == api or (isinstance(aud, list) and api in aud)) and claims.get("exp", 0) > time.time()


@pytest.mark.anyio
async def test_a_token_for_api_a_is_refused_by_api_b_and_client_credentials_are_shared_per_api(
    jobs_provider: InteropProvider, store: Any
) -> None:
    provider = jobs_provider
    sub = unique_user("api")
    # RFC 8707 at oidc-provider: the resources are granted at sign-in, then asked for at each refresh.
    web = make_guard(
        provider,
        store,
        scopes=["openid", "profile", "api:read"],
        authorize_params={"login_hint": sub},
        offline=OfflineAccess(resources=(API_A, API_B)),
    )
    journal = Journal(provider)
    try:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(web), base_url=PUBLIC_URL) as browser,
            httpx.AsyncClient(timeout=10) as idp,
        ):
            asked = await sign_in(web, browser, idp)
            assert asked["resource"] == API_A  # and API_B: one parameter each
        async with web.tokens() as tm:
            for_a = await tm.for_user(sub, resource=API_A)
            assert (await tm.for_user(sub, resource=API_A)).access_token == for_a.access_token  # cached
            for_b = await tm.for_user(sub, resource=API_B)
            default = await tm.for_user(sub)
            renewed = await tm.for_user(sub, rejected=default.access_token)  # three rotations later: alive
            assert renewed.access_token != default.access_token
            with pytest.raises(ConfigurationError, match="OfflineAccess"):
                await tm.for_user(sub, resource="https://api-c.example.test")  # never sent to the provider

            mark = await journal.mark()
            service: list[str] = []

            async def service_call() -> None:
                token = await tm.client_credentials(scopes=["api:read"], resource=API_B)
                service.append(token.access_token)

            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(service_call)
            service_a = await tm.client_credentials(scopes=["api:read"], resource=API_A)
        assert audience(default.access_token) is None  # the default token is opaque (for userinfo)
        assert await api_accepts(provider, for_a.access_token, api=API_A)
        assert not await api_accepts(provider, for_a.access_token, api=API_B)
        assert await api_accepts(provider, for_b.access_token, api=API_B)
        assert not await api_accepts(provider, for_b.access_token, api=API_A)
        assert len(set(service)) == 1
        assert await api_accepts(provider, service[0], api=API_B)
        assert not await api_accepts(provider, service[0], api=API_A)
        assert await api_accepts(provider, service_a.access_token, api=API_A)
        happened = await journal.since(mark)
        assert len(select(happened, "grant.success", grant_type="client_credentials")) == 2
        grants = await journal.grants(sub)
        assert len(grants) == 1 and grants[0]["refresh_tokens"] == 1
    finally:
        await web.aclose()


@pytest.mark.anyio
async def test_fact_oidc_provider_spends_the_refresh_token_before_it_checks_the_resource(
    jobs_provider: InteropProvider,
) -> None:
    """Why OfflineAccess(resources=...) must list every API: a refresh for a resource the grant does not
    cover is refused (invalid_target) after the provider consumed the refresh token, so the next refresh
    with it is a reuse, and the grant is revoked."""
    provider = jobs_provider
    async with httpx.AsyncClient(timeout=10) as client:
        authorization = await authorize(
            client,
            provider,
            redirect_uri="http://127.0.0.1/callback",
            scope="openid offline_access api:read",
            login_hint=unique_user("fact"),
            resource=API_A,
        )
        tokens = (await exchange_code(client, provider, authorization)).json()
        refused = await token_request(
            client,
            provider,
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "resource": API_B},
        )
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_target"
        again = await refresh(client, provider, tokens["refresh_token"])
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
