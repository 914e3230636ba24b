"""The test provider served for real (uvicorn), with controls for tests in another process.

``/__test__/*`` reads the provider's records and queues faults, since ``transport()`` faults and
``provider.calls`` do not cross processes. ``POST /__test__/hold`` holds back the answer to the next token
call after the provider has acted on it (new tokens issued, the old refresh token spent) until
``POST /__test__/release``: a refresh whose answer is on its way while the test does something else. ``POST /__test__/stall`` makes the next token call stall
until its client goes away, and then drops it unanswered and unprocessed: a request lost with a worker
that died waiting for it.

Configured from the environment: ``TEST_IDP_ISSUER`` (its own URL), ``TEST_IDP_CLIENT_ID``,
``TEST_IDP_CLIENT_SECRET``, ``TEST_IDP_ACCESS_TOKEN_TTL`` (seconds).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from asgi_oauth_guard.testing import OAuthTestProvider

provider = OAuthTestProvider(
    issuer=os.environ["TEST_IDP_ISSUER"],
    client_id=os.environ["TEST_IDP_CLIENT_ID"],
    client_secret=os.environ["TEST_IDP_CLIENT_SECRET"],
    access_token_ttl=float(os.environ.get("TEST_IDP_ACCESS_TOKEN_TTL", "3600")),
)


@dataclasses.dataclass
class Stalls:
    armed: int = 0
    entered: int = 0
    dropped: int = 0


stalls = Stalls()


@dataclasses.dataclass
class Held:
    armed: int = 0
    held: int = 0
    refresh_token_sha256: str | None = None  # of the refresh token in the held answer
    release: anyio.Event | None = None


held = Held()


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def calls(request: Request) -> JSONResponse:
    return JSONResponse(
        [
            {
                "endpoint": c.endpoint,
                "grant_type": c.grant_type,
                "status": c.status,
                "error": c.error,
                "fault": c.fault,
                "token_sha256": sha256(c.params.get("token", "")) if c.endpoint == "revoke" else None,
            }
            for c in provider.calls
        ]
    )


async def reset(request: Request) -> JSONResponse:
    provider.reset_calls()
    stalls.armed = stalls.entered = stalls.dropped = 0
    if held.release is not None:
        held.release.set()
    held.armed = held.held = 0
    held.refresh_token_sha256 = held.release = None
    return JSONResponse({})


async def slow(request: Request) -> JSONResponse:
    params = request.query_params
    provider.slow_next(int(params.get("n", "1")), float(params["seconds"]), endpoint="token")
    return JSONResponse({})


async def hold(request: Request) -> JSONResponse:
    if request.method == "POST":
        held.armed += 1
        held.release = anyio.Event()
    return JSONResponse(
        {"armed": held.armed, "held": held.held, "refresh_token_sha256": held.refresh_token_sha256}
    )


async def release(request: Request) -> JSONResponse:
    if held.release is not None:
        held.release.set()
    return JSONResponse({})


async def answer_held_back(scope: Scope, receive: Receive, send: Send) -> None:
    messages: list[Message] = []

    async def keep(message: Message) -> None:
        messages.append(message)

    await provider(scope, receive, keep)
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    token = json.loads(body).get("refresh_token") if body.startswith(b"{") else None
    held.refresh_token_sha256 = sha256(token) if isinstance(token, str) else None
    held.held += 1
    assert held.release is not None
    await held.release.wait()
    for message in messages:
        await send(message)


async def stall(request: Request) -> JSONResponse:
    if request.method == "POST":
        stalls.armed += 1
    return JSONResponse(dataclasses.asdict(stalls))


controls = Starlette(
    routes=[
        Route("/__test__/calls", calls),
        Route("/__test__/reset", reset, methods=["POST"]),
        Route("/__test__/slow", slow, methods=["POST"]),
        Route("/__test__/stall", stall, methods=["GET", "POST"]),
        Route("/__test__/hold", hold, methods=["GET", "POST"]),
        Route("/__test__/release", release, methods=["POST"]),
    ]
)


async def stall_until_gone(receive: Receive) -> None:
    more = True
    while more:  # the whole request arrives: the client waits for the answer
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        more = message.get("more_body", False)
    stalls.entered += 1
    while (await receive())["type"] != "http.disconnect":
        pass
    stalls.dropped += 1


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http" and scope["path"].startswith("/__test__/"):
        await controls(scope, receive, send)
    elif scope["type"] == "http" and scope["path"] == "/token" and stalls.armed:
        stalls.armed -= 1
        await stall_until_gone(receive)
    elif scope["type"] == "http" and scope["path"] == "/token" and held.armed:
        held.armed -= 1
        await answer_held_back(scope, receive, send)
    else:
        await provider(scope, receive, send)
