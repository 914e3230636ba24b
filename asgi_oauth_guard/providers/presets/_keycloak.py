"""Keycloak: one realm's issuer."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from ..._errors import ConfigurationError
from ..._offline_access import OfflineAccess
from .._metadata import check_url
from .._provider import Provider
from ._common import offline_settings, with_scopes

__all__ = ["keycloak"]

_REALM = re.compile(r"[^/?#\s]{1,255}")


def keycloak(
    *,
    base_url: str,
    realm: str,
    client_id: str,
    client_secret: str = "",
    offline: bool | OfflineAccess = False,
    name: str = "keycloak",
    title: str | None = "Keycloak",
    scopes: tuple[str, ...] | list[str] = ("openid", "email", "profile"),
    **settings: Any,
) -> Provider:
    """Keycloak sign-in, for a confidential OpenID Connect client with the standard flow on.

    The issuer is ``{base_url}/realms/{realm}``; before Keycloak 17 (WildFly) ``base_url`` ends with
    ``/auth``. A normal refresh token lives only as long as the user's SSO session ("SSO Session Idle",
    30 minutes by default, and "SSO Session Max"): past it the refresh is refused with "Session not
    active" and the user signs in again. ``offline=True`` adds ``offline_access`` for an offline token,
    bound to "Offline Session Idle" instead (the realm must allow it to the client);
    ``offline=OfflineAccess(...)`` keeps it once per user for every session and background job.
    """
    check_url("keycloak(base_url=...)", base_url)
    if not isinstance(realm, str) or not _REALM.fullmatch(realm):
        raise ConfigurationError(
            f"keycloak(realm=...) must be the realm's name, such as 'myrealm'; got {realm!r}"
        )
    return Provider(
        name=name,
        title=title,
        client_id=client_id,
        client_secret=client_secret,
        issuer=f"{base_url.rstrip('/')}/realms/{quote(realm, safe='')}",
        scopes=with_scopes(scopes, "offline_access") if offline else with_scopes(scopes),
        **offline_settings("keycloak", offline),
        **settings,
    )
