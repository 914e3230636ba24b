"""What the guard tells a telemetry backend: its events, and spans around the callback and the refresh.

The core knows only this protocol; ``asgi_oauth_guard.otel`` implements it with OpenTelemetry (the
``otel`` extra). Without one, every span is one shared ``nullcontext``: nothing is imported, and the
request that needs no callback or refresh (the hot path) never reaches this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Mapping
from typing import Literal, Protocol

from ._events import EventHook, GuardEvent

__all__ = ["NO_TELEMETRY", "SpanName", "Telemetry", "with_telemetry"]

SpanName = Literal["callback", "refresh", "refresh_lock", "token_request"]
"""``callback``: a callback request, from its arrival to its answer. ``refresh``: one refresh of a session,
by the request that leads it. ``refresh_lock``: the wait for the session's refresh lock (other workers').
``token_request``: the one call to the token endpoint, inside either (``grant_type`` attribute)."""


class Telemetry(Protocol):
    """A telemetry backend for the guard (``OAuthGuard(telemetry=...)``), such as
    :class:`asgi_oauth_guard.otel.GuardTelemetry`.

    ``on_event`` gets every :class:`GuardEvent`, inside the span it happened in. ``span`` returns a context
    manager around one step of the callback or the refresh; ``attributes`` never carry a token, code,
    cookie or secret. Neither may raise; neither is called for a request that needs no callback or refresh.
    """

    def on_event(self, event: GuardEvent) -> None: ...

    def span(
        self, name: SpanName, attributes: Mapping[str, str]
    ) -> contextlib.AbstractContextManager[object]: ...


class _NoTelemetry:
    _null: contextlib.nullcontext[None] = contextlib.nullcontext()

    def on_event(self, event: GuardEvent) -> None:
        return None

    def span(
        self, name: SpanName, attributes: Mapping[str, str]
    ) -> contextlib.AbstractContextManager[object]:
        return self._null


NO_TELEMETRY: Telemetry = _NoTelemetry()


def with_telemetry(hook: EventHook | None, telemetry: Telemetry | None) -> EventHook | None:
    """The one event hook the guard calls: the telemetry's first (it never raises), then the app's."""
    if telemetry is None:
        return hook
    record = telemetry.on_event
    if hook is None:
        return record

    def both(event: GuardEvent) -> Awaitable[None] | None:
        record(event)
        return hook(event)

    return both
