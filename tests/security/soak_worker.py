"""The multiprocess tests' app worker (``tests.multiprocess.worker_app``), plus ``GET /__soak__/stats``:
the sizes of the guard's in-process caches and waiting rooms, and the process's resident memory."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from tests.multiprocess.worker_app import app as guard

from .memory import resident_kib


def stats() -> dict[str, int]:
    return {
        "rss_kib": resident_kib(),
        "verified_cookies": len(guard._keyring._verified),
        "decrypted_sessions": len(guard._sessions._cache),
        "published_identities": len(guard._published),
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
