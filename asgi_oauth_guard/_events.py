"""Events the guard emits, for the app's metrics and alerts: a hook, and stdlib logging."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from ._reasons import Reason

__all__ = ["EventHook", "GuardEvent"]

logger = logging.getLogger("asgi_oauth_guard")

EventKind = Literal["login", "refresh", "refresh_failed", "relogin", "logout", "session_ended"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class GuardEvent:
    """Something that happened to a session. Never carries a token, code, secret or cookie value.

    ``sub`` is the user's subject when known; ``reason`` says why for ``refresh_failed`` and ``relogin``;
    ``detail`` is a short machine-readable cause (``provider_unavailable``, ``invalid_grant``, ...).
    ``logout`` is a sign-out at the logout route; ``session_ended`` a session ended otherwise, with the
    cause as ``detail``: ``backchannel`` (the provider's back-channel logout), ``app``
    (:meth:`OAuthGuard.end_sessions`) or ``user_limit`` (the user's oldest session beyond the cap).
    """

    kind: EventKind
    sub: str | None = None
    reason: Reason | None = None
    detail: str | None = None


EventHook = Callable[[GuardEvent], "Awaitable[None] | None"]


async def emit(hook: EventHook | None, event: GuardEvent) -> None:
    level = logging.WARNING if event.kind in ("refresh_failed", "relogin") else logging.INFO
    if logger.isEnabledFor(level):
        logger.log(
            level,
            "%s sub=%s reason=%s detail=%s",
            event.kind,
            event.sub,
            event.reason.value if event.reason else None,
            event.detail,
        )
    if hook is None:
        return
    try:
        result = hook(event)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("the on_event hook raised; the guard carries on")
