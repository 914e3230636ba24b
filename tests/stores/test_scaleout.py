"""The scale-out stores on real servers: RedisStore on a Cluster and on a Sentinel-managed master, their URL
forms, and what PostgresStore does beyond the contract (its tables, its sweep of expired rows)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import anyio
import psycopg
import pytest
from redis.asyncio import Redis, RedisCluster

from asgi_oauth_guard import ConfigurationError, PostgresStore, RedisStore, store_from_url

from ..engines import Engines, redis_call

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio and psycopg's async connections


@pytest.fixture
def table() -> str:
    return "t_" + uuid.uuid4().hex[:12]


async def test_the_cluster_url_names_any_node_and_keys_spread_over_the_masters(
    engines: Engines, key_prefix: str
) -> None:
    cluster = engines.cluster
    url = f"redis+cluster://127.0.0.1:{cluster.nodes[3].port}"  # any node, a replica too
    store = store_from_url(url, key_prefix=key_prefix)
    assert isinstance(store, RedisStore) and isinstance(store.redis, RedisCluster)
    try:
        for i in range(30):
            await store.set(f"s:session-{i}", f"v{i}".encode(), ttl=60)
            assert await store.acquire(f"lock:refresh:session-{i}", "me", lease=60)
        assert [await store.get(f"s:session-{i}") for i in range(30)] == [f"v{i}".encode() for i in range(30)]
        assert all([await store.release(f"lock:refresh:session-{i}", "me") for i in range(30)])
        served_by = {cluster.master_of(f"{key_prefix}s:session-{i}").port for i in range(30)}
        assert len(served_by) == 3  # no hash tag: a session's keys go wherever their slot is
    finally:
        await store.aclose()


async def test_a_hash_tag_in_the_prefix_is_refused_on_a_cluster(engines: Engines) -> None:
    client = RedisCluster(host="127.0.0.1", port=engines.cluster.nodes[0].port)
    try:
        with pytest.raises(ConfigurationError, match="hash tag"):
            RedisStore(client, key_prefix="{guard}:")
        RedisStore(client, key_prefix="guard:")
    finally:
        await client.aclose()
    plain = Redis(port=1)  # on one server a tag means nothing: allowed
    RedisStore(plain, key_prefix="{guard}:")
    await plain.aclose()


async def test_a_cluster_client_that_decodes_responses_is_refused(engines: Engines) -> None:
    client = RedisCluster(host="127.0.0.1", port=engines.cluster.nodes[0].port, decode_responses=True)
    try:
        with pytest.raises(ConfigurationError, match="decode_responses=False"):
            RedisStore(client)
    finally:
        await client.aclose()


async def test_the_sentinel_url_finds_the_master_and_writes_there(engines: Engines, key_prefix: str) -> None:
    sentinel = engines.sentinel
    hosts = ",".join(f"127.0.0.1:{port}" for _, port in sentinel.sentinel_addresses)
    for url, db in ((f"redis+sentinel://{hosts}/guard", 0), (f"redis+sentinel://{hosts}/guard/3", 3)):
        store = store_from_url(url, key_prefix=key_prefix)
        assert isinstance(store, RedisStore)
        try:
            await store.set("k", b"on the master", ttl=60)
            master = sentinel.current_master().port
            redis_call(master, "SELECT", str(db))
            client = Redis(port=master, db=db)
            try:
                assert await client.get(key_prefix + "k") == b"on the master"
            finally:
                await client.aclose()
        finally:
            await store.delete("k")
            await store.aclose()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis+sentinel://127.0.0.1:26379", "service_name"),
        ("redis+sentinel://127.0.0.1:26379/guard/zero", "service_name"),
        ("redis+sentinel://127.0.0.1/guard", "host:port"),
        ("redis+sentinel://u:hunter2-secret@127.0.0.1/guard", "host:port"),
        ("redis+cluster://127.0.0.1:7000/2", "database 0"),
        ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "one node"),
    ],
)
def test_malformed_scale_out_urls_say_what_is_expected(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as caught:
        store_from_url(url)
    assert "hunter2" not in str(caught.value)  # a password never reaches a message


def test_an_unknown_url_lists_every_form() -> None:
    with pytest.raises(ConfigurationError) as caught:
        store_from_url("mysql://u:hunter2-secret@db/x")
    message = str(caught.value)
    for form in ("memory://", "redis://", "redis+cluster://", "redis+sentinel://", "postgresql://"):
        assert form in message
    assert "hunter2" not in message


async def test_the_postgres_url_makes_a_store_that_owns_its_pool(engines: Engines) -> None:
    store = store_from_url(engines.postgres.url)
    assert isinstance(store, PostgresStore)
    async with store:
        await store.set("k", b"v", ttl=60)
        assert await store.get("k") == b"v"
        await store.delete("k")
    assert store.pool.closed  # type: ignore[union-attr]


async def test_tables_created_by_the_documented_migration(engines: Engines, table: str) -> None:
    async with await psycopg.AsyncConnection.connect(engines.postgres.url, autocommit=True) as conn:
        await conn.execute(PostgresStore.schema(table))  # what an operator runs as a migration
        store = PostgresStore(conn, table=table, create_tables=False)
        assert await store.add("claim:x", b"first", ttl=60)
        assert not await store.add("claim:x", b"second", ttl=60)
        await store.index_add("i:sub:alice", "sid-1", ttl=60)
        assert await store.index_members("i:sub:alice") == ["sid-1"]
        columns = await (
            await conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_name IN (%s, %s) ORDER BY table_name, ordinal_position",
                (table, table + "_index"),
            )
        ).fetchall()
    assert columns == [
        (table, "key"),
        (table, "value"),
        (table, "expires_at"),
        (table + "_index", "key"),
        (table + "_index", "member"),
        (table + "_index", "expires_at"),
    ]


async def test_workers_starting_at_once_create_the_tables_once(engines: Engines, table: str) -> None:
    stores = [PostgresStore.from_url(engines.postgres.url, table=table, max_size=2) for _ in range(6)]
    won: list[int] = []

    async def first_use(i: int) -> None:
        if await stores[i].add("claim:first", str(i).encode(), ttl=60):
            won.append(i)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(len(stores)):
                tg.start_soon(first_use, i)
    finally:
        for store in stores:
            await store.aclose()
    assert len(won) == 1


async def test_expired_rows_are_swept_in_bounded_batches(engines: Engines, table: str) -> None:
    async with await psycopg.AsyncConnection.connect(engines.postgres.url, autocommit=True) as conn:
        store = PostgresStore(conn, table=table, sweep_batch=100)
        await store.set("live", b"v", ttl=600)
        await store.index_add("i:live", "m", ttl=600)
        await conn.execute(
            f"INSERT INTO {table} SELECT ('dead' || n)::bytea, 'x', now() - interval '1 second' "
            "FROM generate_series(1, 250) AS n"
        )
        await conn.execute(
            f"INSERT INTO {table}_index SELECT 'i:dead', ('m' || n)::bytea, now() - interval '1 second' "
            "FROM generate_series(1, 30) AS n"
        )
        assert await store.get("dead1") is None  # an expired row is never read, swept or not
        assert await store.sweep() == 130  # at most 100 values (and 100 members) a batch
        assert await store.sweep() == 100
        assert await store.sweep() == 50
        assert await store.sweep() == 0
        counts = await (
            await conn.execute(f"SELECT (SELECT count(*) FROM {table}), (SELECT count(*) FROM {table}_index)")
        ).fetchone()
        assert counts == (1, 1)
        assert await store.get("live") == b"v" and await store.index_members("i:live") == ["m"]


async def test_writes_sweep_now_and_then_on_their_own(engines: Engines, table: str) -> None:
    async with await psycopg.AsyncConnection.connect(engines.postgres.url, autocommit=True) as conn:
        store = PostgresStore(conn, table=table, sweep_interval=0.001)
        await store.set("first", b"v", ttl=600)  # creates the table
        await conn.execute(f"INSERT INTO {table} VALUES ('dead', 'x', now() - interval '1 second')")
        await anyio.sleep(0.01)
        await store.set("second", b"v", ttl=600)
        left = await (await conn.execute(f"SELECT count(*) FROM {table} WHERE key = 'dead'")).fetchone()
        assert left == (0,)


def test_a_table_name_that_is_not_a_plain_name_is_refused() -> None:
    for bad in ("Guard", "guard; DROP TABLE x", "a" * 60, "1guard", ""):
        with pytest.raises(ConfigurationError, match="table"):
            PostgresStore(object(), table=bad)  # type: ignore[arg-type]


def test_without_psycopg_the_error_says_what_to_install() -> None:
    script = """
import sys
sys.modules["psycopg"] = None  # as if psycopg were not installed
import asgi_oauth_guard
try:
    asgi_oauth_guard.store_from_url("postgresql://u@localhost/db")
except ImportError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'PostgresStore needs psycopg 3: pip install "asgi-oauth-guard[postgres]"'


def _wait_calls(port: int) -> int:
    """How many WAIT commands this server ran (INFO commandstats), without MONITOR."""
    stats = str(redis_call(port, "INFO", "commandstats"))
    for line in stats.splitlines():
        if line.startswith("cmdstat_wait:"):
            return int(line.split("calls=", 1)[1].split(",", 1)[0])
    return 0


async def test_wait_replicas_makes_the_writes_that_must_survive_wait_for_the_replica(
    engines: Engines, key_prefix: str
) -> None:
    sentinel = engines.sentinel
    sentinel.wait_healthy()  # a failover test may have run before: one master, one replica again
    hosts = ",".join(f"127.0.0.1:{port}" for _, port in sentinel.sentinel_addresses)
    master = sentinel.current_master().port
    plain = store_from_url(f"redis+sentinel://{hosts}/guard", key_prefix=key_prefix)
    durable = store_from_url(
        f"redis+sentinel://{hosts}/guard?wait_replicas=1&wait_timeout=5", key_prefix=key_prefix
    )
    assert isinstance(plain, RedisStore) and isinstance(durable, RedisStore)
    assert (plain.wait_replicas, durable.wait_replicas, durable.wait_timeout) == (0, 1, 5.0)
    try:
        before = _wait_calls(master)
        await plain.set("s:a", b"v", ttl=60)
        assert await plain.add("claim:a", b"1", ttl=60)
        assert await plain.replace("s:a", b"w", ttl=60)
        await plain.delete("claim:a")
        assert _wait_calls(master) == before  # the plain store never waits

        await durable.set("s:b", b"v", ttl=60)  # a new session, a refresh result
        assert await durable.add("claim:b", b"1", ttl=60)  # a sign-in's claim, a refresh token's claim
        assert not await durable.add("claim:b", b"1", ttl=60)
        assert await durable.replace("s:b", b"w", ttl=60)  # a session saved after a refresh
        await durable.delete("claim:b")  # a sign-out
        assert _wait_calls(master) == before + 5
        assert await durable.acquire("lock:refresh:b", "me", lease=60)  # the lock does not wait
        assert await durable.get("s:b") == b"w"  # nor do reads, the hot path
        assert await durable.release("lock:refresh:b", "me")
        assert _wait_calls(master) == before + 5
        assert durable.unreplicated_writes == 0  # the replica acknowledged every one
        replica = sentinel.replica if sentinel.current_master() is sentinel.master else sentinel.master
        assert redis_call(replica.port, "GET", key_prefix + "s:b") == "w"
    finally:
        await plain.delete("s:a")
        await durable.delete("s:b")
        await plain.aclose()
        await durable.aclose()


async def test_wait_replicas_is_refused_on_a_cluster(engines: Engines) -> None:
    url = f"redis+cluster://127.0.0.1:{engines.cluster.nodes[0].port}"
    with pytest.raises(ConfigurationError, match="wait_replicas is not supported on a Redis Cluster"):
        store_from_url(url + "?wait_replicas=1")
    client = RedisCluster(host="127.0.0.1", port=engines.cluster.nodes[0].port)
    try:
        with pytest.raises(ConfigurationError, match="Redis Cluster"):
            RedisStore(client, wait_replicas=1)
    finally:
        await client.aclose()
