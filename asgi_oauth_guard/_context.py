"""What the app sees: the signed-in user's identity, through a scope key and a ContextVar."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextvars import Context, ContextVar
from typing import TYPE_CHECKING, Any

from starlette.authentication import AuthCredentials, BaseUser

from ._reasons import Reason
from ._session import auth_time
from ._user import ANONYMOUS, GuardUser, credentials

if TYPE_CHECKING:
    from ._middleware import OAuthGuard

__all__ = ["SCOPE_KEY", "GuardState", "Identity", "current_identity", "current_state"]

SCOPE_KEY = "asgi_oauth_guard"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Identity:
    """The signed-in user of this request: ID-token claims and a fresh access token, and the name of the
    provider they signed in with.

    ``user_id`` and ``app_claims`` are what the app's ``on_login`` hook returned at sign-in (``None`` and
    ``{}`` without one). ``id_token`` is the provider's latest ID token (the sign-in's, when refreshes
    bring none), for the app's own logout or its backends; like the access token, never log it.
    """

    claims: Mapping[str, Any]
    access_token: str = dataclasses.field(repr=False)
    token_type: str
    expires_at: float | None
    scope: str | None
    refreshes: int
    provider: str = "default"
    user_id: str | None = None
    app_claims: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    id_token: str | None = dataclasses.field(default=None, repr=False)

    @property
    def sub(self) -> str:
        return str(self.claims.get("sub", ""))

    @property
    def auth_time(self) -> float | None:
        """When the user last authenticated at the provider (the ID token's ``auth_time``), if it says."""
        return auth_time(self.claims)

    @property
    def acr(self) -> str | None:
        """The authentication context class the provider says it satisfied (the ID token's ``acr``)."""
        value = self.claims.get("acr")
        return value if isinstance(value, str) and value else None

    def __repr__(self) -> str:
        return (
            f"Identity(sub={self.sub!r}, provider={self.provider!r}, user_id={self.user_id!r}, "
            f"expires_at={self.expires_at!r}, access_token=<hidden>)"
        )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class GuardState:
    """Published for each HTTP request under ``scope["asgi_oauth_guard"]`` and in :func:`current_state`.

    ``user`` and ``auth`` are Starlette's ``request.user`` and ``request.auth`` for this state, built with
    it (it is built once per version of a session, and they are set on every request it serves)."""

    guard: OAuthGuard
    identity: Identity | None
    reason: Reason | None = None
    handle: tuple[str, bytes] | None = dataclasses.field(default=None, repr=False)
    user: BaseUser = dataclasses.field(init=False, repr=False, compare=False)
    auth: AuthCredentials = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        user, auth = (
            ANONYMOUS
            if self.identity is None
            else (GuardUser(self.identity), credentials(self.identity, self.guard.scopes))
        )
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "auth", auth)

    @property
    def user_and_auth(self) -> tuple[BaseUser, AuthCredentials]:
        """``scope["user"]`` and ``scope["auth"]``."""
        return self.user, self.auth

    def publish_in(self, context: Context) -> None:
        """Make this the :func:`current_state` of code run in ``context``: for adapters that run a request in
        a fresh copy of a baseline context rather than the one the server's task inherited (it may carry the
        previous request's variables)."""
        context.run(_state.set, self)


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
