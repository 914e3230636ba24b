"""A refresh whose lock is lost while the provider is slow, against oidc-provider with refresh-token rotation.

The Starlette example runs as two uvicorn servers (two hosts: one process each, one secret key) on one
redis-server. The provider holds the refresh's token request (``/admin/hold-token``: a slow provider);
meanwhile the refresh lock disappears from Redis (a failover, or a lease that ran out) and twenty more
requests arrive at both servers. Two servers rather than one with two workers: requests in the holder's
process share its refresh in memory, and the kernel may hand every connection to that one process. The refresh token must
still be sent once: the others find it claimed and reuse the result. A second sending would make the
provider revoke the grant.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from ..redis_server import RedisServer
from .conftest import InteropProvider, running_oidc_provider, unique_user
from .guard_app import Browser, Journal, ServedApp, served_example, tally, wait_until

pytestmark = pytest.mark.anyio

ACCESS_TOKEN_TTL = 5
LEEWAY = ACCESS_TOKEN_TTL / 2
WAIT = 20.0  # bound on each poll of real processes below


@pytest.fixture(scope="module")
def slow_provider() -> Iterator[InteropProvider]:
    with running_oidc_provider(access_token_ttl=ACCESS_TOKEN_TTL) as provider:
        yield provider


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("lost-lock-redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hosts(
    slow_provider: InteropProvider, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServedApp, ServedApp]]:
    logs = tmp_path_factory.mktemp("lost-lock-app")
    key = secrets.token_urlsafe(32)

    def host(name: str) -> contextlib.AbstractContextManager[ServedApp]:
        return served_example(
            slow_provider,
            store="redis",
            store_url=redis_server.url,
            workers=1,
            logs=logs / name,
            secret_key=key,
        )

    with host("one") as one, host("two") as two:
        yield one, two


async def until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, f"{what}: not within {WAIT} s"
        await anyio.sleep(0.01)


async def test_a_lost_lock_on_a_slow_provider_never_sends_the_refresh_token_twice(
    hosts: tuple[ServedApp, ServedApp], slow_provider: InteropProvider, redis_server: RedisServer
) -> None:
    app, other = hosts
    journal = Journal(slow_provider)
    user = unique_user("slow")
    browser = Browser(app, slow_provider, user)
    redis = Redis.from_url(redis_server.url)
    admin = httpx.AsyncClient(timeout=5)
    try:
        await browser.login(next_path="/api/me")
        first = await browser.me()
        await wait_until(first["expires_at"] - LEEWAY + 0.05)
        mark, log_mark = await journal.mark(), other.log_mark()
        (await admin.post(slow_provider.url("/admin/hold-token"))).raise_for_status()

        async def held() -> bool:
            status = (await admin.get(slow_provider.url("/admin/hold-token"))).json()
            return bool(status["held"] >= 1)

        async def locks() -> list[bytes]:
            return [key async for key in redis.scan_iter(match="*lock:refresh:*")]

        answers: list[httpx.Response] = []

        async def call(at: ServedApp) -> None:
            answers.append(await browser.api(at=at))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, app)
            await until("the refresh reaches the provider", held)
            [lock] = await locks()
            await redis.delete(lock)  # the lock is lost while the token request is in flight
            for i in range(20):
                tg.start_soon(call, (app, other)[i % 2])

            async def retaken() -> bool:
                return bool(await locks())

            await until("another request takes the lock and finds the token claimed", retaken)
            (await admin.post(slow_provider.url("/admin/release-token"))).raise_for_status()

        statuses = sorted(a.status_code for a in answers)
        assert set(statuses) <= {200, 503} and len(statuses) == 21, statuses
        assert 200 in statuses
        figures = tally(await journal.since(mark))
        assert figures["token_requests"] == 1, figures  # the refresh token was sent once
        assert figures["invalid_grant"] == 0 and figures["grants_revoked"] == 0, figures
        [grant] = await journal.grants(user)
        assert grant["refresh_tokens"] == 1  # the rotated one, alive
        after = await browser.me()
        assert after["sub"] == user and after["expires_at"] > first["expires_at"]  # refreshed
        reused = other.count_by_pid("reused the result of a refresh", since=log_mark)
        assert sum(reused.values()) >= 1, other.log_tail()  # the other host found the token claimed
    finally:
        await admin.aclose()
        await redis.aclose()
        await browser.aclose()
