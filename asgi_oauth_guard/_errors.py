"""The guard's errors.

    GuardError
    ├── ConfigurationError     the middleware was built with settings that cannot work
    ├── TokenEndpointError     the provider answered an OAuth error (``error``, ``description``, ``status``)
    ├── ProviderUnavailable    the provider was unreachable, timed out, or said 5xx/temporarily_unavailable
    ├── IDTokenError           the ID token failed validation (signature, iss, aud, nonce, expiry)
    ├── ReloginRequired        the session can no longer get a token: the user must sign in again (``reason``)
    ├── ConsentRequired        a user's offline grant is lost (``reason``): their next sign-in restores it
    └── StoreUnavailable       the store could not be reached

Callers tell errors apart by type and by ``TokenEndpointError.error`` (an RFC 6749 code), never by message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._reasons import Reason

__all__ = [
    "ConfigurationError",
    "ConsentRequired",
    "GuardError",
    "IDTokenError",
    "ProviderUnavailable",
    "ReloginRequired",
    "StoreUnavailable",
    "TokenEndpointError",
]


class GuardError(Exception):
    """Base of every error the guard raises."""


class ConfigurationError(GuardError, ValueError):
    """A setting cannot work; the message says which and how to fix it."""


class TokenEndpointError(GuardError):
    """The provider's token, revocation or discovery endpoint answered an OAuth error.

    ``error`` is the RFC 6749 code (``invalid_grant``, ``invalid_client``, ...); ``description`` is the
    provider's text, often generic, so the guard classifies causes from its own records instead.
    ``provider_error``: the provider's own code, when it used another one for the RFC's (GitHub's
    ``bad_verification_code`` for ``invalid_grant``: ``Quirks.error_aliases``).
    """

    def __init__(
        self,
        error: str,
        description: str | None = None,
        *,
        status: int = 400,
        provider_error: str | None = None,
    ) -> None:
        self.error = error
        self.description = description
        self.status = status
        self.provider_error = provider_error if provider_error != error else None
        named = f"{error} [{self.provider_error}]" if self.provider_error else error
        super().__init__(f"{named} ({status}): {description}" if description else f"{named} ({status})")

    def describe(self, *sent: str) -> str:
        """``error: description`` for a log line. Whatever this client sent (a code, a token) is blanked
        out of the provider's text first, in case the provider echoes it; then it is cut to 200 characters."""
        text = self.description or ""
        for value in sent:
            if value:
                text = text.replace(value, "<redacted>")
        text = "".join(c if c.isprintable() else "?" for c in text[:200])
        named = f"{self.error} [{self.provider_error}]" if self.provider_error else self.error
        return f"{named}: {text}" if text else named


class ProviderUnavailable(GuardError):
    """The provider could not answer now: a network error, a timeout, a 5xx, or ``temporarily_unavailable``.

    The session is kept; the request gets a 503 with ``Retry-After`` unless a still-valid token can be served.
    """


class IDTokenError(GuardError):
    """The ID token is not valid for this login: bad signature, issuer, audience, nonce or expiry."""


class StoreUnavailable(GuardError):
    """The store could not be reached; the request gets a 503 and no session is lost."""


class ReloginRequired(GuardError):
    """The session can no longer get a token (the provider refused it, or it is gone): the user must
    sign in again. ``reason`` says why; integrations answer it with the guard's re-login response."""

    def __init__(self, reason: Reason, detail: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(reason.value)


class ConsentRequired(GuardError):
    """The user's offline grant cannot give a token any more: the token manager raises it to jobs.

    ``reason`` says why: ``revoked`` (the provider refused it: revoked, a password change, the grant
    limit), ``expired`` (past the refresh token's lifetime), ``idle`` (unused for longer than the
    provider keeps idle grants), ``ended`` (ended by sign-out or ``end_sessions``) or ``no_grant`` (the
    user never signed in with offline access). The grant is marked, an ``offline_grant_lost`` event is
    emitted once, and the user's next sign-in asks for consent and restores it.
    """

    def __init__(self, *, provider: str, sub: str, reason: str) -> None:
        self.provider = provider
        self.sub = sub
        self.reason = reason
        super().__init__(
            f"the offline grant of user {sub!r} at provider {provider!r} needs the user's consent again "
            f"({reason}): it comes back at their next sign-in"
        )
