"""Four worker processes on one store: exactly-once exchange and one refresh across processes, a worker
killed inside the refresh lock, and a Redis restart. Real sockets, real processes, real servers: each test
runs on a Redis, a Redis Cluster, a Sentinel-managed Redis and PostgreSQL (the restart on Redis only)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx
import pytest

from .conftest import ACCESS_TOKEN_TTL, BEHIND_PROXY, PUBLIC_URL, Cluster, Idp, Inspector

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.redis]

T = TypeVar("T")
HTML = {"accept": "text/html", **BEHIND_PROXY}
JSON = {"accept": "application/json"}


def set_cookie(response: httpx.Response, name: str) -> str | None:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith(name + "="):
            return value.split(";", 1)[0]
    return None


async def start_login(http: httpx.AsyncClient, worker_url: str) -> tuple[str, str]:
    """The browser's binding cookie and the callback (path and query) the provider sends it back to."""
    response = await http.get(worker_url + "/auth/login", params={"next": "/api/me"}, headers=HTML)
    assert response.status_code == 303, response.text
    binding = set_cookie(response, "guard_session_tx")
    assert binding is not None
    authorized = await http.get(response.headers["location"])
    assert authorized.status_code == 302, authorized.text
    callback = authorized.headers["location"]
    assert callback.startswith(PUBLIC_URL + "/auth/callback?")
    return binding, callback.removeprefix(PUBLIC_URL)


async def login(http: httpx.AsyncClient, cluster: Cluster, worker: int) -> str:
    binding, callback = await start_login(http, cluster.workers[worker].url)
    done = await http.get(cluster.workers[worker].url + callback, headers={**HTML, "cookie": binding})
    assert done.status_code == 303, done.text
    cookie = set_cookie(done, "guard_session")
    assert cookie is not None
    return cookie


async def me(http: httpx.AsyncClient, url: str, cookie: str) -> httpx.Response:
    return await http.get(url + "/api/me", headers={**JSON, "cookie": cookie})


async def until_refresh_is_due(first: dict[str, Any]) -> None:
    """Wait for the moment the guard sees the token as due: half its life (the leeway is larger)."""
    due = first["expires_at"] - ACCESS_TOKEN_TTL / 2 + 0.05
    await anyio.sleep(max(0.0, due - time.time()))


async def eventually(what: str, check: Callable[[], Awaitable[T]], within: float = 5.0) -> T:
    deadline = time.monotonic() + within
    while not (value := await check()):
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await anyio.sleep(0.01)
    return value


async def test_40_duplicate_callbacks_over_4_workers_exchange_the_code_once(
    running: Cluster, http: httpx.AsyncClient, idp: Idp
) -> None:
    binding, callback = await start_login(http, running.workers[0].url)
    await idp.slow_next_token_call(0.5)  # the exchange is still in flight when the duplicates arrive
    responses: dict[int, httpx.Response] = {}

    async def load(i: int) -> None:
        url = running.workers[i % len(running.workers)].url + callback
        responses[i] = await http.get(url, headers={**HTML, "cookie": binding})

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(load, i)

    assert await idp.count(grant_type="authorization_code") == 1, running.logs()
    assert [r.status_code for r in responses.values()] == [303] * 40
    assert {r.headers["location"] for r in responses.values()} == {"/api/me"}
    cookies = {set_cookie(r, "guard_session") for r in responses.values()}
    assert len(cookies) == 1 and None not in cookies
    cookie = cookies.pop()
    assert cookie is not None
    for worker in running.workers:
        response = await me(http, worker.url, cookie)
        assert response.status_code == 200 and response.json()["sub"] == "alice"


async def test_100_requests_of_an_expiring_session_over_4_workers_refresh_once(
    running: Cluster, http: httpx.AsyncClient, idp: Idp
) -> None:
    cookie = await login(http, running, worker=1)
    first = (await me(http, running.workers[1].url, cookie)).json()
    await until_refresh_is_due(first)
    await idp.slow_next_token_call(0.3)  # every request arrives while the refresh is in flight
    answers: list[httpx.Response] = []

    async def request(i: int) -> None:
        answers.append(await me(http, running.workers[i % len(running.workers)].url, cookie))

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(request, i)

    assert [a.status_code for a in answers] == [200] * 100, running.logs()
    tokens = {a.json()["access_token"] for a in answers}
    assert len(tokens) == 1 and first["access_token"] not in tokens
    assert {a.json()["refreshes"] for a in answers} == {1}
    assert len({a.json()["worker"] for a in answers}) == len(running.workers)
    assert await idp.count(grant_type="refresh_token") == 1
    assert await idp.count(error="invalid_grant") == 0


async def test_a_worker_killed_inside_the_refresh_lock_delays_but_never_breaks_the_session(
    running: Cluster, http: httpx.AsyncClient, idp: Idp, inspector: Inspector
) -> None:
    cookie = await login(http, running, worker=1)
    first = (await me(http, running.workers[1].url, cookie)).json()
    await until_refresh_is_due(first)
    await idp.stall_next_token_call()
    victim, others = running.workers[0], running.workers[1:]
    lost: list[BaseException] = []

    async def doomed() -> None:
        try:
            await me(http, victim.url, cookie)
        except httpx.TransportError as exc:
            lost.append(exc)

    async def lock_key() -> str | None:
        keys = await inspector.lock_keys()
        return keys[0] if keys else None

    async def stalled() -> bool:
        return (await idp.stalls())["entered"] == 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(doomed)
        # The victim is inside the lock: the key is in Redis, its token request waits at the provider.
        lock = await eventually("the victim takes the refresh lock", lock_key)
        await eventually("the victim's token request reaches the provider", stalled)
        victim.kill()
    assert lost, "the killed worker's request should have been cut"
    lease_left = await inspector.lease_left(lock)
    assert lease_left > 1, "the lease should still be running"

    started = time.monotonic()
    answers: list[httpx.Response] = []

    async def request(i: int) -> None:
        answers.append(await me(http, others[i % len(others)].url, cookie))

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(request, i)
    waited = time.monotonic() - started

    assert [a.status_code for a in answers] == [200] * 12, running.logs()
    tokens = {a.json()["access_token"] for a in answers}
    assert len(tokens) == 1 and first["access_token"] not in tokens
    assert waited > lease_left - 0.5  # nobody refreshed beside the dead holder's lease
    assert await idp.stalls() == {"armed": 0, "entered": 1, "dropped": 1}  # never reached the provider
    assert await idp.count(grant_type="refresh_token") == 1
    assert await idp.count(error="invalid_grant") == 0
    assert await inspector.lease_left(lock) == 0  # the new holder released it


@pytest.mark.parametrize("cluster", ["redis"], indirect=True)
async def test_redis_restart_answers_503_and_kept_sessions_work_again(
    running: Cluster, http: httpx.AsyncClient
) -> None:
    cookie = await login(http, running, worker=2)
    for worker in running.workers:
        assert (await me(http, worker.url, cookie)).status_code == 200

    running.redis.stop(save=True)  # a snapshot on the way down: these keys come back
    try:
        for worker in running.workers:
            api = await me(http, worker.url, cookie)
            assert api.status_code == 503, api.text
            assert api.headers["retry-after"] and api.json()["error"] == "temporarily_unavailable"
            page = await http.get(worker.url + "/", headers={**HTML, "cookie": cookie})
            assert page.status_code == 503  # not a redirect to the sign-in
            assert set_cookie(page, "guard_session") is None  # and not a logout
            signin = await http.get(worker.url + "/auth/login", headers=HTML)
            assert signin.status_code == 503
    finally:
        running.redis.start()

    for worker in running.workers:
        response = await me(http, worker.url, cookie)
        assert response.status_code == 200, response.text
        assert response.json()["sub"] == "alice"
