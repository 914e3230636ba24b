"""What one provider does differently from the RFCs, written down as data the flows consult.

Presets fill these in (``providers/presets``); a provider written out by hand usually needs none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from .._errors import ConfigurationError

__all__ = ["COMMON_ERROR_ALIASES", "Quirks"]

# Error codes some providers use in place of RFC 6749's (section 5.2), and which mean nothing else
# anywhere: read as the standard code for every provider, whatever its quirks say.
COMMON_ERROR_ALIASES: Mapping[str, str] = {
    # GitHub (docs.github.com, "Troubleshooting OAuth app access token request errors")
    "bad_verification_code": "invalid_grant",  # the code is wrong, expired or already used
    "bad_refresh_token": "invalid_grant",
    "incorrect_client_credentials": "invalid_client",
    # Slack
    "invalid_refresh_token": "invalid_grant",
    "invalid_code": "invalid_grant",
    "code_already_used": "invalid_grant",
    "token_revoked": "invalid_grant",
    "token_expired": "invalid_grant",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Quirks:
    """A provider's departures from the specifications.

    ``error_reasons``: provider error codes that say unambiguously what happened, mapped to a
    :class:`Reason` value; a key matches the ``error`` of a token answer, or the code that starts its
    ``error_description`` (Entra's ``"AADSTS54005: ..."``).
    ``id_token_issuer``: the ``iss`` an ID token must carry, from its (signature-checked) claims, for a
    provider whose discovery names an issuer template (Entra's multi-tenant ``{tenantid}``); ``None``: the
    discovered issuer.

    Token answers: ``error_aliases`` maps the provider's own error codes to the RFC 6749 code each one
    means (``{"bad_verification_code": "invalid_grant"}``), on top of ``COMMON_ERROR_ALIASES``; an error
    in an HTTP 200 answer is an error whatever the provider (GitHub, Slack). ``scope_separator``: what
    separates the scopes of a token answer's ``scope`` (GitHub's ``","``); the guard keeps them
    space-separated, as RFC 6749 writes them.
    """

    error_reasons: Mapping[str, str] = dataclasses.field(default_factory=dict)
    id_token_issuer: Callable[[Mapping[str, Any]], str] | None = None
    error_aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    scope_separator: str = " "

    def __post_init__(self) -> None:
        if not isinstance(self.scope_separator, str) or len(self.scope_separator) != 1:
            raise ConfigurationError("Quirks(scope_separator=...) must be one character, such as ','")
        if not isinstance(self.error_aliases, Mapping) or any(
            not isinstance(k, str) or not isinstance(v, str) or not v for k, v in self.error_aliases.items()
        ):
            raise ConfigurationError(
                "Quirks(error_aliases=...) must map the provider's error codes to RFC 6749 ones, such as "
                "{'bad_verification_code': 'invalid_grant'}"
            )

    def standard_error(self, code: str) -> str:
        """The RFC 6749 error code the provider's ``code`` stands for (``code`` itself if no alias)."""
        return self.error_aliases.get(code) or COMMON_ERROR_ALIASES.get(code) or code

    def scope(self, value: str) -> str:
        """A token answer's ``scope`` written as RFC 6749 does (space-separated, no empty names)."""
        names = value.split(self.scope_separator) if self.scope_separator != " " else value.split()
        return " ".join(name.strip() for name in names if name.strip())
