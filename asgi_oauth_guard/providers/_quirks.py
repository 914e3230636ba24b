"""What one provider does differently from the RFCs, written down as data the flows consult.

Presets fill these in (``providers/presets``); a provider written out by hand usually needs none.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from .._errors import ConfigurationError, TokenEndpointError
from .._reasons import Reason
from ._metadata import check_url

__all__ = ["COMMON_ERROR_ALIASES", "Quirks", "Revocation", "error_reason", "wants_consent"]

Revocation = Literal["rfc7009", "github"]
# How much of a provider's error_description is searched for codes: a megabyte of text costs nothing.
_MAX_DESCRIPTION = 2000

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
    :class:`Reason` value; a key matches the ``error`` of a token answer, or a code that ``error_codes``
    (a regular expression) finds in its ``error_description`` (Entra's ``r"\\bAADSTS\\d+\\b"`` finds
    ``AADSTS54005`` in ``"AADSTS54005: ..."``; Google's ``r"\\binvalid_rapt\\b"`` finds ``invalid_rapt``
    in ``"reauth related error (invalid_rapt)"``). An entry counts only where its reason fits: a sign-in
    reason (``code_reused``, ``code_expired``, ...) for a refused code, a re-login reason
    (``refresh_rejected``, ``reauthentication_required``, ``mfa_required``) for a refused refresh.
    ``id_token_issuer``: the ``iss`` an ID token must carry, from its (signature-checked) claims, for a
    provider whose discovery names an issuer template (Entra's multi-tenant ``{tenantid}``); ``None``: the
    discovered issuer. ``discovery_issuer``: the ``issuer`` the discovery document names, when it is not
    the issuer URL it is read from (Entra's template; its ``consumers`` tenant's GUID).
    ``consent_params``: authorization parameters that make the provider issue a refresh token again
    (Google's ``{"prompt": "consent"}``): sent only when the guard holds none for the signing-in user
    (:func:`wants_consent`), never at every sign-in.

    Token answers: ``error_aliases`` maps the provider's own error codes to the RFC 6749 code each one
    means (``{"bad_verification_code": "invalid_grant"}``), on top of ``COMMON_ERROR_ALIASES``; an error
    in an HTTP 200 answer is an error whatever the provider (GitHub, Slack). ``scope_separator``: what
    separates the scopes of a token answer's ``scope`` (GitHub's ``","``); the guard keeps them
    space-separated, as RFC 6749 writes them.

    Identity without OpenID Connect: ``emails_endpoint``, a provider that lists the user's addresses
    apart from its userinfo (GitHub's ``/user/emails``, a JSON list of ``{"email", "primary",
    "verified"}``): read once at sign-in when the token was granted one of ``emails_scopes``; the
    primary verified address becomes the ``email`` claim (with ``email_verified``), else none is kept.

    ``revocation``: how sign-out revokes: ``"rfc7009"`` (a form POST of the token), or ``"github"``
    (GitHub's ``DELETE {revocation_endpoint}`` with the client's Basic credentials and the access token
    in a JSON body: its API revokes access tokens only).
    """

    error_reasons: Mapping[str, str] = dataclasses.field(default_factory=dict)
    id_token_issuer: Callable[[Mapping[str, Any]], str] | None = None
    error_aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    scope_separator: str = " "
    error_codes: str | None = None
    discovery_issuer: str | None = None
    consent_params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    emails_endpoint: str | None = None
    emails_scopes: tuple[str, ...] = ()
    revocation: Revocation = "rfc7009"

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
        known = {reason.value for reason in Reason}
        unknown = sorted(str(v) for v in self.error_reasons.values() if v not in known)
        if unknown:
            raise ConfigurationError(
                f"Quirks(error_reasons=...) maps to {unknown}, which are not reasons; use one of "
                f"{', '.join(sorted(known))}"
            )
        if self.error_codes is not None:
            try:
                re.compile(self.error_codes)
            except (re.error, TypeError) as exc:
                raise ConfigurationError(
                    f"Quirks(error_codes=...) is not a regular expression: {exc}"
                ) from None
        if self.id_token_issuer is not None and not callable(self.id_token_issuer):
            raise ConfigurationError(
                "Quirks(id_token_issuer=...) must be a function of the ID token's claims"
            )
        if not isinstance(self.consent_params, Mapping) or any(
            not isinstance(k, str) or not isinstance(v, str) for k, v in self.consent_params.items()
        ):
            raise ConfigurationError(
                "Quirks(consent_params=...) must map strings to strings, such as {'prompt': 'consent'}"
            )

        if self.revocation not in ("rfc7009", "github"):
            raise ConfigurationError("Quirks(revocation=...) must be 'rfc7009' or 'github'")
        if self.emails_endpoint is not None:
            check_url("Quirks(emails_endpoint=...)", self.emails_endpoint)
        if isinstance(self.emails_scopes, str):
            raise ConfigurationError("Quirks(emails_scopes=...) must be a list of scope names")

    def standard_error(self, code: str) -> str:
        """The RFC 6749 error code the provider's ``code`` stands for (``code`` itself if no alias)."""
        return self.error_aliases.get(code) or COMMON_ERROR_ALIASES.get(code) or code

    def scope(self, value: str) -> str:
        """A token answer's ``scope`` written as RFC 6749 does (space-separated, no empty names)."""
        names = value.split(self.scope_separator) if self.scope_separator != " " else value.split()
        return " ".join(name.strip() for name in names if name.strip())


# A refused code can only say something about this sign-in, a refused refresh only something about the
# session's grant: an entry whose reason does not fit where the error came from is ignored there. (Entra's
# AADSTS70008, "expired", is code_expired at a sign-in and, left to the guard, refresh_rejected later.)
_CODE_REASONS = frozenset({Reason.code_reused, Reason.code_expired, Reason.redirect_uri_mismatch})
_REFRESH_REASONS = frozenset({Reason.refresh_rejected, Reason.reauthentication_required, Reason.mfa_required})


def error_reason(
    quirks: Quirks, error: TokenEndpointError, *, during: Literal["code", "refresh"]
) -> Reason | None:
    """The reason a provider's refusal stands for by its error map, or ``None``: the guard's own
    classification decides. It names the reason shown, nothing else: whether the session's tokens go is
    decided by the ``error`` code alone (``_protocol.grant_refused``).

    The codes looked up are the provider's own code (``provider_error``, before an alias made it RFC 6749's)
    and the answer's ``error``, then each match of ``error_codes`` in its
    ``error_description``, in order; the first with an entry that fits wins (Entra may write
    ``"AADSTS70002: Error validating credentials. AADSTS54005: ..."``)."""
    if not quirks.error_reasons:
        return None
    codes = [c for c in (error.provider_error, error.error) if c]
    if quirks.error_codes is not None and error.description:
        codes += re.findall(quirks.error_codes, error.description[:_MAX_DESCRIPTION])
    fits = _CODE_REASONS if during == "code" else _REFRESH_REASONS
    for code in codes:
        value = quirks.error_reasons.get(code) if isinstance(code, str) else None
        if value is not None and Reason(value) in fits:
            return Reason(value)
    return None


def wants_consent(quirks: Quirks, *, holds_refresh_token: bool) -> Mapping[str, str]:
    """The authorization parameters to add so that the provider issues a refresh token (Google's
    ``prompt=consent``), when the guard holds none for the user; nothing otherwise."""
    return {} if holds_refresh_token else quirks.consent_params
