"""GitHub (github.com, or GitHub Enterprise Server): OAuth 2.0 without OpenID Connect.

No ID token: the identity comes from GitHub's REST API at sign-in (``GET /user``; ``GET /user/emails``
for the primary verified address when ``user:email`` is granted). docs/providers.md names the facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._errors import ConfigurationError
from .._provider import Provider
from .._quirks import Quirks

__all__ = ["GITHUB_ERROR_ALIASES", "github", "github_claims"]

# GitHub's token-endpoint codes ("Troubleshooting OAuth app access token request errors"; all answered
# with HTTP 200), as the RFC 6749 codes they stand for.
GITHUB_ERROR_ALIASES: Mapping[str, str] = {
    "bad_verification_code": "invalid_grant",  # "The code passed is incorrect or expired."
    "bad_refresh_token": "invalid_grant",
    "incorrect_client_credentials": "invalid_client",
    "unverified_user_email": "access_denied",  # the user must verify their primary email first
}


def github_claims(user: Mapping[str, Any]) -> dict[str, Any]:
    """The identity's claims from ``GET /user``: ``sub`` is the numeric ``id`` as a string (a login can
    be renamed and then taken by someone else; the id never changes), with ``login``, ``name`` and
    ``picture``. Raises ``ValueError`` for an answer without a numeric id (the sign-in is refused)."""
    user_id = user.get("id")
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
        raise ValueError("GitHub's /user answer has no numeric id")
    claims: dict[str, Any] = {"sub": str(user_id)}
    login = user.get("login")
    if isinstance(login, str) and login:
        claims["login"] = claims["preferred_username"] = login
    for source, claim in (("name", "name"), ("avatar_url", "picture"), ("html_url", "profile")):
        value = user.get(source)
        if isinstance(value, str) and value:
            claims[claim] = value
    return claims


def github(
    *,
    client_id: str,
    client_secret: str,
    name: str = "github",
    title: str | None = "GitHub",
    scopes: tuple[str, ...] | list[str] = ("read:user", "user:email"),
    host: str = "github.com",
    **settings: Any,
) -> Provider:
    """GitHub sign-in, for an OAuth App or a GitHub App (its client ID and a client secret).

    ``scopes``: an OAuth App's; ``user:email`` lets the guard read the primary verified address (one
    more call at sign-in). A GitHub App ignores scopes: its permissions are set in its settings
    ("Email addresses: read" for the address). ``host``: a GitHub Enterprise Server's host name
    (its API is ``https://{host}/api/v3``).

    Tokens: an OAuth App's never expire (no ``expires_in``, no refresh token): never refreshed. A GitHub
    App with "expire user authorization tokens" on gets 8-hour access tokens and a 6-month refresh token
    that rotates at each refresh: refreshed single-flight like any other. Sign-out revokes the access
    token with GitHub's ``DELETE /applications/{client_id}/token``.
    """
    if not isinstance(host, str) or not host or "/" in host or ":" in host.rstrip("0123456789"):
        raise ConfigurationError(f"github(host=...) must be a host name such as 'github.com', got {host!r}")
    if isinstance(scopes, str):
        raise ConfigurationError(f"scopes= must be a list, not a string: write scopes={scopes.split()!r}")
    base = f"https://{host}"
    api = "https://api.github.com" if host == "github.com" else f"{base}/api/v3"
    return Provider(
        name=name,
        title=title,
        client_id=client_id,
        client_secret=client_secret,
        # GitHub's documented token request carries client_id and client_secret as parameters.
        client_auth="client_secret_post",
        issuer=base,
        discovery="none",
        authorization_endpoint=f"{base}/login/oauth/authorize",
        token_endpoint=f"{base}/login/oauth/access_token",
        userinfo_endpoint=f"{api}/user",
        revocation_endpoint=f"{api}/applications/{client_id}/token",
        scopes=tuple(scopes),
        userinfo_claims=github_claims,
        quirks=Quirks(
            error_aliases=GITHUB_ERROR_ALIASES,
            scope_separator=",",
            emails_endpoint=f"{api}/user/emails",
            emails_scopes=("user:email", "user"),
            revocation="github",
        ),
        **settings,
    )
