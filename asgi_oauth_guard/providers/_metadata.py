"""A provider's endpoints as the guard uses them: discovered (OIDC Discovery, RFC 8414), written out, or
both."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import httpx

from .._errors import ConfigurationError

__all__ = ["ENDPOINT_NAMES", "Endpoints", "check_url"]

# The endpoint settings a Provider may write out; each one given overrides the discovered one.
ENDPOINT_NAMES = (
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "userinfo_endpoint",
    "revocation_endpoint",
    "end_session_endpoint",
    "pushed_authorization_request_endpoint",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Endpoints:
    """Where one provider answers, resolved once: what its discovery document says, completed or
    overridden by what its :class:`Provider` writes out."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str | None = None
    userinfo_endpoint: str | None = None
    revocation_endpoint: str | None = None
    end_session_endpoint: str | None = None
    pushed_authorization_request_endpoint: str | None = None
    require_pushed_authorization_requests: bool = False
    iss_parameter_supported: bool = False
    id_token_algorithms: tuple[str, ...] = ("RS256",)

    def __post_init__(self) -> None:
        for name in ("issuer", "authorization_endpoint", "token_endpoint"):
            check_url(f"Provider({name}=...)", getattr(self, name))
        for name in ENDPOINT_NAMES[2:]:
            value = getattr(self, name)
            if value is not None:
                check_url(f"Provider({name}=...)", value)

    @classmethod
    def from_metadata(
        cls, metadata: Mapping[str, Any], *, issuer: str, named_issuer: str | None = None, **given: Any
    ) -> Endpoints:
        """From a discovery document, checking that it is the issuer's own (OIDC Discovery section 4.3,
        RFC 8414 section 3.3); ``given``: endpoints written out, which win over the document's.

        An issuer given without the trailing slash the provider uses (Auth0's ``https://tenant.auth0.com/``),
        or with one it does not use, takes the provider's exact spelling: ID tokens carry that one.
        ``named_issuer``: the issuer the document must name instead, for a provider known to name another
        (``Quirks.discovery_issuer``: Entra's multi-tenant template); the endpoints' issuer is then that one.
        """
        named = metadata.get("issuer")
        if named_issuer is not None:
            issuer = named_issuer
        if isinstance(named, str) and named.rstrip("/") == issuer.rstrip("/"):
            issuer = named
        if named != issuer:
            raise ConfigurationError(
                f"the discovery document of {issuer!r} names issuer {named!r}: set issuer= to exactly "
                "the provider's issuer URL (the one its discovery document names, if that is the "
                "provider you mean)"
            )
        found: dict[str, Any] = {name: _opt(metadata, name) for name in ENDPOINT_NAMES}
        found.update({name: value for name, value in given.items() if value is not None})
        algs = metadata.get("id_token_signing_alg_values_supported")
        for name in ("authorization_endpoint", "token_endpoint"):
            if found[name] is None:
                raise ConfigurationError(
                    f"the discovery document of {issuer!r} lacks {name!r}: this provider cannot be "
                    f"discovered; write its endpoints out, Provider({name}=...)"
                )
        return cls(
            issuer=issuer,
            iss_parameter_supported=metadata.get("authorization_response_iss_parameter_supported") is True,
            require_pushed_authorization_requests=metadata.get("require_pushed_authorization_requests")
            is True,
            id_token_algorithms=tuple(a for a in algs if isinstance(a, str) and a != "none")
            if isinstance(algs, list)
            else ("RS256",),
            **found,
        )


def _opt(metadata: Mapping[str, Any], name: str) -> str | None:
    value = metadata.get(name)
    return value if isinstance(value, str) and value else None


def check_url(what: str, value: object) -> None:
    try:
        url = httpx.URL(value) if isinstance(value, str) else None
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"{what} must be an absolute http(s) URL, got {value!r}")
