"""What the WSGI-style integrations (Flask, Django) share: a framework app that answers the ASGI lifespan,
and the guard's ASGI response collected into status, headers and body for the framework to send."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Awaitable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_oauth_guard import GuardState, ProviderUnavailable, Reason, ReloginRequired, StoreUnavailable

__all__ = ["GuardError", "Rendered", "answer_lifespan", "collect", "render", "run_in"]

GuardError = Reason | ReloginRequired | ProviderUnavailable | StoreUnavailable
Rendered = tuple[int, list[tuple[str, str]], bytes]


async def answer_lifespan(receive: Receive, send: Send) -> None:
    """Complete the lifespan for a framework that has none, so the guard's own startup and shutdown run."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def render(state: GuardState, scope: Scope, error: GuardError) -> Rendered:
    """The guard's answer to ``error`` (a re-login reason, or a guard error raised in a view)."""
    request = Request(scope)
    response: ASGIApp
    if isinstance(error, Reason):
        response = await state.guard.relogin_response(request, error)
    else:
        response = await state.guard.response_for(request, error)
    return await collect(response, scope)


async def collect(response: ASGIApp, scope: Scope) -> Rendered:
    """An ASGI response of the guard's, as status, headers and body."""
    status = 500
    headers: list[tuple[str, str]] = []
    body: list[bytes] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def collect(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            headers.extend((k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", []))
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await response(scope, receive, collect)
    return status, headers, b"".join(body)


async def run_in(context: contextvars.Context, awaitable: Awaitable[None]) -> None:
    """Await ``awaitable`` as a task running in ``context``; cancelling the caller cancels it."""

    async def work() -> None:
        await awaitable

    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 11):
        task = loop.create_task(work(), context=context)
    else:
        task = context.run(loop.create_task, work())
    await task  # a cancelled caller cancels the task it awaits
