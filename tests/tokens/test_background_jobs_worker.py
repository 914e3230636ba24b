"""The example's worker as its own process (``python -m examples.background_jobs``): it takes a job the web
app queued in Redis and calls the API as the user, with the user's token from the shared store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from asgi_oauth_guard import store_from_url
from asgi_oauth_guard.testing import OAuthTestProvider
from examples.background_jobs import RedisQueue, create_app

from ..conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY, BrowserFactory, login
from ..served_provider import served_provider
from .conftest import SERVER_KEY

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
RESULT_TIMEOUT = 60  # seconds for the worker process to start and run the job


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio


@pytest.fixture
def provider() -> Iterator[OAuthTestProvider]:
    """The embedded provider over HTTP on a loopback port, for the worker process to reach."""
    with served_provider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as idp:
        yield idp


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "examples.background_jobs"],
            cwd=REPO,
            env={**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_the_worker_process_runs_a_queued_job_as_the_user(
    provider: OAuthTestProvider, browser_factory: BrowserFactory, redis_url: str, tmp_path: Path
) -> None:
    unique = f"bgw-{os.getpid()}-{time.monotonic_ns()}"
    env = {
        "OAUTH_ISSUER": provider.issuer,
        "OAUTH_CLIENT_ID": CLIENT_ID,
        "OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        "PUBLIC_URL": "http://app.test",
        "GUARD_SECRET_KEY": SECRET_KEY,
        "GUARD_SERVER_KEY": SERVER_KEY,
        "GUARD_STORE": redis_url,
        "GUARD_KEY_PREFIX": f"{unique}:",
        "JOBS_REDIS": redis_url,
        "JOBS_QUEUE": f"{unique}:jobs",
    }
    store = store_from_url(redis_url, key_prefix=f"{unique}:")
    queue = RedisQueue(redis_url, name=f"{unique}:jobs")
    redis = Redis.from_url(redis_url)
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        async with httpx.AsyncClient() as http:
            web = create_app(
                queue,
                issuer=provider.issuer,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                secret_key=SECRET_KEY,
                server_keys=[SERVER_KEY],
                public_url="http://app.test",
                store=store,
                http_client=http,
            )
            browser = browser_factory(web)
            await login(browser, provider)
            assert (await browser.post("/jobs/sync")).status_code == 202
            deadline = time.monotonic() + RESULT_TIMEOUT
            while (done := await redis.lpop(f"{unique}:jobs:done")) is None:
                assert worker.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, "the worker ran no job: " + log.read_text(
                    errors="replace"
                )
                await anyio.sleep(0.05)  # the worker is another process: poll its result, bounded
            assert json.loads(done)["sub"] == "alice"
            assert worker.poll() is None  # it goes on, waiting for the next job
    finally:
        worker.terminate()
        worker.wait(10)
        await redis.aclose()
        await queue.aclose()
        await store.aclose()  # type: ignore[attr-defined]
