"""Okta: a custom authorization server (``default`` or another), or the org authorization server."""

from __future__ import annotations

import re
from typing import Any

from ..._errors import ConfigurationError
from ..._offline_access import OfflineAccess
from .._provider import Provider
from ._common import check_host, offline_settings, with_scopes

__all__ = ["okta"]

_SERVER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def okta(
    *,
    domain: str,
    client_id: str,
    client_secret: str = "",
    authorization_server: str | None = "default",
    name: str = "okta",
    title: str | None = "Okta",
    scopes: tuple[str, ...] | list[str] = ("openid", "email", "profile"),
    offline: bool | OfflineAccess = True,
    **settings: Any,
) -> Provider:
    """Okta sign-in, for an OIDC "Web Application" integration with the Refresh Token grant enabled.

    ``domain``: the org's Okta domain (``your-org.okta.com``) or a custom domain. ``authorization_server``:
    the ID of a custom authorization server (``"default"``, or ``aus...``): issuer
    ``https://{domain}/oauth2/{id}``; ``None``: the org authorization server, issuer ``https://{domain}``
    (its tokens are for Okta's own APIs, not yours). Their issuers differ: an ID token of one fails the
    other's check. ``offline`` (the default) adds ``offline_access``, without which Okta issues no
    refresh token; ``offline=OfflineAccess(...)`` also keeps each user's grant for background jobs.
    """
    check_host("okta(domain", domain, example="your-org.okta.com")
    if authorization_server is None:
        issuer = f"https://{domain}"
    elif isinstance(authorization_server, str) and _SERVER_ID.fullmatch(authorization_server):
        issuer = f"https://{domain}/oauth2/{authorization_server}"
    else:
        raise ConfigurationError(
            "okta(authorization_server=...) must be the ID of a custom authorization server, such as "
            f"'default', or None for the org authorization server; got {authorization_server!r}"
        )
    return Provider(
        name=name,
        title=title,
        client_id=client_id,
        client_secret=client_secret,
        issuer=issuer,
        scopes=with_scopes(scopes, "offline_access") if offline else with_scopes(scopes),
        **offline_settings("okta", offline),
        **settings,
    )
