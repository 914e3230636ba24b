"""Real servers for the path and proxy tests: uvicorn in a thread on a socket of our own, a raw HTTP client
that sends the request target exactly as written (httpx would normalise it), and a small reverse proxy."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
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


Headers = list[tuple[str, str]]
HeaderRewrite = Callable[[Headers, str], Headers]


def nginx_like(headers: Headers, peer: str) -> Headers:
    """What the nginx set-up of docs/configuration.md sends: the client's Host, the peer appended to
    ``X-Forwarded-For``, ``X-Forwarded-Proto`` set (here: plain http)."""
    return forwarded(headers, peer, proto="http")


def forwarded(
    headers: Headers, peer: str, *, proto: str, host: str | None = None, append: bool = False
) -> Headers:
    """``X-Forwarded-For`` with ``peer`` appended; ``X-Forwarded-Proto`` and ``-Host`` (the client's Host
    unless ``host``) set, replacing the client's, or appended to them with ``append``."""
    client_host = next((v for k, v in headers if k == "host"), "")
    prior = {k: v for k, v in headers if k in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")}
    kept = [(k, v) for k, v in headers if k not in prior]

    def added(name: str, value: str) -> str:
        return f"{prior[name]}, {value}" if append and name in prior else value

    return [
        *kept,
        ("x-forwarded-for", f"{prior['x-forwarded-for']}, {peer}" if "x-forwarded-for" in prior else peer),
        ("x-forwarded-proto", added("x-forwarded-proto", proto)),
        ("x-forwarded-host", added("x-forwarded-host", host or client_host)),
    ]


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    upstream: int
    strip: str
    rewrite: HeaderRewrite


class _ProxyHandler(socketserver.BaseRequestHandler):
    """One request per connection (``Connection: close`` both ways), the head rewritten, the rest piped."""

    server: _ProxyServer

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(30)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk or len(data) > 65536:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        strip = self.server.strip
        if strip:
            if not (target == strip or target.startswith((strip + "/", strip + "?"))):
                client.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                return
            target = target[len(strip) :]
            target = target if target.startswith("/") else "/" + target
        headers = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
        headers = [(k, v) for k, v in headers if k not in ("connection", "keep-alive")]
        headers = self.server.rewrite(headers, self.client_address[0])
        out = [f"{method} {target} {version}", *(f"{k}: {v}" for k, v in headers), "connection: close"]
        with socket.create_connection(("127.0.0.1", self.server.upstream), timeout=30) as upstream:
            upstream.sendall("\r\n".join(out).encode("latin-1") + b"\r\n\r\n" + rest)
            pump = threading.Thread(target=_pipe, args=(client, upstream), daemon=True)
            pump.start()
            _pipe(upstream, client)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            target.sendall(chunk)


@contextlib.contextmanager
def reverse_proxy(
    upstream: int, *, strip_prefix: str = "", rewrite: HeaderRewrite = nginx_like, port: int = 0
) -> Iterator[int]:
    """A reverse proxy on loopback in front of ``upstream``: strips ``strip_prefix`` from the path (the
    app behind runs with ``--root-path``) and rewrites the headers with ``rewrite``; yields its port."""
    server = _ProxyServer(("127.0.0.1", port), _ProxyHandler)
    server.upstream, server.strip, server.rewrite = upstream, strip_prefix.rstrip("/"), rewrite
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)
