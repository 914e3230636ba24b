"""What the app sees: the signed-in user's identity, through a scope key and a ContextVar."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from contextvars import Context, ContextVar
from typing import TYPE_CHECKING, Any

from starlette.authentication import AuthCredentials, BaseUser

from ._reasons import Reason
from ._user import ANONYMOUS, GuardUser, credentials

if TYPE_CHECKING:
    from ._middleware import OAuthGuard

__all__ = ["SCOPE_KEY", "GuardState", "Identity", "current_identity", "current_state"]

SCOPE_KEY = "asgi_oauth_guard"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Identity:
    """The signed-in user of this request: ID-token claims and a fresh access token, and the name of the
    provider they signed in with."""

    claims: Mapping[str, Any]
    access_token: str
    token_type: str
    expires_at: float | None
    scope: str | None
    refreshes: int
    provider: str = "default"

    @property
    def sub(self) -> str:
        return str(self.claims.get("sub", ""))

    def __repr__(self) -> str:
        return (
            f"Identity(sub={self.sub!r}, provider={self.provider!r}, expires_at={self.expires_at!r}, "
            "access_token=<hidden>)"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class GuardState:
    """Published for each HTTP request under ``scope["asgi_oauth_guard"]`` and in :func:`current_state`."""

    guard: OAuthGuard
    identity: Identity | None
    reason: Reason | None = None
    handle: tuple[str, bytes] | None = dataclasses.field(default=None, repr=False)

    @functools.cached_property
    def user_and_auth(self) -> tuple[BaseUser, AuthCredentials]:
        """``scope["user"]`` and ``scope["auth"]``, built once per published state."""
        if self.identity is None:
            return ANONYMOUS
        return GuardUser(self.identity), credentials(self.identity, self.guard.scopes)


_state: ContextVar[GuardState | None] = ContextVar("asgi_oauth_guard_state", default=None)


def current_state() -> GuardState | None:
    """This request's :class:`GuardState`, or ``None`` outside a request the guard served."""
    return _state.get()


def current_identity() -> Identity | None:
    """The signed-in user of this request, or ``None`` (anonymous, or outside the guard).

    Works in any code the request runs, including Flask views under asgiref's WsgiToAsgi.
    """
    state = _state.get()
    return state.identity if state is not None else None


def request_context(baseline: Context, state: object) -> Context:
    """A copy of ``baseline`` holding only this request's guard state: for adapters that must not run a
    request in the context the server's task inherited (it may carry the previous request's variables)."""
    context = baseline.copy()
    if isinstance(state, GuardState):
        context.run(_state.set, state)
    return context
