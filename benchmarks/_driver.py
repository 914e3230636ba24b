"""A raw ASGI driver: the scope dict built once, ``receive``/``send`` by hand, nothing else per request.

``httpx.ASGITransport`` costs hundreds of microseconds per request, more than the apps measured here.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from starlette.types import ASGIApp, Message

from . import _browser
from ._apps import PATH


def http_scope(
    cookie: str,
    *,
    path: str = PATH,
    accept: bytes | None = None,
    others: int = _browser.OTHER_COOKIES,
    minimal: bool = False,
) -> dict[str, Any]:
    """A GET as uvicorn passes it, with a browser's headers (:mod:`._browser`) and ``cookie`` (the session's
    ``name=value``, or "") among ``others`` bytes of the app's other cookies; ``minimal``: the earlier
    benchmark's four headers and the session cookie alone. Copy it per request (middlewares write into it).
    """
    if minimal:
        headers = _browser.minimal_headers(cookie)
    else:
        headers = _browser.headers(_browser.cookie_header(cookie, others=others))
    if accept is not None:
        headers = [(k, accept if k == b"accept" else v) for k, v in headers]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 54321),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


async def receive_request() -> Message:
    return _REQUEST


async def discard(message: Message) -> None:
    pass


async def timed(app: ASGIApp, scope: dict[str, Any], n: int) -> float:
    """CPU seconds this process spent on ``n`` requests in a row; answers are thrown away unread.

    CPU time, not wall time: on a shared machine the process is often descheduled, and wall time would
    count the other tenants' work as ours."""
    receive, send = receive_request, discard
    started = time.process_time()
    for _ in range(n):
        await app(scope.copy(), receive, send)
    return time.process_time() - started


@dataclasses.dataclass
class Answer:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: bytes) -> list[str]:
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == name]

    def set_cookie(self, name: str) -> str | None:
        """The value this answer sets for cookie ``name`` ("" when it clears it), or ``None``."""
        for line in self.header(b"set-cookie"):
            key, _, rest = line.partition("=")
            if key.strip() == name:
                return rest.split(";", 1)[0]
        return None


async def call(app: ASGIApp, scope: dict[str, Any]) -> Answer:
    """One request, keeping the answer."""
    answer = Answer()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    await app(scope.copy(), receive_request, send)
    return answer


def with_query(scope: dict[str, Any], url: str) -> dict[str, Any]:
    """A copy of ``scope`` for ``url``'s path and query."""
    path, _, query = url.split("://", 1)[-1].partition("/")[2].partition("?")
    copy = scope.copy()
    copy["path"] = "/" + path
    copy["raw_path"] = copy["path"].encode()
    copy["query_string"] = query.encode()
    return copy
