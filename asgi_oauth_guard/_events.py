"""Events the guard emits, for the app's metrics and alerts: a hook, and stdlib logging."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from ._reasons import Reason

__all__ = ["EventHook", "EventKind", "GuardEvent"]

logger = logging.getLogger("asgi_oauth_guard")

EventKind = Literal[
    "login",
    "code_exchange",
    "duplicate_absorbed",
    "refresh",
    "refresh_shared",
    "refresh_failed",
    "relogin",
    "logout",
    "session_ended",
    "store_error",
    "offline_grant_lost",
    "offline_grant_restored",
]

# What a naive client would have repeated at the provider is worth a DEBUG line, not one per request at INFO.
_LEVELS: dict[str, int] = {
    "refresh_failed": logging.WARNING,
    "relogin": logging.WARNING,
    "offline_grant_lost": logging.WARNING,
    "code_exchange": logging.DEBUG,
    "duplicate_absorbed": logging.DEBUG,
    "refresh_shared": logging.DEBUG,
    "store_error": logging.DEBUG,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GuardEvent:
    """Something that happened to a session. Never carries a token, code, secret or cookie value.

    ``sub`` is the user's subject when known; ``provider`` the name of the provider concerned, when one is;
    ``reason`` says why for ``refresh_failed`` and ``relogin``; ``detail`` is a short machine-readable
    cause (``provider_unavailable``, ``invalid_grant``, ...). The kinds:

    - ``login``: a sign-in completed (a new session).
    - ``code_exchange``: the one token request for an authorization code; ``detail`` is ``ok``, the
      provider's error code, or ``provider_unavailable``.
    - ``duplicate_absorbed``: a callback for a code another request is exchanging or has exchanged,
      answered from its recorded outcome with no token request: ``detail`` is ``concurrent`` (it waited
      for the exchange) or ``late`` (a reload, the back button).
    - ``refresh``: the provider issued fresh tokens for a session (once per refresh, however many requests
      waited for it).
    - ``refresh_shared``: a request that needed a refresh and got another's instead of sending the refresh
      token again: ``detail`` is ``in_process`` (it waited for a refresh in this process) or
      ``other_worker`` (another process or host refreshed the session while this one waited).
    - ``refresh_failed``: a refresh did not give fresh tokens; ``reason`` is ``refresh_rejected`` when the
      provider refused the user's grant, and ``detail`` says why.
    - ``relogin``: a request answered with the re-login response, for ``reason``; also a sign-in
      turned away after its code exchange (``reason`` ``access_denied``, ``detail`` ``on_login``: the
      app's ``on_login`` refused it, ``on_login_error``: the hook failed, ``step_up``: the ID token did
      not show the ``max_age``/``acr_values`` asked).
    - ``logout``: a sign-out at the logout route.
    - ``session_ended``: a session ended otherwise, with the cause as ``detail``: ``backchannel`` (the
      provider's back-channel logout), ``app`` (:meth:`OAuthGuard.end_sessions`), ``user_limit`` (the
      user's oldest session beyond the cap), ``max_age``, ``idle_timeout`` or ``refresh_token_expired``.
    - ``offline_grant_lost``: a user's offline grant needs their consent again (``detail``: ``revoked``,
      ``expired``, ``idle``, ``no_refresh_token``), once per grant lost: tell the user to sign in.
    - ``offline_grant_restored``: a sign-in brought a lost offline grant back.
    - ``store_error``: the store failed (the request got a 503 or carried on without it); ``detail`` is
      the operation: ``read``, ``write``, ``claim``, ``delete``, ``lock``, ``unlock``, ``index read``,
      ``index write``.

    New kinds may be added: a hook should ignore the ones it does not know.
    """

    kind: EventKind
    sub: str | None = None
    reason: Reason | None = None
    detail: str | None = None
    provider: str | None = None


EventHook = Callable[[GuardEvent], "Awaitable[None] | None"]


async def emit(hook: EventHook | None, event: GuardEvent) -> None:
    level = _LEVELS.get(event.kind, logging.INFO)
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
