"""Auth0: a tenant's (or custom domain's) issuer, with its trailing slash."""

from __future__ import annotations

from typing import Any

from ..._offline_access import OfflineAccess
from .._provider import Provider
from ._common import check_host, offline_settings, with_scopes

__all__ = ["auth0"]


def auth0(
    *,
    domain: str,
    client_id: str,
    client_secret: str = "",
    audience: str | None = None,
    name: str = "auth0",
    title: str | None = "Auth0",
    scopes: tuple[str, ...] | list[str] = ("openid", "email", "profile"),
    offline: bool | OfflineAccess = True,
    **settings: Any,
) -> Provider:
    """Auth0 sign-in, for a "Regular Web Application".

    ``domain``: the tenant's domain (``your-tenant.us.auth0.com``) or its custom domain; the issuer is
    ``https://{domain}/``, with the trailing slash Auth0 puts in its ID tokens. ``offline`` (the
    default) adds ``offline_access``, without which Auth0 issues no refresh token; ``audience``: the API
    to get access tokens for (that API must allow offline access); ``offline=OfflineAccess(...)`` also keeps
    each user's grant for background jobs (docs/background-jobs.md). With refresh token rotation on,
    presenting a rotated refresh token again revokes its whole family: the guard presents each once.
    """
    check_host("auth0(domain", domain, example="your-tenant.us.auth0.com")
    return Provider(
        name=name,
        title=title,
        client_id=client_id,
        client_secret=client_secret,
        issuer=f"https://{domain}/",
        scopes=with_scopes(scopes, "offline_access") if offline else with_scopes(scopes),
        authorize_params={} if audience is None else {"audience": audience},
        **offline_settings("auth0", offline),
        **settings,
    )
