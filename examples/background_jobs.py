"""Background jobs with the token manager (docs/background-jobs.md): a web app whose users sign in with
offline access, and a plain asyncio worker that calls an API as each user, from a Redis queue.

    uvicorn examples.background_jobs:app          # the web app: signs users in, queues a sync per user
    python -m examples.background_jobs            # the worker: one or more processes, on the same store

Settings from the environment: ``OAUTH_ISSUER``, ``OAUTH_CLIENT_ID``, ``OAUTH_CLIENT_SECRET``,
``PUBLIC_URL``, ``GUARD_SECRET_KEY``, ``GUARD_SERVER_KEY`` (the server key ring's key: every process needs
it), ``GUARD_STORE`` (and ``GUARD_KEY_PREFIX``), ``JOBS_REDIS`` (the queue; a ``redis://`` URL) and
``JOBS_QUEUE`` (its name).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
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
    StoreUnavailable,
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
        # Google: providers=[providers.google(..., offline=OfflineAccess())]
        "offline": OfflineAccess(),
        "require_login": ["/jobs"],
    }
    if "store" not in overrides:
        url = os.environ.get("GUARD_STORE", "memory://")
        prefix = os.environ.get("GUARD_KEY_PREFIX", "guard:")
        settings["store"] = store_from_url(url, key_prefix=prefix)
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


async def work(
    guard: OAuthGuard,
    jobs: AsyncIterator[str],
    http: httpx.AsyncClient,
    url: str,
    report: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """The worker loop: one job per user id from the queue; what each job did (also to ``report``)."""
    done: list[dict[str, Any]] = []
    async with guard.tokens() as tokens:
        async for sub in jobs:
            try:
                result = await sync_user(tokens, http, sub, url)
            except ConsentRequired as exc:
                # The grant is gone (revoked, expired): the app tells the user (the offline_grant_lost
                # event did too); their next sign-in asks for consent and the next job works again.
                logger.warning("user %s must sign in again: %s", exc.sub, exc.reason)
                result = {"consent_required": exc.reason}
            except (ProviderUnavailable, StoreUnavailable):
                result = {"retry_later": sub}  # an outage: queue it again later
            done.append(result)
            if report is not None:
                await report(result)
    return done


class MemoryQueue:
    """The queue between the two sides in one process (the demo and the tests); Redis in production."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[str](100)

    async def put(self, sub: str) -> None:
        await self.send.send(sub)


class RedisQueue:
    """The queue between the web app and the workers: a Redis list (RPUSH, BLPOP)."""

    def __init__(self, url: str, *, name: str = QUEUE) -> None:
        from redis.asyncio import Redis

        self.redis = Redis.from_url(url)
        self.name = name

    async def put(self, sub: str) -> None:
        await self.redis.rpush(self.name, sub)

    async def jobs(self, *, drain: bool = False) -> AsyncIterator[str]:
        """The user ids queued, as they come; ``drain``: only those queued now (for a one-off run)."""
        while True:
            if drain:
                item = await self.redis.lpop(self.name)
                if item is None:
                    return
                yield _text(item)
                continue
            popped = await self.redis.blpop([self.name], timeout=0)
            if popped is not None:
                yield _text(popped[1])

    async def report(self, result: dict[str, Any]) -> None:
        """What a job did, for the app (a list beside the queue)."""
        await self.redis.rpush(f"{self.name}:done", json.dumps(result))

    async def aclose(self) -> None:
        await self.redis.aclose()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def create_app(queue: Any, **overrides: Any) -> OAuthGuard:
    web = Starlette(routes=[Route("/jobs/sync", queue_sync, methods=["POST"])])
    web.state.queue = queue
    return make_guard(web, **overrides)


async def main() -> None:
    """The worker process: jobs from the Redis queue until it is stopped. The API it calls as each user
    is the provider's userinfo endpoint, for the demo."""
    queue = RedisQueue(os.environ["JOBS_REDIS"], name=os.environ.get("JOBS_QUEUE", QUEUE))
    guard = make_guard(None)
    userinfo = (await guard.client.endpoints()).userinfo_endpoint or ""
    try:
        async with httpx.AsyncClient() as http:
            await work(guard, queue.jobs(), http, userinfo, report=queue.report)
    finally:
        await queue.aclose()
        await guard.aclose()


def _app() -> OAuthGuard | None:
    url = os.environ.get("JOBS_REDIS")
    return create_app(RedisQueue(url, name=os.environ.get("JOBS_QUEUE", QUEUE))) if url else None


app = _app()

if __name__ == "__main__":
    anyio.run(main)
