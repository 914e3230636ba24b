"""The multiprocess tests' app worker (``tests.multiprocess.worker_app``), plus ``GET /__soak__/stats``:
the sizes of the guard's in-process caches and waiting rooms, the process's resident memory, and the token
calls that ended without an answer as the guard saw them (its own timeout, a connection that failed)."""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from tests.multiprocess.worker_app import app as guard

from .memory import resident_kib


class Watch(httpx.AsyncBaseTransport):
    """The guard's transport, watched: each token call that ends without an answer (cancelled by the
    guard's ``http_timeout``, or a transport error) is written down with when it ran and a digest of the
    code or refresh token it carried, so the soak can tell a 503 the provider's slowness explains (a loaded
    machine is slow too, not only an injected fault) from one nothing explains."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.unanswered: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.time()
        try:
            return await self._inner.handle_async_request(request)
        except BaseException as exc:  # the guard's fail_after cancels: that is the case to see
            if request.url.path.endswith("/token"):
                form = parse_qs(request.content.decode("ascii", "replace"))
                secret = (form.get("code") or form.get("refresh_token") or [""])[0]
                self.unanswered.append(
                    {
                        "started": started,
                        "ended": time.time(),
                        "why": type(exc).__name__,
                        "secret": hashlib.sha256(secret.encode()).hexdigest()[:24],
                    }
                )
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


watch = Watch(guard._http._transport)
guard._http._transport = watch


def stats() -> dict[str, Any]:
    return {
        "unanswered_token_calls": watch.unanswered,
        "rss_kib": resident_kib(),
        "published_states": len(guard._published.by_cookie),
        "cookies_seen_once": len(guard._published._seen),
        "exchanges_in_flight": len(guard._flows._waiting),
        "duplicates_waiting": guard._flows._duplicates_waiting,
        "refreshes_in_flight": len(guard._refresher._flights),
    }


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http" and scope["path"] == "/__soak__/stats":
        await JSONResponse(stats())(scope, receive, send)
    elif scope["type"] == "http" and scope["path"] == "/__soak__/end-sessions":
        # the app ends a user's sessions (a password change): OAuthGuard.end_sessions, in this worker
        sub = parse_qs(scope["query_string"].decode())["sub"][0]
        await JSONResponse({"ended": await guard.end_sessions(sub=sub)})(scope, receive, send)
    else:
        await guard(scope, receive, send)
