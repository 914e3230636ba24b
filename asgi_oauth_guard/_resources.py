"""Resource indicators (RFC 8707): checking ``resource=``, and noticing a provider that ignores it.

A provider that does not support the parameter usually ignores it and issues its default token, whose
audience is not the API asked for: an API that checks audiences refuses it, one that does not accepts a
token meant for any API. When the token is a JWT, its ``aud`` tells; the first such token per provider and
resource is logged as a warning (opaque tokens cannot be told apart: see docs/background-jobs.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

from ._errors import ConfigurationError

logger = logging.getLogger("asgi_oauth_guard")

_warned: set[tuple[str, str]] = set()


def check_resource(resource: str | None) -> None:
    """RFC 8707 section 2: an absolute URI without a fragment."""
    if resource is None:
        return
    parts = urlsplit(resource) if isinstance(resource, str) else None
    if parts is None or not parts.scheme or not parts.netloc or "#" in resource:
        raise ConfigurationError(
            f"resource= must be an absolute URI without a fragment (RFC 8707), got {resource!r}"
        )


def scope_list(name: str, scopes: Sequence[str]) -> tuple[str, ...]:
    """A list of scope names; a bare string would be read one character at a time."""
    if isinstance(scopes, str):
        raise ConfigurationError(f"{name}= must be a list of scope names, not a string: {scopes.split()!r}")
    items = tuple(scopes)
    if any(not isinstance(s, str) or not s or " " in s for s in items):
        raise ConfigurationError(f"{name}= must be a list of scope names, such as ['read']")
    return items


def audience(access_token: str) -> list[str] | None:
    """The ``aud`` of a JWT access token (unverified: the API verifies it), or ``None`` for an opaque one."""
    parts = access_token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return None


def honoured(provider: str, resource: str | None, access_token: str) -> bool | None:
    """Whether the provider issued this token for ``resource``: ``False`` (and a warning, once per provider
    and resource) when it is a JWT whose audience leaves the resource out; ``None`` when it cannot tell."""
    if resource is None:
        return None
    aud = audience(access_token)
    if aud is None:
        return None
    if resource in aud:
        return True
    if (provider, resource) not in _warned:
        _warned.add((provider, resource))
        logger.warning(
            "provider %r ignored resource=%r (RFC 8707): its access token's audience is %r. An API that "
            "checks audiences will refuse the token; check that the provider supports resource indicators "
            "and knows this resource",
            provider,
            resource,
            aud,
        )
    return False
