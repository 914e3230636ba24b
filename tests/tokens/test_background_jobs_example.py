"""docs/background-jobs.md's example, run: a user signs in on the web app, a sync is queued, the worker
runs it as the user after their token expired (one refresh), and after the grant is revoked the job says
consent is needed."""

from __future__ import annotations

import httpx
import pytest

from asgi_oauth_guard import MemoryStore
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider
from examples.background_jobs import MemoryQueue, create_app, make_guard, work

from ..conftest import CLIENT_ID, CLIENT_SECRET, ISSUER, SECRET_KEY, BrowserFactory, login
from .conftest import SERVER_KEY

pytestmark = pytest.mark.anyio


async def test_the_example_worker_calls_the_api_as_the_user_and_reports_a_lost_grant(
    provider: OAuthTestProvider, clock: FakeClock, browser_factory: BrowserFactory
) -> None:
    store = MemoryStore(clock=clock)
    queue = MemoryQueue()
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
        queue.send.close()
        worker = make_guard(None, **settings)  # the worker process builds the same guard
        clock.advance(3600)  # the user is away; their access token has expired
        with queue.receive:
            done = await work(worker, aiter(queue.receive), http, f"{ISSUER}/userinfo")
        assert [job["sub"] for job in done] == ["alice", "alice"]
        assert provider.count(endpoint="token", grant_type="refresh_token") == 1

        provider.revoke_grants("alice")
        clock.advance(3600)
        again = MemoryQueue()
        await again.put("alice")
        again.send.close()
        with again.receive:
            lost = await work(worker, aiter(again.receive), http, f"{ISSUER}/userinfo")
        assert lost == [{"consent_required": "revoked"}]
