"""The guard on a real Redis, in-process: two guards on one Redis stand for two worker processes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from asgi_oauth_guard import RedisStore
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import BrowserFactory, GuardFactory, login, start_login
from ..redis_server import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio runs on asyncio only


class Watch:
    """What the stores of several guards saw: refused claims and refused refresh locks."""

    def __init__(self) -> None:
        self.claims_refused = 0
        self.locks_refused = 0
        self.changed = anyio.Event()

    def note(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        with anyio.fail_after(5):
            while not condition():
                await self.changed.wait()


class WatchedRedisStore(RedisStore):
    def __init__(self, redis: Redis, *, key_prefix: str, watch: Watch) -> None:
        super().__init__(redis, key_prefix=key_prefix)
        self.watch = watch

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        created = await super().add(key, value, ttl=ttl)
        if key.startswith("claim:") and not created:
            self.watch.claims_refused += 1
            self.watch.note()
        return created

    async def acquire(self, key: str, owner: str, *, lease: float) -> bool:
        taken = await super().acquire(key, owner, lease=lease)
        if not taken:
            self.watch.locks_refused += 1
            self.watch.note()
        return taken


@pytest.fixture
async def redis_clients(redis_url: str) -> AsyncIterator[list[Redis]]:
    """Clients for the guards under test, one per guard, as each process would have its own."""
    clients = [Redis.from_url(redis_url) for _ in range(2)]
    yield clients
    for client in clients:
        await client.aclose()


def session_cookie(response: httpx.Response) -> str | None:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith("guard_session="):
            return value.split(";", 1)[0]
    return None


async def command_counts(redis: Redis) -> dict[str, int]:
    """Calls per command as Redis counts them (INFO commandstats)."""
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(data["calls"]) for name, data in stats.items()}


def commands_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {name: calls - before.get(name, 0) for name, calls in after.items()}
    return {name: n for name, n in delta.items() if n and name != "info"}


async def test_login_and_requests_with_the_redis_store(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    redis_client: Redis,
    key_prefix: str,
) -> None:
    store = RedisStore(redis_client, key_prefix=key_prefix)
    browser = browser_factory(guard_factory(store=store))
    done = await login(browser, provider, "/me")
    assert done.headers["location"] == "/me"
    me = (await browser.get("/me")).json()
    assert me["user"] == "alice"
    keys = [key async for key in redis_client.scan_iter(match=key_prefix + "*")]
    assert keys and all(key.startswith(key_prefix.encode()) for key in keys)
    sessions = [key for key in keys if key.startswith((key_prefix + "s:").encode())]
    assert len(sessions) == 1
    # The store keeps a session until its idle timeout (renewed as it is used) and a minute more.
    idle = (8 * 3600 + 60) * 1000
    assert idle - 60_000 < await redis_client.pttl(sessions[0]) <= idle
    strings = [key for key in keys if await redis_client.type(key) == b"string"]
    dump = b"".join([await redis_client.get(key) or b"" for key in strings] + keys)
    assert me["access_token"].encode() not in dump and b"alice" not in dump  # sealed at rest
    assert len(strings) < len(keys)  # the session indexes (sorted sets) name no user either


async def test_duplicate_callbacks_over_two_guards_exchange_the_code_once(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    redis_clients: list[Redis],
    key_prefix: str,
) -> None:
    watch = Watch()
    guards = [
        guard_factory(store=WatchedRedisStore(client, key_prefix=key_prefix, watch=watch))
        for client in redis_clients
    ]
    browsers = [browser_factory(guard) for guard in guards]
    callback = await start_login(browsers[0], provider, "/me")
    binding = f"guard_session_tx={browsers[0].cookies['guard_session_tx']}"
    hold = provider.hold(endpoint="token")
    responses: list[httpx.Response] = []

    async def load(browser: httpx.AsyncClient) -> None:
        responses.append(await browser.get(callback, headers={"cookie": binding}))

    with hold:
        async with anyio.create_task_group() as tg:
            tg.start_soon(load, browsers[0])
            with anyio.fail_after(5):
                await hold.wait_entered(1)
            for i in range(9):
                tg.start_soon(load, browsers[i % 2])
            await watch.until(lambda: watch.claims_refused >= 9)  # every duplicate lost the claim and waits
            hold.release()

    assert provider.count(endpoint="token", grant_type="authorization_code") == 1
    assert [r.status_code for r in responses] == [303] * 10
    assert {r.headers["location"] for r in responses} == {"/me"}
    cookies = {session_cookie(r) for r in responses}
    assert len(cookies) == 1 and None not in cookies
    cookie = cookies.pop()
    assert cookie is not None
    for browser in browsers:  # the session works on both "processes"
        me = await browser.get("/me", headers={"cookie": cookie})
        assert me.json()["user"] == "alice"


class PausingRedisStore(RedisStore):
    """Stops a guard just after it found no recorded outcome for a callback, until told to go on."""

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        super().__init__(redis, key_prefix=key_prefix)
        self.paused = anyio.Event()
        self.go_on = anyio.Event()

    async def get(self, key: str) -> bytes | None:
        value = await super().get(key)
        if key.startswith("out:") and value is None and not self.paused.is_set():
            self.paused.set()
            await self.go_on.wait()
        return value


async def test_a_duplicate_that_reads_while_the_winner_finishes_gets_the_same_session(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    redis_clients: list[Redis],
    key_prefix: str,
) -> None:
    pausing = PausingRedisStore(redis_clients[1], key_prefix=key_prefix)
    winner = browser_factory(guard_factory(store=RedisStore(redis_clients[0], key_prefix=key_prefix)))
    duplicate = browser_factory(guard_factory(store=pausing))
    callback = await start_login(winner, provider, "/me")
    binding = f"guard_session_tx={winner.cookies['guard_session_tx']}"
    responses: dict[str, httpx.Response] = {}
    winner_done = anyio.Event()

    async def load(name: str, browser: httpx.AsyncClient) -> None:
        responses[name] = await browser.get(callback, headers={"cookie": binding})
        if name == "winner":
            winner_done.set()

    with provider.hold(endpoint="token") as hold:
        async with anyio.create_task_group() as tg:
            tg.start_soon(load, "winner", winner)
            with anyio.fail_after(5):
                await hold.wait_entered(1)
            tg.start_soon(load, "duplicate", duplicate)
            with anyio.fail_after(5):
                await pausing.paused.wait()  # it saw no outcome yet...
            hold.release()
            with anyio.fail_after(5):
                await winner_done.wait()  # ...and the winner records it and drops the transaction
            pausing.go_on.set()

    assert provider.count(endpoint="token") == 1
    assert responses["duplicate"].status_code == 303
    assert responses["duplicate"].headers["location"] == "/me"
    assert session_cookie(responses["duplicate"]) == session_cookie(responses["winner"]) is not None


async def test_expiring_token_is_refreshed_once_over_two_guards(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    redis_clients: list[Redis],
    key_prefix: str,
) -> None:
    watch = Watch()
    guards = [
        guard_factory(store=WatchedRedisStore(client, key_prefix=key_prefix, watch=watch))
        for client in redis_clients
    ]
    browsers = [browser_factory(guard) for guard in guards]
    cookie = session_cookie(await login(browsers[0], provider))
    assert cookie is not None
    before = (await browsers[0].get("/me", headers={"cookie": cookie})).json()
    clock.advance(3600 - 30)  # inside the 60 s leeway
    hold = provider.hold(endpoint="token")
    tokens: list[str] = []

    async def request(browser: httpx.AsyncClient) -> None:
        response = await browser.get("/me", headers={"cookie": cookie})
        assert response.status_code == 200, response.text
        tokens.append(response.json()["access_token"])

    with hold:
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(request, browsers[i % 2])
            with anyio.fail_after(5):
                await hold.wait_entered(1)
            await watch.until(lambda: watch.locks_refused >= 1)  # the other guard waits on the lock
            hold.release()

    assert provider.count(endpoint="token", grant_type="refresh_token") == 1
    assert provider.count(endpoint="token", error="invalid_grant") == 0
    assert len(tokens) == 20 and len(set(tokens)) == 1 and tokens[0] != before["access_token"]
    assert provider.grant_alive(tokens[0])


async def test_an_authenticated_request_costs_one_redis_command(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    redis_client: Redis,
    key_prefix: str,
) -> None:
    browser = browser_factory(guard_factory(store=RedisStore(redis_client, key_prefix=key_prefix)))
    await login(browser, provider)
    assert (await browser.get("/me")).json()["user"] == "alice"  # the connection is open and warm

    before = await command_counts(redis_client)
    assert (await browser.get("/me")).json()["user"] == "alice"
    assert commands_between(before, await command_counts(redis_client)) == {"get": 1}

    clock.advance(3600 - 30)
    assert (await browser.get("/me")).json()["refreshes"] == 1  # loads the release script if needed
    clock.advance(3600 - 30)
    before = await command_counts(redis_client)
    assert (await browser.get("/me")).json()["refreshes"] == 2
    # Eight round trips: read, lock (SET NX PX), read again under the lock, claim the refresh token
    # (SET NX PX), record its result (SET PX), save (SET PX XX), note the last use in the session's
    # metadata for sessions_of (SET PX XX), release (EVALSHA, whose GET and DEL inside the script Redis
    # counts too).
    expected = {"get": 2 + 1, "set": 5, "evalsha": 1, "del": 1}
    assert commands_between(before, await command_counts(redis_client)) == expected


async def test_redis_outage_answers_503_and_the_session_survives(
    guard_factory: GuardFactory, browser_factory: BrowserFactory, provider: OAuthTestProvider, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        async with RedisStore.from_url(server.url) as store:
            browser = browser_factory(guard_factory(store=store))
            await login(browser, provider, "/me")
            assert (await browser.get("/me")).json()["user"] == "alice"

            server.stop(save=True)
            started = time.monotonic()
            page = await browser.get("/me")
            api = await browser.get("/api/me", headers={"accept": "application/json"})
            signin = await browser.get("/auth/login")
            assert time.monotonic() - started < 1.0  # refused at once, not retried for seconds
            assert page.status_code == 503 and page.headers["retry-after"]
            assert api.status_code == 503 and api.json()["error"] == "temporarily_unavailable"
            assert signin.status_code == 503
            assert "guard_session=" not in page.headers.get("set-cookie", "")  # no logout

            server.start()
            me = await browser.get("/me")
            assert me.status_code == 200 and me.json()["user"] == "alice"
    finally:
        server.stop()


async def test_what_a_session_costs_in_redis(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    redis_client: Redis,
    key_prefix: str,
) -> None:
    browser = browser_factory(guard_factory(store=RedisStore(redis_client, key_prefix=key_prefix)))
    await login(browser, provider)
    sizes: dict[str, int] = {}
    for key in [key async for key in redis_client.scan_iter(match=key_prefix + "*")]:
        name = key.decode().removeprefix(key_prefix)
        assert await redis_client.pttl(key) > 0, f"{name} would live forever"
        sizes[name.split(":", 1)[0]] = await redis_client.memory_usage(key) or 0
    # What a login leaves: the session, its metadata and its places in the indexes by user and by provider
    # session; and until the transaction TTL ends the claim, the outcome for late duplicates, the
    # spent-code mark and the browser's list of logins in flight.
    assert set(sizes) == {"s", "m", "iu", "io", "claim", "out", "code", "b"}
    assert sizes["s"] < 4096
    assert sizes["m"] + sizes["iu"] + sizes["io"] < 1024
    in_flight = sum(sizes.values()) - sizes["s"] - sizes["m"] - sizes["iu"] - sizes["io"]
    assert in_flight < 1024
