"""Refusing a WebSocket handshake before the app accepts it.

Where the server supports the ASGI ``websocket.http.response`` extension (uvicorn does), the refusal is a
plain HTTP response, the same JSON an API call gets (401 ``login_required``, 403, 503 with
``Retry-After``); elsewhere it is a close before the handshake completes, with a close code that says why
(servers answer such a close with 403): 1008 (policy violation) for a missing or refused sign-in or a
foreign ``Origin``, 1013 (try again later) for a provider or store outage.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["CLOSE_POLICY", "CLOSE_TRY_AGAIN", "refusal"]

CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013


def refusal(
    *, status: int, body: Mapping[str, object], close_code: int, headers: Mapping[str, str] | None = None
) -> ASGIApp:
    """An ASGI app that refuses the WebSocket handshake it is given."""

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return  # the client went away first
        if "websocket.http.response" in scope.get("extensions", {}):
            response = JSONResponse(
                dict(body), status_code=status, headers={"Cache-Control": "no-store", **(headers or {})}
            )
            await response(scope, receive, send)  # Starlette sends websocket.http.response.* here
        else:
            reason = str(body.get("reason") or body.get("error") or "")
            await send({"type": "websocket.close", "code": close_code, "reason": reason})

    return refuse
