"""Driving the ASGI lifespan protocol in-process, as a server does."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.types import ASGIApp, Message


@contextlib.asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[Message]:
    """Send ``lifespan.startup`` and yield the app's answer; on exit, shut down when startup completed."""
    to_app, app_inbox = anyio.create_memory_object_stream[Message](4)
    app_outbox, from_app = anyio.create_memory_object_stream[Message](4)
    scope: dict[str, Any] = {
        "type": "lifespan",
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "state": {},
    }
    with to_app, app_inbox, app_outbox, from_app:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(app, scope, app_inbox.receive, app_outbox.send)
            await to_app.send({"type": "lifespan.startup"})
            with anyio.fail_after(30):
                started = await from_app.receive()
            yield started
            if started["type"] == "lifespan.startup.complete":
                await to_app.send({"type": "lifespan.shutdown"})
                with anyio.fail_after(30):
                    assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"
            tasks.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[None]:
    """The app started around the block and shut down after it, as a server runs it."""
    async with lifespan(app) as started:
        assert started == {"type": "lifespan.startup.complete"}, started
        yield
