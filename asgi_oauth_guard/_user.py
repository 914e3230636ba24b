"""The signed-in user as Starlette's ``request.user`` and ``request.auth``, as ``AuthenticationMiddleware``
sets them, so Starlette's ``@requires("authenticated")`` works behind the guard."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser

if TYPE_CHECKING:
    from ._context import Identity

__all__ = ["ANONYMOUS", "GuardUser", "credentials"]


class GuardUser(BaseUser):
    """``request.user`` of a signed-in request: Starlette's ``BaseUser`` over the guard's :class:`Identity`.

    ``identity`` is the ``sub`` (a ``BaseUser``'s identity is the user's id); ``oauth`` is the whole
    :class:`Identity` (claims, access token, expiry).
    """

    def __init__(self, identity: Identity) -> None:
        self.oauth = identity

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        claims = self.oauth.claims
        return str(claims.get("name") or claims.get("email") or self.oauth.sub)

    @property
    def identity(self) -> str:
        return self.oauth.sub

    def __repr__(self) -> str:
        return f"GuardUser(sub={self.oauth.sub!r})"


ANONYMOUS: tuple[BaseUser, AuthCredentials] = (UnauthenticatedUser(), AuthCredentials())
"""``request.user`` and ``request.auth`` of an anonymous request."""


def credentials(identity: Identity, requested: Iterable[str]) -> AuthCredentials:
    """``"authenticated"`` and the access token's scopes: those the provider granted, or, when its token
    answer named none, those the guard asked for (RFC 6749 section 5.1)."""
    granted = identity.scope.split() if identity.scope is not None else list(requested)
    return AuthCredentials(["authenticated", *granted])
