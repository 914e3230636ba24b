"""Sign-out in one worker process while another worker's refresh of the same session is in flight, on one
Redis: the session stays gone, the copied cookie gets the re-login response, and the refresh token the
refresh got is revoked at the provider. Real processes, real sockets, real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from .conftest import PUBLIC_URL, Cluster, Idp
from .test_workers import HTML, eventually, login, me, until_refresh_is_due

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.redis]

# Long enough that a refresh answer held at the provider is not cut by the worker's own timeout while the
# test signs out in the other worker, even on a loaded machine; the lease is 2 * 10 + 5 = 25 s.
HTTP_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("sign-out"), workers=2, http_timeout=HTTP_TIMEOUT)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


class Held:
    """The provider process holding back the answer to the next token call (after acting on it)."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self._http = http
        self._url = url + "/__test__"

    async def arm(self) -> None:
        (await self._http.post(self._url + "/hold")).raise_for_status()

    async def status(self) -> dict[str, Any]:
        status: dict[str, Any] = (await self._http.get(self._url + "/hold")).json()
        return status

    async def release(self) -> None:
        (await self._http.post(self._url + "/release")).raise_for_status()

    async def revoked(self) -> list[str]:
        calls: list[dict[str, Any]] = (await self._http.get(self._url + "/calls")).json()
        return [c["token_sha256"] for c in calls if c["endpoint"] == "revoke"]


async def signed_out_everywhere(http: httpx.AsyncClient, cluster: Cluster, cookie: str, redis: Redis) -> None:
    for worker in cluster.workers:
        api = await me(http, worker.url, cookie)
        assert api.status_code == 401 and api.json()["reason"] == "session_expired", api.text
        page = await http.get(worker.url + "/", headers={**HTML, "cookie": cookie})
        assert page.status_code == 303 and "/auth/login" in page.headers["location"]
    assert [key async for key in redis.scan_iter(match=cluster.key_prefix + "s:*")] == []


async def sign_out(http: httpx.AsyncClient, url: str, cookie: str) -> httpx.Response:
    return await http.post(url + "/auth/logout", headers={**HTML, "cookie": cookie, "origin": PUBLIC_URL})


async def due_for_refresh(http: httpx.AsyncClient, cluster: Cluster) -> tuple[Held, str]:
    """A session signed in at worker 0 whose token is due, and the provider armed to hold its next answer."""
    held = Held(http, cluster.provider.url)
    cookie = await login(http, cluster, worker=0)
    await until_refresh_is_due((await me(http, cluster.workers[0].url, cookie)).json())
    await held.arm()
    return held, cookie


async def test_sign_out_in_one_worker_waits_for_the_refresh_in_another(
    running: Cluster, http: httpx.AsyncClient, idp: Idp, redis: Redis
) -> None:
    held, cookie = await due_for_refresh(http, running)
    answers: dict[str, httpx.Response] = {}

    async def refreshing() -> None:
        answers["api"] = await me(http, running.workers[0].url, cookie)

    async def signing_out() -> None:
        answers["logout"] = await sign_out(http, running.workers[1].url, cookie)

    async with anyio.create_task_group() as tg:
        tg.start_soon(refreshing)
        await eventually("the provider holds its answer", lambda: _held(held))
        tg.start_soon(signing_out)  # it waits for the refresh lock that worker 0 holds
        await held.release()

    status = await held.status()
    assert answers["logout"].status_code == 303, running.logs()
    assert answers["api"].status_code in (200, 401), answers["api"].text
    assert status["refresh_token_sha256"] in await held.revoked()  # the newest refresh token
    assert await idp.count(error="invalid_grant") == 0
    await signed_out_everywhere(http, running, cookie, redis)


async def test_a_refresh_that_lost_its_lock_never_brings_a_signed_out_session_back(
    running: Cluster, http: httpx.AsyncClient, idp: Idp, redis: Redis
) -> None:
    held, cookie = await due_for_refresh(http, running)
    answers: dict[str, httpx.Response] = {}

    async def refreshing() -> None:
        answers["api"] = await me(http, running.workers[0].url, cookie)

    async with anyio.create_task_group() as tg:
        tg.start_soon(refreshing)
        await eventually("the provider holds the refresh's answer", lambda: _held(held))
        # The lock is lost (a failover, a lease run out): sign-out in worker 1 cannot wait for the refresh.
        locks = [key async for key in redis.scan_iter(match=running.key_prefix + "lock:refresh:*")]
        assert len(locks) == 1
        await redis.delete(*locks)
        out = await sign_out(http, running.workers[1].url, cookie)
        assert out.status_code == 303, running.logs()
        assert [key async for key in redis.scan_iter(match=running.key_prefix + "s:*")] == []
        await held.release()

    late = answers["api"]
    assert late.status_code == 401 and late.json()["reason"] == "session_expired", late.text
    status = await held.status()
    revoked = await held.revoked()
    assert len(revoked) == 2 and revoked[-1] == status["refresh_token_sha256"]  # the late one revoked its own
    await signed_out_everywhere(http, running, cookie, redis)


async def _held(held: Held) -> bool:
    return bool((await held.status())["held"] == 1)
