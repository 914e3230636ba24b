"""Real processes: the test provider and four app workers under uvicorn, all on one redis-server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import httpx
import pytest

from ..conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY
from ..redis_server import RedisServer, free_port

REPO = Path(__file__).resolve().parents[2]
PUBLIC_URL = "https://app.example.test"  # what the workers sit behind; the redirect_uri is built on it
WORKERS = 4
ACCESS_TOKEN_TTL = 4.0  # a token is due for refresh half-way through its life: 2 s after it is issued
HTTP_TIMEOUT = 1.0  # the workers' provider timeout; their refresh lock lease is 2 * 1 + 5 = 7 s
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


class Cluster:
    def __init__(self, root: Path, *, workers: int = WORKERS, http_timeout: float = HTTP_TIMEOUT) -> None:
        logs = root / "logs"
        logs.mkdir()
        self.redis = RedisServer(root / "redis")
        self.key_prefix = f"mp:{uuid.uuid4().hex[:8]}:"
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
            "GUARD_REDIS_URL": self.redis.url,
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
        self.redis.start()
        for server in self.servers:
            server.start()
        for server in self.servers:
            server.wait_ready()

    def ensure_running(self) -> None:
        """Start again whatever a previous test killed (same port), and Redis if it was stopped."""
        if not self.redis.running:
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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
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
