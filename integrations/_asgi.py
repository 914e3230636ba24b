"""What the WSGI-style integrations (Flask, Django) share: a framework app that answers the ASGI lifespan and
runs each request in a context of its own, and the guard's ASGI response collected into status, headers and
body for the framework to send. Starlette's integration shares the error type and :func:`reason_of`."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Awaitable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_oauth_guard import (
    SCOPE_KEY,
    GuardState,
    Identity,
    ProviderUnavailable,
    Reason,
    ReloginRequired,
    StoreUnavailable,
)

__all__ = ["GuardError", "IsolatedApp", "Rendered", "StepUpRequired", "collect", "reason_of", "render"]


class StepUpRequired(Exception):
    """The user's sign-in is too old (or its ``acr`` not one asked for): answered with the guard's step-up
    response. Page loads go to a sign-in that asks the provider for a new authentication, then back; API
    calls get a 401 ``insufficient_user_authentication`` (RFC 9470)."""

    def __init__(self, identity: Identity, *, max_age: int | None, acr_values: tuple[str, ...]) -> None:
        super().__init__("a recent sign-in is required")
        self.identity = identity
        self.max_age = max_age
        self.acr_values = acr_values


GuardError = Reason | ReloginRequired | ProviderUnavailable | StoreUnavailable
Rendered = tuple[int, list[tuple[str, str]], bytes]


class IsolatedApp:
    """A framework's ASGI app with the lifespan answered (the framework has none, so the guard's own startup
    and shutdown run), WebSockets given to ``websockets`` or closed, and each HTTP request run in a fresh copy
    of the context the app was built in, holding only this request's guard state.

    The context a server task starts with can carry the previous request's variables (cpython#140947:
    uvicorn starts a pipelined or paused request from inside the task of the one before it), and asgiref,
    which runs the framework's sync views, keeps its ``CurrentThreadExecutor`` in such a variable: inherited,
    the next request submits its view to an executor that has quit, and answers 500.
    """

    def __init__(self, app: ASGIApp, websockets: ASGIApp | None = None) -> None:
        self._app = app
        self._websockets = websockets
        self._baseline = contextvars.copy_context()

    def prepare(self, context: contextvars.Context, scope: Scope) -> None:
        """Hook: set what else this request's views read from ``context``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            if self._websockets is not None:
                await self._websockets(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1000})
            return
        context = self._baseline.copy()
        state = scope.get(SCOPE_KEY)
        if isinstance(state, GuardState):
            state.publish_in(context)
        self.prepare(context, scope)
        await _run_in(context, self._app(scope, receive, send))


def reason_of(state: GuardState) -> Reason:
    """Why this request's user is anonymous, as a re-login reason."""
    return state.reason if isinstance(state.reason, Reason) else Reason.login_required


async def _answer_lifespan(receive: Receive, send: Send) -> None:
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def render(state: GuardState, scope: Scope, error: GuardError | StepUpRequired) -> Rendered:
    """The guard's answer to ``error`` (a re-login reason, a step-up, or a guard error raised in a view)."""
    request = Request(scope)
    response: ASGIApp
    if isinstance(error, Reason):
        response = await state.guard.relogin_response(request, error)
    elif isinstance(error, StepUpRequired):
        response = state.guard.step_up_response(
            request, error.identity, max_age=error.max_age, acr_values=error.acr_values
        )
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


async def _run_in(context: contextvars.Context, awaitable: Awaitable[None]) -> None:
    """Await ``awaitable`` as a task running in ``context``; cancelling the caller cancels it."""

    async def work() -> None:
        await awaitable

    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 11):
        task = loop.create_task(work(), context=context)
    else:
        task = context.run(loop.create_task, work())
    await task  # a cancelled caller cancels the task it awaits
