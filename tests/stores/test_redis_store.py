"""What RedisStore adds to the contract: its keys and TTLs in Redis, its client, its failures, its URLs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
import redis.exceptions
from redis.asyncio import Redis

from asgi_oauth_guard import ConfigurationError, MemoryStore, RedisStore, store_from_url

from ..redis_server import RedisServer, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_keys_are_prefixed_and_ttls_are_milliseconds(redis_client: Redis, key_prefix: str) -> None:
    store = RedisStore(redis_client, key_prefix=key_prefix)
    await store.set("s:abc", b"v", ttl=0.25)
    assert await redis_client.get(key_prefix + "s:abc") == b"v"
    assert 0 < await redis_client.pttl(key_prefix + "s:abc") <= 250
    await store.set("tiny", b"v", ttl=0.0001)  # rounds up to one millisecond, never to "no TTL"
    assert await redis_client.pttl(key_prefix + "tiny") in (-2, 0, 1)
    assert await store.acquire("lock", "owner-1", lease=30)
    assert await redis_client.get(key_prefix + "lock") == b"owner-1"
    assert 29_000 < await redis_client.pttl(key_prefix + "lock") <= 30_000


async def test_the_default_prefix_is_guard(redis_client: Redis) -> None:
    store = RedisStore(redis_client)
    try:
        await store.set("test-default-prefix", b"v", ttl=5)
        assert await redis_client.get("guard:test-default-prefix") == b"v"
    finally:
        await store.delete("test-default-prefix")


async def test_a_client_that_decodes_responses_is_refused(redis_url: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ConfigurationError, match="decode_responses=False"):
            RedisStore(client)
    finally:
        await client.aclose()


async def test_a_given_client_is_left_open_and_from_url_closes_its_own(
    redis_client: Redis, redis_url: str
) -> None:
    await RedisStore(redis_client).aclose()
    assert await redis_client.ping()  # still usable: its creator closes it

    async with RedisStore.from_url(redis_url, key_prefix="test:own:") as store:
        await store.set("k", b"v", ttl=5)
        own = str(await store.redis.client_id())
        assert own in [c["id"] for c in await redis_client.client_list()]
    deadline = time.monotonic() + 5
    while own in [c["id"] for c in await redis_client.client_list()]:  # closed: Redis sees it go
        assert time.monotonic() < deadline, "the store's own connection is still open"
        await anyio.sleep(0.01)


async def test_redis_down_raises_at_once() -> None:
    async with RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0") as store:
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError):
            await store.get("k")
        with pytest.raises(redis.exceptions.ConnectionError):
            await store.acquire("lock", "owner", lease=5)
        assert time.monotonic() - started < 1.0


async def test_after_a_redis_restart_the_first_call_works(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        async with RedisStore.from_url(server.url) as store:
            await store.set("k", b"kept", ttl=60)
            server.restart(keep_data=True)  # the pooled connection is now dead
            assert await store.get("k") == b"kept"
            assert await store.release("k", "not the owner") is False  # the script is loaded again
    finally:
        server.stop()


async def test_store_from_url_picks_the_store(redis_client: Redis, redis_url: str, key_prefix: str) -> None:
    assert isinstance(store_from_url("memory://"), MemoryStore)
    db1 = redis_url.rsplit("/", 1)[0] + "/1"
    store = store_from_url(db1, key_prefix=key_prefix)
    assert isinstance(store, RedisStore)
    try:
        await store.set("k", b"in db 1", ttl=5)
        assert await redis_client.get(key_prefix + "k") is None  # db 0
        assert await redis_client.execute_command("SELECT", 1)
        try:
            assert await redis_client.get(key_prefix + "k") == b"in db 1"
        finally:
            assert await redis_client.execute_command("SELECT", 0)
    finally:
        await store.delete("k")
        await store.aclose()


@pytest.mark.parametrize("url", ["memcached://localhost", "memory://elsewhere", "", "localhost:6379"])
def test_store_from_url_refuses_what_it_does_not_know(url: str) -> None:
    with pytest.raises(ConfigurationError, match="memory://"):
        store_from_url(url)


def test_without_redis_py_the_core_works_and_the_error_says_what_to_install() -> None:
    script = """
import sys
sys.modules["redis"] = None  # as if redis-py were not installed
import asgi_oauth_guard
assert isinstance(asgi_oauth_guard.store_from_url("memory://"), asgi_oauth_guard.MemoryStore)
try:
    asgi_oauth_guard.store_from_url("redis://localhost:6379/0")
except ImportError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'RedisStore needs redis-py: pip install "asgi-oauth-guard[redis]"'


async def test_a_write_no_replica_acknowledges_stands_and_is_logged_once(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # One server without replicas: WAIT 1 answers 0 after its timeout. The write is on the master:
    # failing it would turn a replica down into an outage, so it stands, counted and logged once.
    store = RedisStore.from_url(redis_url + "?wait_replicas=1&wait_timeout=0.01", key_prefix=key_prefix)
    try:
        with caplog.at_level("WARNING", logger="asgi_oauth_guard"):
            await store.set("s:x", b"v", ttl=60)
            assert await store.replace("s:x", b"w", ttl=60)
        assert await store.get("s:x") == b"w"
        assert store.unreplicated_writes == 2
        warnings = [r for r in caplog.records if "replicas asked for" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        await store.delete("s:x")
        await store.aclose()


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("wait_replicas=one", "wait_replicas must be a number"),
        ("wait_replicas=-1", "whole number >= 0"),
        ("wait_replicas=1&wait_timeout=0", "wait_timeout must be positive"),
    ],
)
def test_bad_wait_settings_are_refused(query: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RedisStore.from_url("redis://127.0.0.1:1/0?" + query)


def test_other_query_options_still_reach_redis_py() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0?wait_replicas=2&health_check_interval=7")
    assert store.wait_replicas == 2
    assert store.redis.connection_pool.connection_kwargs["health_check_interval"] == 7
