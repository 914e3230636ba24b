"""The Flask example under uvicorn, on reused keep-alive connections while other processes load the CPU.

uvicorn starts a request that is already buffered when the one before it finishes (pipelined, or read
while the previous response was still being sent: likelier on a busy machine) from inside the previous
request's task, so its context is inherited (cpython#140947). asgiref keeps its ``CurrentThreadExecutor``
in such a context variable: without a fresh context per request, that next request answers 500
(``CurrentThreadExecutor already quit or is broken``). The pipelined pairs here make the inheritance
happen on every pair, so even the short run fails without the fix; the keep-alive clients are the
ordinary traffic around them.
"""

from __future__ import annotations

import collections
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx
import pytest

from .test_served import served

API = {"accept": "application/json"}
# A busy loop that ends by itself, so a hog outlives a crashed test by at most this long.
HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"


@pytest.fixture
def busy_cpu() -> Iterator[None]:
    """Two processes spinning on the CPU for the test's duration (bounded at 120 s each)."""
    hogs = [subprocess.Popen([sys.executable, "-c", HOG.format(seconds=120)]) for _ in range(2)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def read_status(reader: BinaryIO) -> int:
    """Read one response (status line, headers, a Content-Length body); its status."""
    status_line = reader.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return int(status_line.split()[1])


def pipelined(base: str, pairs: int, statuses: collections.Counter[int]) -> None:
    """Two requests written at once, ``pairs`` times, on one connection: the second is always buffered
    while the first is answered."""
    url = urlsplit(base)
    request = f"GET /public HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
    with (
        socket.create_connection((url.hostname, url.port), timeout=30) as sock,
        sock.makefile("rb") as reader,
    ):
        for _ in range(pairs):
            sock.sendall(request * 2)
            for _ in range(2):
                status = read_status(reader)
                statuses[status] += 1
                if status == 500:
                    return  # uvicorn closes the connection after a 500


def keep_alive(base: str, count: int, statuses: collections.Counter[int], *, signed_in: bool) -> None:
    """One client, one connection, ``count`` requests back to back: pages and API calls."""
    with httpx.Client(base_url=base, headers={"accept": "text/html"}, timeout=30) as client:
        if signed_in:
            assert (
                client.get("/auth/login", params={"next": "/api/me"}, follow_redirects=True).status_code
                == 200
            )
        for i in range(count):
            response = client.get("/api/me", headers=API) if i % 2 else client.get("/public")
            statuses[response.status_code] += 1


def run_load(total: int) -> collections.Counter[int]:
    statuses: collections.Counter[int] = collections.Counter()
    pairs = total // 8  # a quarter of the requests pipelined, in pairs
    per_client = (total - 2 * pairs) // 3
    with served("flask") as base:
        workers = [
            threading.Thread(target=pipelined, args=(base, pairs, statuses)),
            threading.Thread(
                target=keep_alive, args=(base, per_client, statuses), kwargs={"signed_in": True}
            ),
            threading.Thread(
                target=keep_alive, args=(base, per_client, statuses), kwargs={"signed_in": False}
            ),
            threading.Thread(
                target=keep_alive, args=(base, per_client, statuses), kwargs={"signed_in": False}
            ),
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return statuses


def test_the_flask_example_under_load_never_answers_500(busy_cpu: None) -> None:
    statuses = run_load(320)
    assert statuses[500] == 0, dict(statuses)
    assert sum(statuses.values()) == 320 and set(statuses) <= {200, 401}, dict(statuses)


@pytest.mark.slow
def test_the_flask_example_under_load_2000_requests(busy_cpu: None) -> None:
    statuses = run_load(2000)
    assert statuses[500] == 0, dict(statuses)
    assert sum(statuses.values()) == 2000 and set(statuses) <= {200, 401}, dict(statuses)
