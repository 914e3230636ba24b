"""Real servers for the scale-out stores: a Redis Cluster, a Redis Sentinel set-up and a PostgreSQL server.

Started from Debian's packages on free loopback ports, in temporary folders, once per test session and all
three at once (``engines``): each takes a second or two to become ready, so they start in parallel.
A missing binary fails the tests, never skips them: ``scripts/test`` installs them.

- :class:`RedisClusterServers`: 3 masters with 1 replica each (``redis-cli --cluster create``).
- :class:`SentinelServers`: 1 master, 1 replica, 3 sentinels (``redis-server --sentinel``) watching it.
- :class:`PostgresServer`: ``initdb`` into a temporary folder, ``postgres`` run as an unprivileged user
  when the tests run as root (PostgreSQL refuses to run as root).

Tests that kill a master (the failover tests) restore the set-up afterwards: the killed server comes
back and rejoins as a replica, so later tests see 3 masters with 1 replica each and 1 master with 1
replica again, whichever server is master now.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .redis_server import free_port, redis_server_binary

__all__ = [
    "Engines",
    "PostgresServer",
    "RedisClusterServers",
    "SentinelServers",
    "engines",
    "postgres_server",
    "redis_cluster",
    "redis_sentinel",
]

READY_TIMEOUT = 60.0  # generous: the machine may be loaded, and a cluster settles in a few seconds
CLUSTER_NODE_TIMEOUT_MS = 2000  # a master unreachable this long is failed over by its replica
SENTINEL_DOWN_AFTER_MS = 2000  # the same for the sentinels
SENTINEL_SERVICE = "guard"


def _fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


def _binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        _fail(f"{name} is not installed: these tests need Debian's {package}; scripts/test installs it")
    assert found is not None
    return found


def _command(port: int, *words: str, timeout: float = 5.0) -> bytes:
    """One Redis command over a raw socket (inline protocol): no client library state to leak."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(" ".join(words).encode() + b"\r\n")
        data = b""
        sock.settimeout(timeout)
        while True:
            chunk = sock.recv(65536)
            data += chunk
            if not chunk or _complete(data):
                return data


def _complete(data: bytes) -> bool:
    if not data.endswith(b"\r\n"):
        return False
    if data[:1] == b"$":
        length = int(data[1 : data.index(b"\r\n")])
        return length < 0 or len(data) >= data.index(b"\r\n") + 2 + length + 2
    if data[:1] == b"*":
        return _array_complete(data)
    return True


def _array_complete(data: bytes) -> bool:
    try:
        _parse(data, 0)
    except (IndexError, ValueError):
        return False
    return True


def _parse(data: bytes, at: int) -> tuple[object, int]:
    end = data.index(b"\r\n", at)
    kind, body = data[at : at + 1], data[at + 1 : end]
    if kind in (b"+", b"-", b":"):
        return body.decode(), end + 2
    if kind == b"$":
        length = int(body)
        if length < 0:
            return None, end + 2
        if len(data) < end + 2 + length + 2:
            raise IndexError
        return data[end + 2 : end + 2 + length].decode(), end + 2 + length + 2
    if kind == b"*":
        count, items, at = int(body), [], end + 2
        for _ in range(max(count, 0)):
            item, at = _parse(data, at)
            items.append(item)
        return items, at
    raise ValueError(kind)


def redis_call(port: int, *words: str) -> object:
    """A command's parsed answer (strings, ints as strings, lists); raises OSError when unreachable."""
    return _parse(_command(port, *words), 0)[0]


def _info(port: int, section: str) -> dict[str, str]:
    text = str(redis_call(port, "INFO", section))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class _RedisProcess:
    """One redis-server (or sentinel) process with its arguments, restartable on the same port and folder."""

    def __init__(self, name: str, directory: Path, argv: list[str], port: int) -> None:
        self.name = name
        self.directory = directory
        self.port = port
        self._argv = argv
        self._log = directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                self._argv, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not self.alive:
                _fail(f"{self.name} exited at start:\n{self.log_tail()}")
            try:
                if redis_call(self.port, "PING") == "PONG":
                    return
            except OSError:
                pass
            time.sleep(0.02)
        _fail(f"{self.name} did not answer PING within {READY_TIMEOUT} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: what a crashed host looks like to its clients and peers."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _redis_argv(binary: str, port: int, directory: Path, *extra: str) -> list[str]:
    return [
        binary,
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
        *("--save", "", "--appendonly", "no", "--protected-mode", "no"),
        *extra,
    ]


def _until(what: str, check: object, *, within: float = READY_TIMEOUT, logs: str = "") -> None:
    assert callable(check)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    _fail(f"{what}: not within {within} s\n{logs}")


class RedisClusterServers:
    """A Redis Cluster of 3 masters with 1 replica each, on 6 free loopback ports."""

    def __init__(self, directory: Path) -> None:
        binary = redis_server_binary()
        self._cli = _binary("redis-cli", "redis-tools")
        self.nodes: list[_RedisProcess] = []
        for i in range(6):
            port = free_port()
            node_dir = directory / f"node{i}"
            argv = _redis_argv(
                binary,
                port,
                node_dir,
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                # The bus port: a free one of its own (the default, port + 10000, may be taken or too high).
                *("--cluster-port", str(free_port())),
                *("--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS)),
                # A replica promotes itself however long its master was gone: a test kills masters.
                *("--cluster-replica-validity-factor", "0"),
            )
            self.nodes.append(_RedisProcess(f"cluster node {i}", node_dir, argv, port))

    @property
    def url(self) -> str:
        """The URL form of the examples: any one node; the client discovers the others."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready()
        created = subprocess.run(
            [
                self._cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                *("--cluster-replicas", "1", "--cluster-yes"),
            ],
            capture_output=True,
            timeout=READY_TIMEOUT,
            check=False,
        )
        if created.returncode != 0:
            _fail(f"redis-cli --cluster create failed:\n{created.stdout.decode()}{created.stderr.decode()}")
        self.wait_healthy()

    def masters(self) -> list[_RedisProcess]:
        return [n for n in self.nodes if n.alive and _info(n.port, "replication").get("role") == "master"]

    def healthy(self) -> bool:
        live = [n for n in self.nodes if n.alive]
        if len(live) != 6:
            return False
        for node in live:
            if _info(node.port, "cluster").get("cluster_enabled") != "1":
                return False
            info = str(redis_call(node.port, "CLUSTER", "INFO"))
            if "cluster_state:ok" not in info or "cluster_known_nodes:6" not in info:
                return False
        masters = self.masters()
        if len(masters) != 3:
            return False
        return all(_info(m.port, "replication").get("connected_slaves") == "1" for m in masters)

    def wait_healthy(self) -> None:
        _until("the Redis Cluster has 3 masters with a replica each", self.healthy, logs=self.logs())

    def master_of(self, key: str) -> _RedisProcess:
        """The node that serves ``key`` now (by CLUSTER NODES of a live node)."""
        ask = next(n for n in self.nodes if n.alive)
        slot = int(str(redis_call(ask.port, "CLUSTER", "KEYSLOT", key)))
        for line in str(redis_call(ask.port, "CLUSTER", "NODES")).splitlines():
            fields = line.split()
            if "master" not in fields[2].split(",") or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no master serves slot {slot}")

    def kill_master(self, node: _RedisProcess) -> None:
        """SIGKILL a master and wait until its replica has taken over (cluster_state:ok again)."""
        node.kill()

        def failed_over() -> bool:
            others = [n for n in self.nodes if n.alive]
            return len(self.masters()) == 3 and all(
                "cluster_state:ok" in str(redis_call(n.port, "CLUSTER", "INFO")) for n in others
            )

        _until("a replica takes over from the killed master", failed_over, logs=self.logs())

    def restore(self) -> None:
        """Start every killed node again: it rejoins as a replica of whoever took over."""
        for node in self.nodes:
            if not node.alive:
                node.start()
                node.wait_ready()
        self.wait_healthy()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log_tail(8)}" for n in self.nodes)


class SentinelServers:
    """One master, one replica, and three sentinels that fail the master over after 2 s down."""

    def __init__(self, directory: Path) -> None:
        binary = redis_server_binary()
        master_port, replica_port = free_port(), free_port()
        self.master = _RedisProcess(
            "sentinel-managed master",
            directory / "a",
            _redis_argv(binary, master_port, directory / "a"),
            master_port,
        )
        self.replica = _RedisProcess(
            "sentinel-managed replica",
            directory / "b",
            _redis_argv(binary, replica_port, directory / "b", "--replicaof", "127.0.0.1", str(master_port)),
            replica_port,
        )
        self.sentinels: list[_RedisProcess] = []
        for i in range(3):
            port = free_port()
            folder = directory / f"sentinel{i}"
            folder.mkdir(parents=True)
            config = folder / "sentinel.conf"  # a sentinel rewrites its own config: a file of its own
            config.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {folder}\n"
                f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {SENTINEL_DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SENTINEL_SERVICE} 10000\n"
                f"sentinel parallel-syncs {SENTINEL_SERVICE} 1\n"
            )
            self.sentinels.append(
                _RedisProcess(f"sentinel {i}", folder, [binary, str(config), "--sentinel"], port)
            )

    @property
    def servers(self) -> list[_RedisProcess]:
        return [self.master, self.replica, *self.sentinels]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SENTINEL_SERVICE}/0"

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    def start(self) -> None:
        for server in self.servers:
            server.start()
        for server in self.servers:
            server.wait_ready()
        self.wait_healthy()

    def current_master(self) -> _RedisProcess:
        """The server the sentinels name as master now."""
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            answer = redis_call(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE)
            if isinstance(answer, list) and answer:
                port = int(str(answer[1]))
                return self.master if port == self.master.port else self.replica
        raise AssertionError("no sentinel answers")

    def healthy(self) -> bool:
        if not all(s.alive for s in self.servers):
            return False
        master = self.current_master()
        for sentinel in self.sentinels:
            answer = redis_call(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE)
            if not isinstance(answer, list) or int(str(answer[1])) != master.port:
                return False
            info = str(redis_call(sentinel.port, "INFO", "sentinel"))
            if "slaves=1,sentinels=3" not in info:
                return False
        replication = _info(master.port, "replication")
        if replication.get("role") != "master" or replication.get("connected_slaves") != "1":
            return False
        other = self.replica if master is self.master else self.master
        return _info(other.port, "replication").get("master_link_status") == "up"

    def wait_healthy(self) -> None:
        _until("the sentinels watch a master with one replica", self.healthy, logs=self.logs())

    def kill_master(self) -> _RedisProcess:
        """SIGKILL the master; returns it. The sentinels promote the replica after ``down-after``."""
        master = self.current_master()
        master.kill()
        return master

    def wait_promoted(self, killed: _RedisProcess) -> None:
        def promoted() -> bool:
            return self.current_master() is not killed

        _until("the sentinels promote the replica", promoted, logs=self.logs())

    def restore(self) -> None:
        """Start the killed server again; the sentinels turn it into the new master's replica."""
        for server in self.servers:
            if not server.alive:
                server.start()
                server.wait_ready()
        self.wait_healthy()

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.log_tail(8)}" for s in self.servers)


def postgres_bindir() -> Path:
    """Debian installs the server under /usr/lib/postgresql/<major>/bin; the newest one there."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        _fail(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): these tests need Debian's "
            "postgresql package; scripts/test installs it"
        )
    return Path(found[-1]).parent


class PostgresServer:
    """A throwaway PostgreSQL: initdb into a temporary folder, trust auth on loopback, no fsync."""

    USER = "guard"

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        # Under /tmp rather than pytest's folder, which root keeps private: the server's user must reach it.
        self.directory = Path(tempfile.mkdtemp(prefix="guard-postgres-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self._log = self.directory / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: run it as an unprivileged account.
            self._user = "nobody"
            account = pwd.getpwnam(self._user)
            os.chown(self.directory, account.pw_uid, account.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str], **options: object) -> subprocess.Popen[bytes]:
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(self.directory)}
        return subprocess.Popen(argv, env=env, user=self._user, cwd=self.directory, **options)  # type: ignore[call-overload,no-any-return]

    def start(self) -> None:
        with self._log.open("ab") as log:
            if not self.data.exists():
                initdb = self._run(
                    [
                        str(self.bindir / "initdb"),
                        *("-D", str(self.data), "-U", self.USER, "--auth=trust", "--no-sync"),
                        *("-E", "UTF8", "--no-instructions"),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                if initdb.wait(timeout=READY_TIMEOUT) != 0:
                    _fail(f"initdb failed:\n{self.log_tail()}")
            self.process = self._run(
                [
                    str(self.bindir / "postgres"),
                    *(
                        "-D",
                        str(self.data),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(self.port),
                        "-k",
                        str(self.directory),
                    ),
                    *("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
                    *("-c", "max_connections=300", "-c", "shared_buffers=32MB"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        def ready() -> bool:
            if self.process is None or self.process.poll() is not None:
                _fail(f"postgres exited at start:\n{self.log_tail()}")
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
            except psycopg.OperationalError:
                return False
            return True

        _until("postgres accepts connections", ready, logs=self.log_tail())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Engines:
    """The three set-ups, started together."""

    def __init__(self, root: Path) -> None:
        self.cluster = RedisClusterServers(root / "cluster")
        self.sentinel = SentinelServers(root / "sentinel")
        self.postgres = PostgresServer()

    def start(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(s.start) for s in (self.cluster, self.sentinel, self.postgres)]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                self.stop()
                raise error

    def stop(self) -> None:
        for stop in (self.cluster.stop, self.sentinel.stop, self.postgres.stop):
            with contextlib.suppress(Exception):
                stop()
        self.postgres.remove()


@pytest.fixture(scope="session")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    """The Redis Cluster, the Sentinel set-up and PostgreSQL, started at once for the whole session."""
    started = Engines(tmp_path_factory.mktemp("engines"))
    try:
        started.start()
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def redis_cluster(engines: Engines) -> RedisClusterServers:
    return engines.cluster


@pytest.fixture(scope="session")
def redis_sentinel(engines: Engines) -> SentinelServers:
    return engines.sentinel


@pytest.fixture(scope="session")
def postgres_server(engines: Engines) -> PostgresServer:
    return engines.postgres
