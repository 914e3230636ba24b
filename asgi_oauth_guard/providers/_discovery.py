"""Discovery that fills gaps: an OpenID provider's document, completed by its RFC 8414 metadata.

Some providers publish an endpoint only in one of their two documents: django-oauth-toolkit (3.4.1) lists
``revocation_endpoint`` in ``/.well-known/oauth-authorization-server`` (RFC 8414) and not in
``/.well-known/openid-configuration``. Without it a sign-out cannot revoke, and the refresh token outlives
the session. Pure functions: the provider client fetches, these decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

__all__ = ["GAPS", "fill_gaps", "gaps", "oauth_metadata_url", "oauth_metadata_urls", "oidc_metadata_url"]

OIDC_WELL_KNOWN = "/.well-known/openid-configuration"
OAUTH_WELL_KNOWN = "/.well-known/oauth-authorization-server"
# The endpoints whose absence from the OpenID document (and from the endpoints written out) is worth one more
# request, once, for the RFC 8414 document. Not every optional endpoint: most providers lack most of them, and
# each would cost every such provider a request for a document it may not have.
GAPS = ("revocation_endpoint",)


def oidc_metadata_url(issuer: str) -> str:
    """OIDC Discovery 1.0 section 4: the well-known suffix is appended to the issuer, path and all."""
    return issuer.rstrip("/") + OIDC_WELL_KNOWN


def oauth_metadata_url(issuer: str) -> str:
    """RFC 8414 section 3.1: the well-known segment goes between the host and the issuer's path
    (``https://h/tenant`` -> ``https://h/.well-known/oauth-authorization-server/tenant``)."""
    url = httpx.URL(issuer)
    return str(url.copy_with(path=OAUTH_WELL_KNOWN + url.path.rstrip("/"), query=None, fragment=None))


def oauth_metadata_urls(issuer: str) -> tuple[str, ...]:
    """Where to look for an issuer's RFC 8414 metadata, in order: section 3.1's URL, then, for an issuer
    with a path, the issuer with the suffix appended, as OIDC Discovery places its document. Servers mounted
    under a path often answer only the second: django-oauth-toolkit under ``/o/``, unless its metadata
    routes are also mounted at the root."""
    first = oauth_metadata_url(issuer)
    appended = issuer.rstrip("/") + OAUTH_WELL_KNOWN
    return (first,) if appended == first else (first, appended)


def gaps(metadata: Mapping[str, Any], given: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``GAPS`` neither the document nor the endpoints written out (``given``) fill."""
    return tuple(name for name in GAPS if not _present(metadata, name) and given.get(name) is None)


def fill_gaps(primary: Mapping[str, Any], secondary: Mapping[str, Any]) -> dict[str, Any] | None:
    """``primary`` completed by ``secondary``: every field ``primary`` lacks, none it has.

    ``None`` when ``secondary`` names another issuer (RFC 8414 section 3.3: the document must be the issuer's
    own; a document of another server must not point this client's tokens elsewhere)."""
    if secondary.get("issuer") != primary.get("issuer"):
        return None
    filled = dict(primary)
    for name, value in secondary.items():
        if not _present(filled, name):
            filled[name] = value
    return filled


def _present(metadata: Mapping[str, Any], name: str) -> bool:
    value = metadata.get(name)
    return value is not None and value != ""
