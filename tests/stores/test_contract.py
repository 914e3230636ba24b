"""One contract for every store: what the guard relies on, checked against MemoryStore, a real Redis
(one server, a Cluster, a Sentinel-managed master) and a real PostgreSQL."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.sentinel import Sentinel

from asgi_oauth_guard import MemoryStore, PostgresStore, RedisStore, Store
from asgi_oauth_guard.testing import FakeClock

from ..engines import Engines

pytestmark = pytest.mark.anyio

REDIS_TTL_SLACK = 2.0  # how long past a TTL Redis may take to report the key gone (it is exact in practice)


class StoreUnderTest:
    """A store, more stores on the same data (other "processes"), and a way to let time pass:
    the fake clock for MemoryStore, short real TTLs for Redis."""

    def __init__(
        self, kind: str, *, redis_url: str | None = None, engines: Engines | None = None, key_prefix: str = ""
    ) -> None:
        self.kind = kind
        self._redis_url = redis_url
        self._engines = engines
        self._key_prefix = key_prefix
        self._table = "t_" + key_prefix.split(":")[1] if ":" in key_prefix else "t_contract"
        self._clients: list[Any] = []
        self.clock = FakeClock()
        self._memory = MemoryStore(clock=self.clock)
        self.store = self.sibling()
        # Long enough that nothing expires unless the test waits for it; short enough to wait for.
        self.short = 5.0 if kind == "memory" else 0.05
        self.long = 300.0

    def sibling(self) -> Store:
        """Another handle on the same data: a new client and connection pool for Redis, like another
        process; the same store for MemoryStore, which lives in one process."""
        if self.kind == "memory":
            return self._memory
        if self.kind == "redis":
            assert self._redis_url is not None
            client: Any = Redis.from_url(self._redis_url)
            self._clients.append(client)
            return RedisStore(client, key_prefix=self._key_prefix)
        assert self._engines is not None
        if self.kind == "postgres":
            # A pool of its own, as another process would have.
            store = PostgresStore.from_url(self._engines.postgres.url, table=self._table, max_size=4)
            self._clients.append(store)
            return store
        if self.kind == "redis-cluster":
            node = self._engines.cluster.nodes[len(self._clients) % 6]  # start from any node
            client = RedisCluster(host="127.0.0.1", port=node.port)
        else:
            sentinel = Sentinel(self._engines.sentinel.sentinel_addresses)
            self._clients += sentinel.sentinels
            client = sentinel.master_for("guard")
        self._clients.append(client)
        # The Sentinel master once more with every durable write waiting for its replica (WAIT).
        wait_replicas = 1 if self.kind == "redis-sentinel-wait" else 0
        return RedisStore(client, key_prefix=self._key_prefix, wait_replicas=wait_replicas)

    async def after(self, seconds: float, check: Callable[[], Awaitable[bool]]) -> None:
        """Let ``seconds`` pass, then ``check`` must hold (polled with a deadline for real time)."""
        if self.kind == "memory":
            self.clock.advance(seconds)
            assert await check()
            return
        deadline = time.monotonic() + seconds + REDIS_TTL_SLACK
        while not await check():
            assert time.monotonic() < deadline, f"still not true {seconds + REDIS_TTL_SLACK} s later"
            await anyio.sleep(0.01)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


# redis.asyncio and psycopg's async connections need asyncio.
CASES = [
    ("memory", "asyncio"),
    ("memory", "trio"),
    ("redis", "asyncio"),
    ("redis-cluster", "asyncio"),
    ("redis-sentinel", "asyncio"),
    ("redis-sentinel-wait", "asyncio"),
    ("postgres", "asyncio"),
]


@pytest.fixture
async def case(
    kind: str, anyio_backend: str, request: pytest.FixtureRequest, key_prefix: str
) -> AsyncIterator[StoreUnderTest]:
    redis_url = request.getfixturevalue("redis_url") if kind == "redis" else None
    engines = (
        request.getfixturevalue("engines")
        if kind in ("redis-cluster", "redis-sentinel", "redis-sentinel-wait", "postgres")
        else None
    )
    under_test = StoreUnderTest(kind, redis_url=redis_url, engines=engines, key_prefix=key_prefix)
    yield under_test
    await under_test.aclose()


@pytest.mark.parametrize(("kind", "anyio_backend"), CASES, ids=[f"{k}-{b}" for k, b in CASES])
class TestStoreContract:
    async def test_is_a_store(self, case: StoreUnderTest) -> None:
        assert isinstance(case.store, Store)

    async def test_get_set_delete(self, case: StoreUnderTest) -> None:
        store = case.store
        assert await store.get("k") is None
        await store.set("k", b"one", ttl=case.long)
        assert await store.get("k") == b"one"
        await store.set("k", b"two", ttl=case.long)
        assert await store.get("k") == b"two"
        await store.delete("k")
        assert await store.get("k") is None
        await store.delete("k")  # deleting what is gone is fine
        await store.delete("never-there")

    async def test_values_expire_after_their_ttl(self, case: StoreUnderTest) -> None:
        store = case.store
        await store.set("brief", b"x", ttl=case.short)
        await store.set("lasting", b"y", ttl=case.long)
        await case.after(case.short, lambda: _gone(store, "brief"))
        assert await store.get("lasting") == b"y"

    async def test_set_renews_the_ttl(self, case: StoreUnderTest) -> None:
        store = case.store
        await store.set("k", b"old", ttl=case.short)
        await store.set("k", b"new", ttl=case.long)
        await store.set("brief", b"x", ttl=case.short)
        await case.after(case.short, lambda: _gone(store, "brief"))
        assert await store.get("k") == b"new"

    async def test_ttl_must_be_positive(self, case: StoreUnderTest) -> None:
        store = case.store
        for ttl in (0, -1.0):
            with pytest.raises(ValueError, match="ttl"):
                await store.set("k", b"v", ttl=ttl)
            with pytest.raises(ValueError, match="ttl"):
                await store.add("k", b"v", ttl=ttl)
            with pytest.raises(ValueError, match="ttl"):
                await store.acquire("k", "owner", lease=ttl)
        assert await store.get("k") is None

    async def test_add_sets_only_if_absent(self, case: StoreUnderTest) -> None:
        store = case.store
        assert await store.add("claim", b"first", ttl=case.long) is True
        assert await store.add("claim", b"second", ttl=case.long) is False
        assert await store.get("claim") == b"first"
        await store.delete("claim")
        assert await store.add("claim", b"third", ttl=case.short) is True
        await case.after(case.short, lambda: store.add("claim", b"after expiry", ttl=case.long))
        assert await store.get("claim") == b"after expiry"

    async def test_add_has_exactly_one_winner_among_50_concurrent_callers(self, case: StoreUnderTest) -> None:
        stores = [case.sibling() for _ in range(5)]  # for Redis: five clients, as five processes would
        won: list[int] = []

        async def claim(i: int) -> None:
            if await stores[i % len(stores)].add("claim:race", str(i).encode(), ttl=case.long):
                won.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(claim, i)
        assert len(won) == 1
        assert await case.store.get("claim:race") == str(won[0]).encode()

    async def test_a_lock_has_one_owner_and_only_it_releases(self, case: StoreUnderTest) -> None:
        store, other = case.store, case.sibling()
        assert await store.acquire("lock", "alpha", lease=case.long) is True
        assert await other.acquire("lock", "beta", lease=case.long) is False
        assert await other.release("lock", "beta") is False  # not the owner: nothing happens
        assert await other.acquire("lock", "gamma", lease=case.long) is False  # still held by alpha
        assert await store.release("lock", "alpha") is True
        assert await store.release("lock", "alpha") is False  # already free
        assert await other.acquire("lock", "beta", lease=case.long) is True
        assert await other.release("lock", "beta") is True

    async def test_an_expired_lease_frees_the_lock_and_its_old_owner_cannot_release_it(
        self, case: StoreUnderTest
    ) -> None:
        store, other = case.store, case.sibling()
        assert await store.acquire("lock", "alpha", lease=case.short) is True
        await case.after(case.short, lambda: other.acquire("lock", "beta", lease=case.long))
        assert await store.release("lock", "alpha") is False  # alpha's lease ran out: beta keeps the lock
        assert await store.acquire("lock", "gamma", lease=case.long) is False
        assert await other.release("lock", "beta") is True

    async def test_replace_sets_only_what_is_there(self, case: StoreUnderTest) -> None:
        store, other = case.store, case.sibling()
        assert await store.replace("s:gone", b"late refresh", ttl=case.long) is False
        assert await other.get("s:gone") is None  # never created by a replace
        await store.set("s:live", b"v1", ttl=case.short)
        assert await other.replace("s:live", b"v2", ttl=case.long) is True
        assert await store.get("s:live") == b"v2"
        await store.set("brief", b"x", ttl=case.short)
        await case.after(case.short, lambda: _gone(store, "brief"))
        assert await store.get("s:live") == b"v2"  # the replace renewed its TTL
        await other.delete("s:live")
        assert await store.replace("s:live", b"v3", ttl=case.long) is False
        assert await store.get("s:live") is None
        await store.set("s:expiring", b"v", ttl=case.short)
        await case.after(case.short, lambda: _gone(store, "s:expiring"))
        assert await store.replace("s:expiring", b"after expiry", ttl=case.long) is False
        assert await store.get("s:expiring") is None
        with pytest.raises(ValueError, match="ttl"):
            await store.replace("s:any", b"v", ttl=0)

    async def test_an_index_holds_members_until_each_expires(self, case: StoreUnderTest) -> None:
        store, other = case.store, case.sibling()
        assert await store.index_members("i:sub:alice") == []
        await store.index_add("i:sub:alice", "sid-1", ttl=case.long)
        await other.index_add("i:sub:alice", "sid-2", ttl=case.short)
        await store.index_add("i:sub:alice", "sid-1", ttl=case.long)  # adding again keeps one member
        await store.index_add("i:sub:bob", "sid-3", ttl=case.long)
        assert sorted(await other.index_members("i:sub:alice")) == ["sid-1", "sid-2"]
        await case.after(case.short, lambda: _members_are(store, "i:sub:alice", ["sid-1"]))
        assert await store.index_members("i:sub:bob") == ["sid-3"]
        await other.index_discard("i:sub:alice", "sid-1")
        await other.index_discard("i:sub:alice", "never-added")
        await other.index_discard("i:never", "x")
        assert await store.index_members("i:sub:alice") == []
        await store.index_add("i:sub:alice", "sid-4", ttl=case.long)
        assert await store.index_members("i:sub:alice") == ["sid-4"]
        await store.delete("i:sub:alice")
        assert await store.index_members("i:sub:alice") == []
        with pytest.raises(ValueError, match="ttl"):
            await store.index_add("i:sub:alice", "sid-5", ttl=0)

    async def test_an_index_lives_as_long_as_its_longest_lived_member(self, case: StoreUnderTest) -> None:
        store = case.store
        await store.index_add("i:x", "lasting", ttl=case.long)
        await store.index_add("i:x", "brief", ttl=case.short)  # a shorter member does not shorten the set
        await store.index_add("i:y", "brief", ttl=case.short)
        await case.after(case.short, lambda: _members_are(store, "i:y", []))
        assert await store.index_members("i:x") == ["lasting"]

    async def test_an_index_takes_concurrent_adds_from_many_clients(self, case: StoreUnderTest) -> None:
        stores = [case.sibling() for _ in range(5)]

        async def add(i: int) -> None:
            await stores[i % len(stores)].index_add("i:race", f"sid-{i}", ttl=case.long)

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(add, i)
        assert sorted(await case.store.index_members("i:race")) == sorted(f"sid-{i}" for i in range(40))

    async def test_release_of_a_free_lock_is_false(self, case: StoreUnderTest) -> None:
        assert await case.store.release("nobody-holds-this", "alpha") is False

    async def test_large_and_binary_values_round_trip(self, case: StoreUnderTest) -> None:
        store = case.store
        values = {
            "large": os.urandom(1 << 20),
            "every-byte": bytes(range(256)) * 4,
            "nul": b"\x00",
            "empty": b"",
        }
        for key, value in values.items():
            await store.set(key, value, ttl=case.long)
        for key, value in values.items():
            assert await store.get(key) == value
        assert await store.add("empty", b"x", ttl=case.long) is False  # an empty value is still a value

    async def test_keys_with_odd_characters(self, case: StoreUnderTest) -> None:
        store = case.store
        keys = [
            "with space",
            "ключ",
            "emoji 🔑",
            "new\nline\r\n",
            "tab\there",
            "*",
            "glob?[ab]*",
            "s:colons:and/slashes",
            "quotes\"'`",
            "back\\slash",
            "%00%ff",
            "nul\x00inside",
            "k" * 1000,
        ]
        for i, key in enumerate(keys):
            await store.set(key, f"value {i}".encode(), ttl=case.long)
        for i, key in enumerate(keys):
            assert await store.get(key) == f"value {i}".encode(), key
        await store.delete("*")  # not a pattern: only that key goes
        assert await store.get("*") is None
        assert await store.get("glob?[ab]*") == f"value {keys.index('glob?[ab]*')}".encode()
        assert await store.acquire("glob?[ab]*", "owner with space", lease=case.long) is False
        assert await store.acquire("lock ключ", "owner ключ", lease=case.long) is True
        assert await store.release("lock ключ", "owner ключ") is True


async def _gone(store: Store, key: str) -> bool:
    return await store.get(key) is None


async def _members_are(store: Store, key: str, members: list[str]) -> bool:
    return sorted(await store.index_members(key)) == members


# MemoryStore's own promises: bounded memory and eviction of expired entries.


async def test_memory_store_is_bounded_by_max_entries() -> None:
    clock = FakeClock()
    store = MemoryStore(max_entries=3, clock=clock)
    await store.set("soonest", b"1", ttl=10)
    await store.set("later", b"2", ttl=20)
    await store.set("latest", b"3", ttl=30)
    await store.set("new", b"4", ttl=5)  # full: the entry closest to expiry gives way
    assert len(store) == 3
    assert await store.get("soonest") is None
    assert [await store.get(k) for k in ("later", "latest", "new")] == [b"2", b"3", b"4"]
    for i in range(100):
        await store.set(f"many:{i}", b"x", ttl=100 + i)
    assert len(store) == 3
    assert await store.get("many:99") == b"x"
    await store.set("many:99", b"replaced", ttl=1000)  # replacing a key evicts nothing
    assert len(store) == 3
    assert await store.get("many:98") == b"x"


async def test_memory_store_evicts_expired_entries() -> None:
    clock = FakeClock()
    store = MemoryStore(max_entries=4, clock=clock)
    for key in ("a", "b", "c"):
        await store.set(key, b"x", ttl=10)
    await store.set("d", b"x", ttl=1000)
    clock.advance(11)
    assert await store.get("a") is None  # met expired: dropped at once
    assert len(store) == 3
    await store.set("e", b"x", ttl=10)
    await store.set("f", b"x", ttl=10)  # full again: every expired entry goes in one batch
    assert len(store) == 3
    assert [await store.get(k) for k in ("d", "e", "f")] == [b"x", b"x", b"x"]


async def test_memory_store_lease_and_claim_follow_its_clock() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    assert await store.acquire("lock", "alpha", lease=30)
    clock.advance(29)
    assert not await store.acquire("lock", "beta", lease=30)
    clock.advance(1)  # at the lease's end it is free
    assert await store.acquire("lock", "beta", lease=30)


async def test_memory_store_drops_an_index_with_its_last_member() -> None:
    clock = FakeClock()
    store = MemoryStore(max_entries=3, clock=clock)
    await store.index_add("i:a", "m1", ttl=10)
    await store.index_add("i:a", "m2", ttl=20)
    await store.set("k", b"v", ttl=100)
    assert len(store) == 2  # an index counts once, however many members it has
    clock.advance(21)
    await store.set("k2", b"v", ttl=100)
    await store.set("k3", b"v", ttl=100)  # full: the expired index goes first, no live entry is evicted
    assert [await store.get(k) for k in ("k", "k2", "k3")] == [b"v", b"v", b"v"]
    assert await store.index_members("i:a") == []
    assert len(store) == 3


def test_memory_store_refuses_a_useless_bound() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStore(max_entries=0)
