"""The offline access setting of a provider (``Provider(offline=OfflineAccess(...))``): kept apart from
``_offline``, the records and their refresh, so that a provider's configuration imports no engine."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ._errors import ConfigurationError
from ._resources import check_resource

__all__ = ["OfflineAccess"]

DEFAULT_MAX_IDLE = 180 * 24 * 3600.0  # Google drops refresh tokens unused for six months


@dataclasses.dataclass(frozen=True, kw_only=True)
class OfflineAccess:
    """Offline access for one provider: its users' grants kept for the token manager (``guard.tokens()``).

    Args:
        scopes: Scopes added to the sign-in's for offline access (OpenID Connect's ``offline_access``;
            ``()`` for Google, which asks with ``authorize_params`` instead).
        authorize_params: Parameters added to every sign-in (Google: ``{"access_type": "offline"}``).
        consent_params: Parameters added only to a sign-in that must restore a lost grant (or that has
            none for a known user): ``{"prompt": "consent"}``, the one way to get Google to issue a new
            refresh token. Never on other sign-ins: users are not asked to consent every time.
        end_with_sessions: Whether sign-out and ``end_sessions`` also end the user's offline grant,
            revoking it at the provider (RFC 7009). ``False``: jobs keep working after the user signs out.
        max_idle: Seconds an offline grant is kept without a refresh (the store's TTL of its record); a
            provider's refresh token lifetime (``refresh_expires_in``) shortens it.
        resources: The APIs (RFC 8707 resource indicators) jobs ask tokens for with
            ``for_user(..., resource=...)``: each is asked for at sign-in (a ``resource`` parameter), and
            no other is ever refreshed for. Some providers (oidc-provider) spend the refresh token before
            they check the resource, so a refresh for an API the grant does not cover costs the grant.
    """

    scopes: tuple[str, ...] = ("offline_access",)
    authorize_params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    consent_params: Mapping[str, str] = dataclasses.field(default_factory=lambda: {"prompt": "consent"})
    end_with_sessions: bool = False
    max_idle: float = DEFAULT_MAX_IDLE
    resources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.scopes, str) or any(not isinstance(s, str) or not s for s in self.scopes):
            raise ConfigurationError("OfflineAccess(scopes=...) must be a tuple of scope names")
        for name in ("authorize_params", "consent_params"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or any(
                not isinstance(k, str) or not isinstance(v, str) for k, v in value.items()
            ):
                raise ConfigurationError(f"OfflineAccess({name}=...) must map strings to strings")
        if not self.max_idle > 0:
            raise ConfigurationError("OfflineAccess(max_idle=...) must be positive")
        if isinstance(self.resources, str):
            raise ConfigurationError("OfflineAccess(resources=...) must be a tuple of URIs, not one string")
        for resource in self.resources:
            check_resource(resource)
