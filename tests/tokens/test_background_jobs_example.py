"""docs/background-jobs.md's example, run: a user signs in on the web app, a sync is queued in Redis, the
worker (another guard on the same store, as another process builds it) runs it as the user after their
token expired (one refresh), and after the grant is revoked the job says consent is needed."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from asgi_oauth_guard import store_from_url
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider
from examples.background_jobs import RedisQueue, create_app, make_guard, work

from ..conftest import CLIENT_ID, CLIENT_SECRET, ISSUER, SECRET_KEY, BrowserFactory, login
from .conftest import SERVER_KEY

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio


async def test_the_example_worker_calls_the_api_as_the_user_and_reports_a_lost_grant(
    provider: OAuthTestProvider, clock: FakeClock, browser_factory: BrowserFactory, redis_url: str
) -> None:
    unique = f"bg-{os.getpid()}-{time.monotonic_ns()}"
    store = store_from_url(redis_url, key_prefix=f"{unique}:")
    queue = RedisQueue(redis_url, name=f"{unique}:jobs")
    try:
        async with httpx.AsyncClient(transport=provider.transport()) as http:
            settings = {
                "issuer": ISSUER,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "secret_key": SECRET_KEY,
                "server_keys": [SERVER_KEY],
                "public_url": "http://app.test",
                "store": store,
                "http_client": http,
                "clock": clock,
            }
            web = create_app(queue, **settings)
            browser = browser_factory(web)
            await login(browser, provider)
            for _ in range(2):
                assert (await browser.post("/jobs/sync")).status_code == 202
            worker = make_guard(None, **settings)  # the worker process builds the same guard
            clock.advance(3600)  # the user is away; their access token has expired
            done = await work(worker, queue.jobs(drain=True), http, f"{ISSUER}/userinfo")
            assert [job["sub"] for job in done] == ["alice", "alice"]
            assert provider.count(endpoint="token", grant_type="refresh_token") == 1

            provider.revoke_grants("alice")
            clock.advance(3600)
            await queue.put("alice")
            lost = await work(worker, queue.jobs(drain=True), http, f"{ISSUER}/userinfo")
            assert lost == [{"consent_required": "revoked"}]
    finally:
        await queue.aclose()
        await store.aclose()  # type: ignore[attr-defined]
