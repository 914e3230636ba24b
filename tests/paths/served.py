"""Real servers for the path and proxy tests: uvicorn in a thread on a socket of our own, a raw HTTP client
that sends the request target exactly as written (httpx would normalise it), and a small reverse proxy."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp


@contextlib.contextmanager
def serve(app: ASGIApp, **options: Any) -> Iterator[int]:
    """``app`` served by uvicorn (its defaults, plus ``options``) on a loopback port; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    options.setdefault("lifespan", "off")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)  # polling a real server's readiness, bounded by the deadline
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@dataclasses.dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def raw_request(
    port: int,
    target: str,
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    source: str | None = None,
) -> RawResponse:
    """One HTTP/1.1 request with ``target`` sent byte for byte, from ``source`` (a loopback address)."""
    lines = [f"{method} {target} HTTP/1.1"]
    sent = headers if headers is not None else [("host", "app.test"), ("accept", "text/html")]
    lines += [f"{k}: {v}" for k, v in sent]
    lines += ["connection: close", f"content-length: {len(body)}", "", ""]
    address = (source, 0) if source else None
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=address) as conn:
        conn.sendall("\r\n".join(lines).encode("latin-1") + body)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = [(k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in header_lines)]
    return RawResponse(int(status_line.split()[1]), parsed, rest)
