"""Real processes: the test provider and four app workers under uvicorn, all on one store.

The store is a parameter (``engine``): a redis-server of its own, or the shared Redis Cluster, Sentinel
set-up or PostgreSQL of ``tests/engines.py``. ``Inspector`` looks into each one the same way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.sentinel import Sentinel

from ..conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY
from ..engines import Engines
from ..redis_server import RedisServer, free_port

REPO = Path(__file__).resolve().parents[2]
PUBLIC_URL = "https://app.example.test"  # what the workers sit behind; the redirect_uri is built on it
# What the proxy in front of the workers says about the browser's request (the workers do not trust it, as
# with a proxy left out of trusted_proxies): without it, a sign-in would first move to PUBLIC_URL's host.
BEHIND_PROXY = {"x-forwarded-proto": "https", "x-forwarded-host": "app.example.test"}
WORKERS = 4
ACCESS_TOKEN_TTL = 8.0  # due for refresh half-way through its life, 4 s after it is issued: long enough that
# a refreshed token is not due again before 100 requests through 4 workers of a loaded machine are answered
HTTP_TIMEOUT = 2.5  # the workers' provider timeout (their refresh lock lease is 2 * 2.5 + 5 = 10 s): a token
# call the tests slow by 0.5 s must not time out on a loaded 2-core machine
READY_TIMEOUT = 30.0


class Server:
    """One uvicorn process serving one ASGI app on its own loopback port."""

    def __init__(
        self, name: str, app: str, env: dict[str, str], logs: Path, ready_path: str, port: int
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self._argv = [
            sys.executable,
            *("-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(self.port)),
            *("--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "2"),
        ]
        self._env = {**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1"}
        self._log = logs / f"{name}.log"
        self._ready_path = ready_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                self._argv, cwd=REPO, env=self._env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"{self.name} exited at start:\n{self.log_tail()}", pytrace=False)
                try:
                    if client.get(self.url + self._ready_path).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        pytest.fail(f"{self.name} was not ready within {READY_TIMEOUT} s:\n{self.log_tail()}", pytrace=False)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lock released, sockets closed by the kernel."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


ENGINES = ["redis", "redis-cluster", "redis-sentinel", "postgres"]
# On Sentinel the workers' writes that must survive a failover wait for the replica (RedisStore
# wait_replicas): without it, a refresh in flight at the kill can lose its rotated refresh token with the
# master. FAILOVER_SENTINEL_QUERY="" measures the store without it (docs/configuration.md, "Failover").
SENTINEL_QUERY = os.environ.get("FAILOVER_SENTINEL_QUERY", "?wait_replicas=1")


class Cluster:
    """The provider and the workers on one store (``engine``: a Redis of its own by default)."""

    def __init__(
        self,
        root: Path,
        engine: str = "redis",
        engines: Engines | None = None,
        *,
        workers: int = WORKERS,
        http_timeout: float = HTTP_TIMEOUT,
    ) -> None:
        logs = root / "logs"
        logs.mkdir()
        self.engine = engine
        self.engines = engines
        self.redis = RedisServer(root / "redis")
        if engine == "postgres":
            self.key_prefix = f"mp_{uuid.uuid4().hex[:8]}"  # the table
        else:
            self.key_prefix = f"mp:{uuid.uuid4().hex[:8]}:"
        if engines is None:
            self.store_url = self.redis.url
        else:
            self.store_url = {
                "redis-cluster": engines.cluster.url,
                "redis-sentinel": engines.sentinel.url + SENTINEL_QUERY,
                "postgres": engines.postgres.url,
            }[engine]
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        self.provider = Server(
            "provider",
            "tests.multiprocess.provider_app:app",
            {
                "TEST_IDP_ISSUER": issuer,
                "TEST_IDP_CLIENT_ID": CLIENT_ID,
                "TEST_IDP_CLIENT_SECRET": CLIENT_SECRET,
                "TEST_IDP_ACCESS_TOKEN_TTL": str(ACCESS_TOKEN_TTL),
            },
            logs,
            "/.well-known/openid-configuration",
            port,
        )
        worker_env = {
            "GUARD_ISSUER": issuer,
            "GUARD_CLIENT_ID": CLIENT_ID,
            "GUARD_CLIENT_SECRET": CLIENT_SECRET,
            "GUARD_SECRET_KEY": SECRET_KEY,
            "GUARD_STORE": self.store_url,
            "GUARD_KEY_PREFIX": self.key_prefix,
            "GUARD_PUBLIC_URL": PUBLIC_URL,
            "GUARD_HTTP_TIMEOUT": str(http_timeout),
            "GUARD_REFRESH_LEEWAY": "60",
        }
        self.workers = [
            Server(f"worker{i}", "tests.multiprocess.worker_app:app", worker_env, logs, "/ready", free_port())
            for i in range(workers)
        ]

    @property
    def servers(self) -> list[Server]:
        return [self.provider, *self.workers]

    def start(self) -> None:
        if self.engine == "redis":
            self.redis.start()
        # The provider first: a worker started before it answers 503 until its startup retry succeeds.
        self.provider.start()
        self.provider.wait_ready()
        for server in self.workers:
            server.start()
        for server in self.workers:
            server.wait_ready()

    def ensure_running(self) -> None:
        """Start again whatever a previous test killed (same port), and Redis if it was stopped."""
        if self.engine == "redis" and not self.redis.running:
            self.redis.start()
        dead = [server for server in self.servers if not server.alive]
        for server in dead:
            server.start()
        for server in dead:
            server.wait_ready()

    def stop(self) -> None:
        for server in self.servers:
            server.terminate()
        for server in self.servers:
            server.stop()
        self.redis.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.log_tail()}" for s in self.servers)


@pytest.fixture(scope="package", params=ENGINES)
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Workers on the store ``request.param``; shared by this folder's modules (starting them is slow)."""
    engine = str(request.param)
    engines = None if engine == "redis" else request.getfixturevalue("engines")
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), engine, engines)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def running(cluster: Cluster) -> Cluster:
    cluster.ensure_running()
    return cluster


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the tests read Redis with redis.asyncio


def no_cookies() -> CookieJar:
    """A jar that keeps nothing: each request carries exactly the cookies the test gives it."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class Inspector:
    """Reads the workers' store directly, whatever the engine: which refresh locks exist, their lease."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._redis: Any = None
        self._sentinels: list[Any] = []
        self._postgres: Any = None

    async def __aenter__(self) -> Inspector:
        cluster = self._cluster
        if cluster.engine == "redis":
            self._redis = Redis.from_url(cluster.redis.url)
        elif cluster.engine == "redis-cluster":
            assert cluster.engines is not None
            self._redis = RedisCluster(host="127.0.0.1", port=cluster.engines.cluster.nodes[0].port)
        elif cluster.engine == "redis-sentinel":
            assert cluster.engines is not None
            sentinel = Sentinel(cluster.engines.sentinel.sentinel_addresses)
            self._sentinels = sentinel.sentinels
            self._redis = sentinel.master_for("guard")
        else:
            assert cluster.engines is not None
            self._postgres = await psycopg.AsyncConnection.connect(
                cluster.engines.postgres.url, autocommit=True
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in [self._redis, *self._sentinels]:
            if client is not None:
                await client.aclose()
        if self._postgres is not None:
            await self._postgres.close()

    async def lock_keys(self) -> list[str]:
        """The live refresh locks' keys (the guard's keys, without the prefix)."""
        prefix = self._cluster.key_prefix
        if self._postgres is not None:
            rows = await (
                await self._postgres.execute(
                    f"SELECT key FROM {prefix} WHERE key LIKE 'lock:refresh:%%' AND expires_at > now()"
                )
            ).fetchall()
            return [bytes(row[0]).decode() for row in rows]
        keys = [key async for key in self._redis.scan_iter(match=prefix + "lock:refresh:*")]
        return [key.decode().removeprefix(prefix) for key in keys]

    async def lease_left(self, key: str) -> float:
        """Seconds until the lock at ``key`` expires; 0 when it is gone."""
        if self._postgres is not None:
            row = await (
                await self._postgres.execute(
                    f"SELECT extract(epoch FROM expires_at - now()) FROM {self._cluster.key_prefix} "
                    "WHERE key = %s AND expires_at > now()",
                    (key.encode(),),
                )
            ).fetchone()
            return float(row[0]) if row else 0.0
        left = await self._redis.pttl(self._cluster.key_prefix + key)
        return max(0.0, left / 1000)


@pytest.fixture
async def inspector(running: Cluster) -> AsyncIterator[Inspector]:
    async with Inspector(running) as inspector:
        yield inspector


# The workers sit behind a proxy that passes the browser's Host on (nginx's ``proxy_set_header Host
# $host``), so each sees the public host: the guard does not move sign-ins to its canonical origin.
PUBLIC_HOST = {"host": httpx.URL(PUBLIC_URL).host}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(
        cookies=no_cookies(), timeout=30, limits=limits, headers=PUBLIC_HOST
    ) as client:
        yield client


class Idp:
    """The provider process's records and fault controls, over HTTP."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self._http = http
        self._url = url + "/__test__"

    async def reset(self) -> None:
        (await self._http.post(self._url + "/reset")).raise_for_status()

    async def count(self, *, grant_type: str | None = None, error: str | None = None) -> int:
        calls: list[dict[str, Any]] = (await self._http.get(self._url + "/calls")).json()
        return sum(
            1
            for call in calls
            if call["endpoint"] == "token"
            and (grant_type is None or call["grant_type"] == grant_type)
            and (error is None or call["error"] == error)
        )

    async def slow_next_token_call(self, seconds: float) -> None:
        (await self._http.post(self._url + "/slow", params={"seconds": seconds})).raise_for_status()

    async def stall_next_token_call(self) -> None:
        (await self._http.post(self._url + "/stall")).raise_for_status()

    async def stalls(self) -> dict[str, int]:
        stalls: dict[str, int] = (await self._http.get(self._url + "/stall")).json()
        return stalls


@pytest.fixture
async def idp(running: Cluster, http: httpx.AsyncClient) -> Idp:
    idp = Idp(http, running.provider.url)
    await idp.reset()
    return idp


@pytest.fixture
async def redis(running: Cluster) -> AsyncIterator[Redis]:
    """A client on the workers' own redis-server (the ``redis`` engine)."""
    assert running.engine == "redis"
    client = Redis.from_url(running.redis.url)
    yield client
    await client.aclose()
