"""Ready `Mimic`s of the providers the presets (`asgi_oauth_guard.providers`) are for.

    from asgi_oauth_guard.testing import OAuthTestProvider, mimics

    google = OAuthTestProvider(mimic=mimics.google())
    entra = OAuthTestProvider(mimic=mimics.entra(tenant="organizations"))

Each one plays what its provider documents (docs/providers.md names the sources): its endpoint URLs,
its issuer's shape, when a refresh token comes, and the error bodies it answers. The bodies are the
providers' own wording, shortened where they carry trace ids and timestamps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ._mimic import CAUSES, Mimic

__all__ = ["ENTRA_TENANT", "auth0", "entra", "github", "gitlab", "google", "keycloak", "okta"]

# The tenant the Entra mimic's users belong to unless add_user(claims={"tid": ...}) says otherwise.
ENTRA_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
_ENTRA_MULTI = ("common", "organizations", "consumers")
# Entra's tenant of personal Microsoft accounts: /consumers tokens name it.
_MSA_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"


def _error(status: int, error: str, description: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {"error": error, "error_description": description, **extra}


def google() -> Mimic:
    """Google: a refresh token only with ``access_type=offline`` and only at a consent, at most 100 live
    per user and client; no rotation (refresh answers leave the refresh token out); ``invalid_rapt``
    when a Workspace re-authentication policy wants the user back."""
    bad = _error(400, "invalid_grant", "Bad Request")
    dead = _error(400, "invalid_grant", "Token has been expired or revoked.")
    return Mimic(
        name="google",
        issuer="https://accounts.google.com",
        endpoints={
            "authorize": "https://accounts.google.com/o/oauth2/v2/auth",
            "token": "https://oauth2.googleapis.com/token",
            "userinfo": "https://openidconnect.googleapis.com/v1/userinfo",
            "revoke": "https://oauth2.googleapis.com/revoke",
            "jwks": "https://www.googleapis.com/oauth2/v3/certs",
        },
        refresh_token_param=("access_type", "offline"),
        refresh_token_at_consent=True,
        refresh_tokens_per_user=100,
        rotate_refresh_tokens=False,
        echo_refresh_token=False,
        errors={
            "code_unknown": bad,
            "code_expired": bad,
            "code_revoked": bad,
            "code_pkce": bad,
            "code_reused": bad,
            "code_redirect_uri": _error(400, "redirect_uri_mismatch", "Bad Request"),
            "user_disabled": dead,
            "refresh_unknown": dead,
            "refresh_expired": dead,
            "refresh_revoked": dead,
            "reauthentication_required": _error(
                400,
                "invalid_grant",
                "reauth related error (invalid_rapt)",
                error_uri="https://support.google.com/a/answer/9368756",
                error_subtype="invalid_rapt",
            ),
        },
    )


def _aadsts(code: int, text: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    trace = "Trace ID: 0b8b5c4a-7d1e-4a4e Correlation ID: 5e6f7a8b-9c0d-4e1f"
    return _error(
        400,
        "invalid_grant",
        f"AADSTS{code}: {text} {trace} Timestamp: 2026-12-01 12:00:00Z",
        error_codes=[code],
        error_uri=f"https://login.microsoftonline.com/error?code={code}",
        **extra,
    )


def entra(*, tenant: str = ENTRA_TENANT) -> Mimic:
    """Microsoft Entra ID (v2.0 endpoints) at ``tenant``: a GUID, or ``common``/``organizations``/
    ``consumers``, whose discovery document names the issuer template ``.../{tenantid}/v2.0`` while each
    ID token names its user's tenant (``tid``). A refresh token only with ``offline_access``; each
    refresh answers one; no revocation endpoint; errors say ``AADSTSnnnnn: ...``."""
    base = f"https://login.microsoftonline.com/{tenant}"
    home = _MSA_TENANT if tenant == "consumers" else ENTRA_TENANT if tenant in _ENTRA_MULTI else tenant
    template = "https://login.microsoftonline.com/{tid}/v2.0"
    return Mimic(
        name="entra",
        issuer=f"https://login.microsoftonline.com/{home}/v2.0",
        endpoints={
            "discovery": f"{base}/v2.0/.well-known/openid-configuration",
            "authorize": f"{base}/oauth2/v2.0/authorize",
            "token": f"{base}/oauth2/v2.0/token",
            "jwks": f"{base}/discovery/v2.0/keys",
            "userinfo": "https://graph.microsoft.com/oidc/userinfo",
            "end_session": f"{base}/oauth2/v2.0/logout",
        },
        discovery_issuer="https://login.microsoftonline.com/{tenantid}/v2.0"
        if tenant in ("common", "organizations")
        else None,
        id_token_issuer=template,
        claims={"tid": home},
        refresh_token_scope="offline_access",
        rotate_refresh_tokens=False,
        errors={
            "code_reused": _aadsts(
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid code or "
                "use an existing refresh token.",
            ),
            "code_expired": _aadsts(
                70008,
                "The provided authorization code or refresh token has expired due to inactivity. Send a "
                "new interactive authorization request for this user and resource.",
            ),
            "refresh_expired": _aadsts(
                700082,
                "The refresh token has expired due to inactivity. The token was issued on "
                "2026-08-01T12:00:00Z and was inactive for 90.00:00:00.",
            ),
            "refresh_revoked": _aadsts(
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
                "The user might have changed or reset their password.",
            ),
            "mfa_required": _aadsts(
                50076,
                "Due to a configuration change made by your administrator, or because you moved to a new "
                "location, you must use multi-factor authentication to access "
                "'00000003-0000-0000-c000-000000000000'.",
                suberror="basic_action",
            ),
        },
    )


def gitlab(*, base_url: str = "https://gitlab.com") -> Mimic:
    """GitLab (Doorkeeper): issuer without a trailing slash, access tokens of 2 hours, each refresh
    rotates the refresh token; every refusal is Doorkeeper's one ``invalid_grant`` sentence."""
    base = base_url.rstrip("/")
    refused = _error(
        400,
        "invalid_grant",
        "The provided authorization grant is invalid, expired, revoked, does not match the redirection "
        "URI used in the authorization request, or was issued to another client.",
    )
    return Mimic(
        name="gitlab",
        issuer=base,
        endpoints={
            "authorize": f"{base}/oauth/authorize",
            "token": f"{base}/oauth/token",
            "userinfo": f"{base}/oauth/userinfo",
            "jwks": f"{base}/oauth/discovery/keys",
            "revoke": f"{base}/oauth/revoke",
        },
        errors={cause: refused for cause in CAUSES},
    )


def auth0(*, domain: str = "tenant.us.auth0.com") -> Mimic:
    """Auth0: issuer ``https://{domain}/`` with its trailing slash, a refresh token only with
    ``offline_access``, rotation with reuse detection (a reused token revokes the family), and
    ``invalid_grant`` answered with status 403."""
    base = f"https://{domain}"
    code = _error(403, "invalid_grant", "Invalid authorization code")
    refresh = _error(403, "invalid_grant", "Unknown or invalid refresh token.")
    return Mimic(
        name="auth0",
        issuer=base + "/",
        endpoints={
            "authorize": f"{base}/authorize",
            "token": f"{base}/oauth/token",
            "userinfo": f"{base}/userinfo",
            "jwks": f"{base}/.well-known/jwks.json",
            "revoke": f"{base}/oauth/revoke",
            "end_session": f"{base}/oidc/logout",
        },
        refresh_token_scope="offline_access",
        errors={cause: code if cause.startswith("code") else refresh for cause in CAUSES},
    )


def okta(*, domain: str = "example.okta.com", authorization_server: str | None = "default") -> Mimic:
    """Okta: a custom authorization server (issuer ``https://{domain}/oauth2/{id}``, endpoints under it)
    or, with ``authorization_server=None``, the org authorization server (issuer ``https://{domain}``,
    endpoints under ``/oauth2/v1``). A refresh token only with ``offline_access``."""
    issuer = (
        f"https://{domain}"
        if authorization_server is None
        else f"https://{domain}/oauth2/{authorization_server}"
    )
    base = f"https://{domain}/oauth2" if authorization_server is None else issuer
    code = _error(400, "invalid_grant", "The authorization code is invalid or has expired.")
    refresh = _error(400, "invalid_grant", "The refresh token is invalid or expired.")
    return Mimic(
        name="okta",
        issuer=issuer,
        endpoints={
            "authorize": f"{base}/v1/authorize",
            "token": f"{base}/v1/token",
            "userinfo": f"{base}/v1/userinfo",
            "jwks": f"{base}/v1/keys",
            "revoke": f"{base}/v1/revoke",
            "end_session": f"{base}/v1/logout",
        },
        refresh_token_scope="offline_access",
        errors={cause: code if cause.startswith("code") else refresh for cause in CAUSES},
    )


def keycloak(
    *,
    base_url: str = "https://keycloak.example.test",
    realm: str = "myrealm",
    sso_session_idle: float | None = 1800.0,
) -> Mimic:
    """Keycloak (17 and later: no ``/auth`` prefix): issuer ``{base_url}/realms/{realm}``, a refresh
    token in every answer (no rotation unless "Revoke Refresh Token" is on) that dies after
    ``sso_session_idle`` seconds unused (30 minutes by default), said as ``refresh_expires_in``; and
    refusals that say which rule was hit: "Session not active" once the SSO session has ended."""
    issuer = f"{base_url.rstrip('/')}/realms/{realm}"
    base = f"{issuer}/protocol/openid-connect"
    code = _error(400, "invalid_grant", "Code not valid")
    return Mimic(
        name="keycloak",
        issuer=issuer,
        endpoints={
            "authorize": f"{base}/auth",
            "token": f"{base}/token",
            "userinfo": f"{base}/userinfo",
            "jwks": f"{base}/certs",
            "revoke": f"{base}/revoke",
            "end_session": f"{base}/logout",
        },
        rotate_refresh_tokens=False,
        refresh_idle=sso_session_idle,
        errors={
            "code_unknown": code,
            "code_expired": code,
            "code_reused": code,
            "code_revoked": code,
            "code_redirect_uri": _error(400, "invalid_grant", "Incorrect redirect_uri"),
            "code_pkce": _error(400, "invalid_grant", "PKCE verification failed: Invalid code verifier"),
            "user_disabled": _error(400, "invalid_grant", "Account disabled"),
            "refresh_unknown": _error(400, "invalid_grant", "Invalid refresh token"),
            "refresh_expired": _error(400, "invalid_grant", "Token is not active"),
            "refresh_revoked": _error(400, "invalid_grant", "Session not active"),
            "refresh_reused": _error(400, "invalid_grant", "Maximum allowed refresh token reuse exceeded"),
            "session_idle": _error(400, "invalid_grant", "Session not active"),
        },
    )


_GITHUB_DOCS = "https://docs.github.com/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"


def _github_error(error: str, description: str, anchor: str) -> tuple[int, dict[str, Any]]:
    return 200, {"error": error, "error_description": description, "error_uri": f"{_GITHUB_DOCS}#{anchor}"}


def github_user_id(claims: Mapping[str, Any]) -> int:
    """The numeric ``id`` the GitHub mimic gives a user: ``add_user(claims={"github_id": ...})``, else
    one derived from the ``sub`` (the embedded provider's user name, which plays GitHub's ``login``)."""
    given = claims.get("github_id")
    if isinstance(given, int):
        return given
    return int(hashlib.sha256(str(claims["sub"]).encode()).hexdigest()[:8], 16) + 1


def _github_user(claims: Mapping[str, Any]) -> dict[str, Any]:
    login = str(claims["sub"])
    return {
        "login": login,
        "id": github_user_id(claims),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{github_user_id(claims)}?v=4",
        "html_url": f"https://github.com/{login}",
        "type": "User",
        "site_admin": False,
        "name": claims.get("name"),
        "email": None,  # the public profile address: most users have none
    }


def _github_emails(claims: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "email": f"{github_user_id(claims)}+{claims['sub']}@users.noreply.github.com",
            "primary": False,
            "verified": True,
            "visibility": None,
        },
        {
            "email": claims["email"],
            "primary": True,
            "verified": claims.get("email_verified", True) is True,
            "visibility": "private",
        },
    ]


def github(*, client_id: str = "guard-client", expiring: bool = False) -> Mimic:
    """GitHub (OAuth 2.0, no OpenID Connect): no ID token and no discovery; token answers form-encoded
    unless ``Accept: application/json``, scopes comma-separated, every error an HTTP 200 with GitHub's
    own code (``bad_verification_code``, ``bad_refresh_token``, ``incorrect_client_credentials``,
    ``redirect_uri_mismatch``); the user from ``GET https://api.github.com/user`` (a numeric ``id``,
    ``login`` = the embedded user's ``sub``), their addresses from ``/user/emails`` with ``user:email``;
    sign-out revokes with ``DELETE /applications/{client_id}/token``.

    ``expiring=False``: an OAuth App's tokens (no ``expires_in``, no refresh token, never expire).
    ``expiring=True``: a GitHub App with expiring user tokens: ``expires_in``, a refresh token with
    ``refresh_token_expires_in``, rotated at each refresh, ``scope: ""`` in every answer (a GitHub App
    has permissions, not scopes; this one may read email addresses) (give the provider GitHub's lifetimes:
    ``access_token_ttl=8 * 3600, refresh_token_ttl=184 * 86400``)."""
    api = "https://api.github.com"
    code = _github_error(
        "bad_verification_code", "The code passed is incorrect or expired.", "bad-verification-code"
    )
    refresh = _github_error(
        "bad_refresh_token", "The refresh token passed is incorrect or expired.", "bad-refresh-token"
    )
    errors = {cause: code if cause.startswith("code") else refresh for cause in CAUSES}
    errors["code_redirect_uri"] = _github_error(
        "redirect_uri_mismatch",
        "The redirect_uri MUST match the registered callback URL for this application.",
        "redirect-uri-mismatch",
    )
    errors["user_disabled"] = code
    errors["client_invalid"] = _github_error(
        "incorrect_client_credentials",
        "The client_id and/or client_secret passed are incorrect.",
        "incorrect-client-credentials",
    )
    return Mimic(
        name="github",
        issuer="https://github.com",
        endpoints={
            "authorize": "https://github.com/login/oauth/authorize",
            "token": "https://github.com/login/oauth/access_token",
            "userinfo": f"{api}/user",
            "emails": f"{api}/user/emails",
            "revoke": f"{api}/applications/{client_id}/token",
        },
        id_tokens=False,
        refresh_tokens=expiring,
        expires=expiring,
        refresh_token_expires_in="refresh_token_expires_in",
        rotate_refresh_tokens=True,
        scope_separator=",",
        token_format="form_unless_json",
        user_api=_github_user,
        emails=_github_emails,
        # A GitHub App's token answers name no scope: its permissions are set in the app's settings
        # (here "Email addresses: read" is on); an OAuth App's need user:email.
        emails_scopes=() if expiring else ("user:email", "user"),
        answered_scope="" if expiring else None,
        revocation="github",
        errors=errors,
    )
