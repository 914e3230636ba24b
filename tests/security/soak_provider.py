"""The multiprocess tests' provider process (``tests.multiprocess.provider_app``), with what the soak adds.

The sign-in page is shown (no auto-approve), so each simulated user signs in as itself. ``/__soak__/*``:

- ``POST users`` ``{"subs": [...]}``: add users.
- ``POST fault`` ``{"kind": "fail", "n", "status"}``, ``{"kind": "timeout", "n"}`` (stall ``timeout_delay``,
  then 503, unprocessed), ``{"kind": "slow", "n", "seconds"}`` (answered late, processed),
  ``{"kind": "revoke", "sub"}`` (an admin revokes every grant of a user), ``{"kind": "down", "on"}``.
- ``POST configure`` ``{"timeout_delay": seconds}``.
- ``GET records``: every token call, with a hash of the code or refresh token it carried (never the value).
- ``GET stats``: the provider's resident memory.
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.multiprocess.provider_app import app as provider_app
from tests.multiprocess.provider_app import provider

from .memory import resident_kib

provider.auto_approve = False


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:24]


async def users(request: Request) -> JSONResponse:
    for sub in (await request.json())["subs"]:
        provider.add_user(sub)
    return JSONResponse({})


async def fault(request: Request) -> JSONResponse:
    spec: dict[str, Any] = await request.json()
    kind = spec["kind"]
    if kind == "fail":
        provider.fail_next(int(spec["n"]), status=int(spec["status"]), endpoint="token")
    elif kind == "timeout":
        provider.timeout_next(int(spec["n"]), endpoint="token")
    elif kind == "slow":
        provider.slow_next(int(spec["n"]), float(spec["seconds"]), endpoint="token")
    elif kind == "revoke":
        provider.revoke_grants(str(spec["sub"]))
    elif kind == "down":
        provider.down = bool(spec["on"])
    else:
        return JSONResponse({"error": f"unknown fault {kind!r}"}, status_code=400)
    return JSONResponse({})


async def configure(request: Request) -> JSONResponse:
    provider.timeout_delay = float((await request.json())["timeout_delay"])
    return JSONResponse({})


async def records(request: Request) -> JSONResponse:
    return JSONResponse(
        [
            {
                "grant_type": call.grant_type,
                "secret": digest(call.params.get("code") or call.params.get("refresh_token") or ""),
                "status": call.status,
                "error": call.error,
                "fault": call.fault,
                "at": call.at,
            }
            for call in provider.calls
            if call.endpoint == "token"
        ]
    )


async def logout_token(request: Request) -> JSONResponse:
    """A signed back-channel logout token for every session of ``sub`` (what the provider would POST)."""
    return JSONResponse({"logout_token": provider.logout_token(sub=request.query_params["sub"])})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse({"rss_kib": resident_kib(), "calls": len(provider.calls)})


controls = Starlette(
    routes=[
        Route("/__soak__/users", users, methods=["POST"]),
        Route("/__soak__/fault", fault, methods=["POST"]),
        Route("/__soak__/configure", configure, methods=["POST"]),
        Route("/__soak__/records", records),
        Route("/__soak__/stats", stats),
        Route("/__soak__/logout-token", logout_token),
    ]
)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http" and scope["path"].startswith("/__soak__/"):
        await controls(scope, receive, send)
    else:
        await provider_app(scope, receive, send)
