"""Microsoft Entra ID (the v2.0 endpoints): one tenant, or many through ``common``/``organizations``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..._errors import ConfigurationError, IDTokenError
from ..._offline_access import OfflineAccess
from .._provider import Provider
from .._quirks import Quirks
from ._common import check_host, offline_settings, with_scopes

__all__ = ["ENTRA_ERROR_REASONS", "MSA_TENANT", "entra"]

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The tenant of personal Microsoft accounts: what /consumers tokens name as tid.
MSA_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
# Entra writes its own code first in error_description ("AADSTS54005: ..."); these are unambiguous.
ENTRA_ERROR_REASONS: Mapping[str, str] = {
    "AADSTS54005": "code_reused",  # the authorization code was already redeemed
    "AADSTS70008": "code_expired",  # a code (at sign-in) or refresh token expired from inactivity
    "AADSTS700082": "refresh_rejected",  # the refresh token expired from inactivity
    "AADSTS50173": "refresh_rejected",  # the grant was revoked (password changed or reset)
    "AADSTS50076": "mfa_required",  # Conditional Access now asks for multi-factor authentication
}


def entra(
    *,
    tenant: str,
    client_id: str,
    client_secret: str = "",
    tenants: Iterable[str] | None = None,
    name: str = "microsoft",
    title: str | None = "Microsoft",
    scopes: tuple[str, ...] | list[str] = ("openid", "email", "profile"),
    offline: bool | OfflineAccess = True,
    authority: str = "login.microsoftonline.com",
    **settings: Any,
) -> Provider:
    """Microsoft Entra ID sign-in.

    ``tenant``: the Directory (tenant) ID, a GUID, for an app of one organization; or ``"organizations"``
    (any work or school account), ``"common"`` (those and personal Microsoft accounts), ``"consumers"``
    (personal accounts only). The multi-tenant endpoints publish the issuer template
    ``https://login.microsoftonline.com/{tenantid}/v2.0``: each ID token must then name exactly that
    issuer with its own ``tid``, and with ``tenants`` (GUIDs) only those tenants may sign in.

    ``offline`` (the default) adds ``offline_access``, without which Entra issues no refresh token;
    ``offline=OfflineAccess(...)`` also keeps each user's grant for background jobs (docs/background-jobs.md).
    Entra's error codes map to reasons: ``AADSTS54005`` (code already redeemed) ``code_reused``,
    ``AADSTS70008`` (expired) ``code_expired`` at sign-in, ``AADSTS700082``/``AADSTS50173`` (refresh
    token expired or revoked) ``refresh_rejected``, ``AADSTS50076`` (MFA required) ``mfa_required``.
    ``authority``: the cloud's sign-in host (``login.microsoftonline.us`` for US Government).
    """
    check_host("entra(authority", authority, example="login.microsoftonline.com")
    base = f"https://{authority}"
    allowed = None if tenants is None else frozenset(_check_tenants(tenants))
    multi = tenant in ("common", "organizations")
    if tenant == "consumers":
        discovery_issuer: str | None = f"{base}/{MSA_TENANT}/v2.0"
        id_token_issuer = None
    elif multi:
        discovery_issuer = f"{base}/{{tenantid}}/v2.0"
        id_token_issuer = _tenant_issuer(base, allowed)
    elif isinstance(tenant, str) and _GUID.fullmatch(tenant):
        discovery_issuer, id_token_issuer = None, None
    else:
        raise ConfigurationError(
            f"entra(tenant={tenant!r}): give the Directory (tenant) ID, a GUID such as "
            "'00000000-0000-0000-0000-000000000000' (a domain name fails the issuer check: Entra's "
            "discovery names the GUID), or 'organizations', 'common' or 'consumers'"
        )
    if allowed is not None and not multi:
        raise ConfigurationError(
            f"entra(tenants=...) limits the tenants of a multi-tenant app: with tenant={tenant!r} only "
            "that tenant signs in already; leave tenants= out"
        )
    return Provider(
        name=name,
        title=title,
        client_id=client_id,
        client_secret=client_secret,
        issuer=f"{base}/{tenant}/v2.0",
        scopes=with_scopes(scopes, "offline_access") if offline else with_scopes(scopes),
        quirks=Quirks(
            # Entra answers a refresh that needs the user (MFA, a Conditional Access claims challenge)
            # with interaction_required as well as invalid_grant: that user's grant, never this client's
            # registration, so it ends their session and never pauses everyone's refreshes.
            error_aliases={"interaction_required": "invalid_grant"},
            error_reasons=ENTRA_ERROR_REASONS,
            error_codes=r"\bAADSTS\d+\b",
            discovery_issuer=discovery_issuer,
            id_token_issuer=id_token_issuer,
        ),
        **offline_settings("entra", offline),
        **settings,
    )


def _check_tenants(tenants: Iterable[str]) -> list[str]:
    if isinstance(tenants, str):
        raise ConfigurationError(
            f"entra(tenants=...) must be a list of tenant IDs, not one string: [{tenants!r}]"
        )
    found = [t.lower() if isinstance(t, str) else t for t in tenants]
    bad = [t for t in found if not isinstance(t, str) or not _GUID.fullmatch(t)]
    if bad or not found:
        raise ConfigurationError(
            f"entra(tenants=...) must list Directory (tenant) IDs, GUIDs; got {bad or 'none'}"
        )
    return found


def _tenant_issuer(base: str, allowed: frozenset[str] | None) -> Callable[[Mapping[str, Any]], str]:
    def issuer(claims: Mapping[str, Any]) -> str:
        """The issuer template with the token's own tenant (checked to be a tenant ID, and allowed)."""
        tid = claims.get("tid")
        if not isinstance(tid, str) or not _GUID.fullmatch(tid):
            raise IDTokenError("the ID token has no tenant ID (tid) to check its issuer against")
        if allowed is not None and tid not in allowed:
            raise IDTokenError(f"the ID token's tenant {tid!r} is not one of entra(tenants=...)")
        return f"{base}/{tid}/v2.0"

    return issuer
