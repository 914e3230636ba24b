"""A real ``redis-server`` for the tests: on a free loopback port, stopped and started again on demand.

Use the fixtures from a ``conftest.py`` with ``from tests.redis_server import redis_server, redis_url``.
``redis_server`` is the running :class:`RedisServer` (session-wide); ``redis_url`` its ``redis://`` URL.
Tests that stop or restart Redis make their own ``RedisServer`` so that they disturb no one else.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "free_port", "redis_server", "redis_url"]

READY_TIMEOUT = 10.0


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for outgoing connections' source ports (Linux: 32768-60999 by default)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_EPHEMERAL = _ephemeral_ports()
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, for a server started next, outside the ephemeral range.

    A port the kernel picks (``bind`` to port 0) comes from the range it also gives outgoing connections
    their source ports from, so between the pick and the server's own ``bind`` any connection can take it:
    seen in CI, a sentinel's port taken while the Redis Cluster's nodes connected to each other, and 87 tests
    failed at setup. Ports below the range are never taken that way; this process never hands one out twice.
    """
    low = min(_EPHEMERAL[0], 32768)
    if low > 12000:
        for _ in range(2000):
            port = random.randrange(10000, low)
            if port in _handed_out:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    with socket.socket() as sock:  # a kernel whose ephemeral range leaves no room below it
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed (or not on PATH), and these tests need a real Redis 7: "
            "run the tests with the README's test command, scripts/test, which installs it",
            pytrace=False,
        )
    return binary


class RedisServer:
    """One ``redis-server`` process without persistence unless asked: ``stop(save=True)`` writes a
    snapshot that the next ``start()`` on the same port and directory loads, like a restart in production."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self._binary = redis_server_binary()
        self._process: subprocess.Popen[bytes] | None = None
        self._log = directory / "redis-server.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start on this server's port and wait until it answers PING (bounded)."""
        assert not self.running, "this redis-server is already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    self._binary,
                    *("--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def stop(self, *, save: bool = False) -> None:
        """Shut down cleanly, writing a snapshot first when ``save`` (kept for the next ``start``)."""
        if not self.running:
            return
        assert self._process is not None
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(b"SHUTDOWN SAVE\r\n" if save else b"SHUTDOWN NOSAVE\r\n")
                sock.recv(64)  # the server closes the connection as it exits
        except OSError:
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            raise
        finally:
            self._process = None

    def restart(self, *, keep_data: bool = True) -> None:
        """Stop and start again on the same port; with ``keep_data`` the keys survive, as with persistence."""
        self.stop(save=keep_data)
        self.start()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        answer = b""
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                pytest.fail(f"redis-server exited at start:\n{self.log_tail()}", pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    answer = sock.recv(64)
                if answer.startswith(b"+PONG"):
                    return
            except OSError:
                pass
            time.sleep(0.01)
        self.stop()
        pytest.fail(
            f"redis-server did not answer PING within {READY_TIMEOUT} s (last answer {answer!r}):\n"
            + self.log_tail(),
            pytrace=False,
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The tests' shared redis-server. Do not stop it; make a ``RedisServer`` of your own for that."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url
