"""Background jobs with the token manager (docs/background-jobs.md): a web app whose users sign in with
offline access, and a plain asyncio worker that calls an API as each user, from a Redis queue.

    uvicorn examples.background_jobs:app          # the web app: signs users in, queues a sync per user
    python -m examples.background_jobs            # the worker: one or more processes, on the same store

Settings from the environment: ``OAUTH_ISSUER``, ``OAUTH_CLIENT_ID``, ``OAUTH_CLIENT_SECRET``,
``PUBLIC_URL``, ``GUARD_SECRET_KEY``, ``GUARD_SERVER_KEY`` (the server key ring's key: every process needs
it), ``GUARD_STORE`` and ``JOBS_REDIS`` (the queue; a ``redis://`` URL).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_oauth_guard import (
    ConsentRequired,
    OAuthGuard,
    OfflineAccess,
    ProviderUnavailable,
    TokenManager,
    current_identity,
    store_from_url,
)

logger = logging.getLogger("examples.background_jobs")
QUEUE = "jobs:sync"


def make_guard(app: Any, **overrides: Any) -> OAuthGuard:
    """The one guard both the web app and the worker build: the same settings, the same keys."""
    settings: dict[str, Any] = {
        "issuer": os.environ.get("OAUTH_ISSUER"),
        "client_id": os.environ.get("OAUTH_CLIENT_ID", ""),
        "client_secret": os.environ.get("OAUTH_CLIENT_SECRET", ""),
        "public_url": os.environ.get("PUBLIC_URL"),
        "secret_key": os.environ.get("GUARD_SECRET_KEY", ""),
        "server_keys": [os.environ.get("GUARD_SERVER_KEY", "")],
        # Google: OfflineAccess(scopes=(), authorize_params={"access_type": "offline"})
        "offline": OfflineAccess(),
        "require_login": ["/jobs"],
    }
    if "store" not in overrides:
        settings["store"] = store_from_url(os.environ.get("GUARD_STORE", "memory://"))
    settings.update(overrides)
    return OAuthGuard(app, **settings)


async def queue_sync(request: Request) -> JSONResponse:
    """The web side: queue a sync of the signed-in user's data, to run without them."""
    identity = current_identity()
    assert identity is not None  # /jobs needs a signed-in user
    assert identity.sub is not None
    await request.app.state.queue.put(identity.sub)
    return JSONResponse({"queued": identity.sub}, status_code=202)


async def sync_user(tokens: TokenManager, http: httpx.AsyncClient, sub: str, url: str) -> dict[str, Any]:
    """One job: call the API as the user. The token manager refreshes their token when due, once across
    every worker and the user's own browser; the Auth retries once if the API refuses the token."""
    response = await http.get(url, auth=tokens.user_auth(sub))
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


async def work(guard: OAuthGuard, jobs: AsyncIterator[str], http: httpx.AsyncClient, url: str) -> list[Any]:
    """The worker loop: one job per user id from the queue; what each job did, for the caller."""
    done: list[Any] = []
    async with guard.tokens() as tokens:
        async for sub in jobs:
            try:
                done.append(await sync_user(tokens, http, sub, url))
            except ConsentRequired as exc:
                # The grant is gone (revoked, expired): the app tells the user (the offline_grant_lost
                # event did too); their next sign-in asks for consent and the next job works again.
                logger.warning("user %s must sign in again: %s", exc.sub, exc.reason)
                done.append({"consent_required": exc.reason})
            except ProviderUnavailable:
                done.append({"retry_later": sub})  # an outage: queue it again later
    return done


class MemoryQueue:
    """The queue between the two sides in one process (the demo and the tests); Redis in production."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[str](100)

    async def put(self, sub: str) -> None:
        await self.send.send(sub)


class RedisQueue:
    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis

        self.redis = Redis.from_url(url)

    async def put(self, sub: str) -> None:
        await self.redis.rpush(QUEUE, sub)

    async def jobs(self) -> AsyncIterator[str]:
        while True:
            item = await self.redis.blpop([QUEUE], timeout=0)
            if item is not None:
                yield item[1].decode()


def create_app(queue: Any, **overrides: Any) -> OAuthGuard:
    web = Starlette(routes=[Route("/jobs/sync", queue_sync, methods=["POST"])])
    web.state.queue = queue
    return make_guard(web, **overrides)


async def main() -> None:  # pragma: no cover - the worker process
    queue = RedisQueue(os.environ["JOBS_REDIS"])
    guard = make_guard(None)
    userinfo = (await guard.client.provider()).userinfo_endpoint or ""
    async with httpx.AsyncClient() as http:
        await work(guard, queue.jobs(), http, userinfo)


app = create_app(RedisQueue(os.environ["JOBS_REDIS"])) if os.environ.get("JOBS_REDIS") else None

if __name__ == "__main__":  # pragma: no cover
    anyio.run(main)
