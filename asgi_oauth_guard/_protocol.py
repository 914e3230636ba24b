"""OAuth protocol logic with no I/O: URLs, PKCE, parameters, refresh timing, error classification.

Everything here is a plain function over values so it can be unit-tested directly.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from ._errors import ProviderUnavailable, TokenEndpointError
from ._reasons import Reason

if TYPE_CHECKING:
    from .providers._quirks import Quirks

MAX_PARAM_LENGTH = 2048
MAX_NEXT_LENGTH = 2048
# What a sign-in's `next` may take in its stored record (JSON escapes a non-ASCII character into 6 bytes):
# a flood of sign-ins with huge `next`s cannot fill a store faster than one with plain ones.
MAX_NEXT_STORED_BYTES = 2048


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TokenSet:
    """Tokens from one token-endpoint answer. ``expires_at`` and ``issued_at`` are epoch seconds."""

    access_token: str
    token_type: str = "Bearer"
    refresh_token: str | None = None
    id_token: str | None = None
    scope: str | None = None
    issued_at: float
    expires_at: float | None = None
    refresh_expires_at: float | None = None

    def lifetime(self) -> float | None:
        return None if self.expires_at is None else self.expires_at - self.issued_at


def new_state() -> str:
    return str(generate_token(43))


def new_pkce() -> tuple[str, str]:
    """A PKCE S256 verifier (RFC 7636: 43-128 unreserved characters) and its challenge."""
    verifier = str(generate_token(64))
    return verifier, str(create_s256_code_challenge(verifier))


def authorize_url(
    endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    state: str,
    code_challenge: str,
    nonce: str | None,
    extra: Mapping[str, str],
    resources: Sequence[str] = (),
) -> str:
    params: dict[str, str | list[str]] = dict(extra)
    if resources:
        params["resource"] = list(resources)  # RFC 8707: one parameter per API
    params["code_challenge"] = code_challenge
    params["code_challenge_method"] = "S256"
    if nonce is not None:
        params["nonce"] = nonce
    return str(
        prepare_grant_uri(
            endpoint,
            client_id=client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=scope,
            state=state,
            **params,
        )
    )


def safe_next(value: str | None, default: str = "/") -> str:
    """A same-site relative path to go to after login, or ``default``: never an open redirect.

    Refused: absolute URLs, scheme-relative ``//host``, backslashes (browsers read ``/\\host`` as ``//host``),
    control characters and anything over ``MAX_NEXT_LENGTH``.
    """
    if not value or len(value) > MAX_NEXT_LENGTH or not value.startswith("/"):
        return default
    if value.startswith("//") or "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def stored_next(value: str, default: str = "/") -> str:
    """``value`` (already ``safe_next``) if its stored form fits ``MAX_NEXT_STORED_BYTES``, else its path
    alone (the query dropped, as the re-login response does for a long address), else ``default``."""
    for candidate in (value, urlsplit(value).path):
        if candidate and len(json.dumps(candidate)) <= MAX_NEXT_STORED_BYTES:
            return candidate
    return default


def refresh_due(tokens: TokenSet, now: float, leeway: float) -> bool:
    """Whether to refresh before use: inside the leeway, which never exceeds half the token's lifetime,
    so a 1-second token is not refreshed on every request and a 1-hour one is refreshed a minute early."""
    if tokens.expires_at is None:
        return False
    lifetime = tokens.lifetime()
    if lifetime is not None and lifetime > 0:
        leeway = min(leeway, lifetime / 2)
    return tokens.expires_at - now <= leeway


def refresh_due_from(tokens: TokenSet, leeway: float) -> float:
    """The time from which :func:`refresh_due` says yes (``inf``: never), for callers that compare the
    clock with one number per request."""
    expires_at = tokens.expires_at
    if expires_at is None:
        return math.inf
    lifetime = expires_at - tokens.issued_at  # tokens.lifetime(), without its call (the cold path's)
    if lifetime > 0:
        leeway = min(leeway, lifetime / 2)
    return expires_at - leeway


# Longest lifetime believed from an answer (ten years): more is a provider bug, and a float that large
# would overflow the arithmetic done with it. Anything not in (0, MAX_EXPIRES_IN] reads as "not said".
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600.0


def _standard(error: TokenEndpointError, quirks: Quirks | None) -> str:
    """The RFC 6749 code of a refusal: already so when it came through ``parse_token_response``."""
    return error.error if quirks is None else quirks.standard_error(error.error)


def grant_refused(error: TokenEndpointError, quirks: Quirks | None = None) -> bool:
    """Whether the provider refused the user's grant (their session must end), rather than this client
    (``invalid_client``, ``unauthorized_client``, ``invalid_request``...: every session is kept).

    ``quirks``: the provider's, for a refusal not read by ``parse_token_response`` (which already wrote
    the provider's own codes, GitHub's ``bad_refresh_token``, as ``invalid_grant``)."""
    return _standard(error, quirks) == "invalid_grant"


def _seconds(value: Any) -> float | None:
    """A positive, sane number of seconds from an answer, or ``None`` (absent, not a number, absurd)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and not 0 < value <= MAX_EXPIRES_IN:
        return None  # a huge int would not even convert to float
    seconds = float(value)
    return seconds if math.isfinite(seconds) and 0 < seconds <= MAX_EXPIRES_IN else None


def decode_token_body(content_type: str | None, content: bytes) -> Any:
    """A token-endpoint answer's body: its JSON, or a form-encoded answer read as a JSON object would be
    (GitHub answers ``access_token=...&token_type=bearer`` to a request without ``Accept:
    application/json``); ``None`` for anything else (HTML, invalid JSON)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            return None
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=100)
        return dict(pairs) if pairs else None
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None


def parse_token_response(
    status: int,
    body: Any,
    *,
    now: float,
    previous: TokenSet | None = None,
    quirks: Quirks | None = None,
) -> TokenSet:
    """Turn a token-endpoint answer into a ``TokenSet`` or raise the matching error.

    A refresh answer without a refresh token keeps the previous one (RFC 6749 section 6). An OAuth error
    (also in a 200, as GitHub and Slack send it) is a ``TokenEndpointError`` carrying the RFC code the
    provider's own one stands for (``quirks.standard_error``); an answer that is neither tokens nor an
    OAuth error (HTML, invalid JSON, an array, a non-string token) is ``ProviderUnavailable``: nobody's
    session ends over it. A missing ``token_type`` reads as Bearer, an ``expires_in`` that is not a sane
    positive number as absent (a token that does not expire: never refreshed), and ``scope`` is written
    space-separated whatever the provider's separator (``quirks.scope_separator``).
    """
    if status >= 500:
        raise ProviderUnavailable(f"the token endpoint answered {status}")
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"the token endpoint answered {status} without a JSON object")
    error = body.get("error")
    if status >= 400 or error is not None:
        if not isinstance(error, str) or not error or len(error) > 100 or not error.isprintable():
            raise ProviderUnavailable(f"the token endpoint answered {status} without an OAuth error code")
        if error == "temporarily_unavailable":
            raise ProviderUnavailable("the token endpoint said temporarily_unavailable")
        description = body.get("error_description")
        raise TokenEndpointError(
            quirks.standard_error(error) if quirks is not None else error,
            description if isinstance(description, str) else None,
            status=status if status >= 400 else 400,
            provider_error=error,
        )
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise ProviderUnavailable("the token endpoint answered without a usable access_token")
    expires_in = _seconds(body.get("expires_in"))
    # Keycloak's refresh_expires_in: when the refresh token dies (0 means it does not, for offline tokens).
    # GitHub's refresh_token_expires_in says the same (six months, for a GitHub App's expiring tokens).
    refresh_expires_in = _seconds(body.get("refresh_expires_in", body.get("refresh_token_expires_in")))
    refresh_token = body.get("refresh_token")
    rotated = isinstance(refresh_token, str) and bool(refresh_token)
    if not rotated:
        refresh_token = previous.refresh_token if previous is not None else None
    refresh_expires_at: float | None = None
    if refresh_expires_in is not None:
        refresh_expires_at = now + refresh_expires_in
    elif not rotated and previous is not None:
        refresh_expires_at = previous.refresh_expires_at
    id_token = body.get("id_token")
    scope = body.get("scope")
    if isinstance(scope, str) and quirks is not None:
        scope = quirks.scope(scope)
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or not token_type or token_type.lower() == "bearer":
        token_type = "Bearer"
    return TokenSet(
        access_token=access_token,
        token_type=token_type,
        refresh_token=refresh_token if isinstance(refresh_token, str) else None,
        id_token=id_token if isinstance(id_token, str) and id_token else None,
        scope=scope if isinstance(scope, str) else (previous.scope if previous is not None else None),
        issued_at=now,
        expires_at=None if expires_in is None else now + expires_in,
        refresh_expires_at=refresh_expires_at,
    )


def classify_code_error(
    error: TokenEndpointError,
    *,
    age: float,
    code_lifetime: float,
    callback_url: str,
    redirect_uri: str,
    quirks: Quirks | None = None,
) -> Reason:
    """Why an authorization code was refused, from what the guard knows (providers' texts are generic).

    The guard never sends a code twice and always sends the pinned redirect_uri, so a refusal is
    most likely an expired code, or a callback that reached us at another address than the one pinned.
    Anything else reads as ``state_expired`` (this sign-in cannot be completed; start a new one):
    never ``login_required``, whose re-login goes straight back to the provider and could loop.
    ``code_reused`` is the guard's own knowledge (its mark of a code already sent), never guessed from a
    provider's word: GitHub's ``bad_verification_code`` says "wrong, expired or used" in one code.
    ``quirks``: the provider's, for a refusal not read by ``parse_token_response``.
    """
    code = _standard(error, quirks)
    if code == "access_denied":
        return Reason.access_denied  # the provider refused this user (GitHub: unverified_user_email)
    if code == "invalid_grant" and age >= code_lifetime:
        return Reason.code_expired
    if code == "invalid_grant" and callback_url != redirect_uri:
        return Reason.redirect_uri_mismatch
    return Reason.state_expired


# Token-endpoint answers (RFC 6749 section 5.2) that say this client's registration or settings are wrong:
# no retry and no new sign-in can help until someone fixes the configuration.
_CLIENT_MISCONFIGURATION = frozenset({"invalid_client", "unauthorized_client", "unsupported_grant_type"})

# A redirect URI the provider has not registered for this client, in the provider's own words (GitHub,
# Google): the guard sends the URI pinned at login to both endpoints, so it is the registration.
_REDIRECT_URI_ERRORS = frozenset({"redirect_uri_mismatch"})

# Authorization-endpoint errors (RFC 6749 section 4.1.2.1) that the app's request caused, not the user.
_AUTHORIZATION_MISCONFIGURATION = frozenset(
    {"invalid_request", "unauthorized_client", "unsupported_response_type", "invalid_scope"}
    | _REDIRECT_URI_ERRORS  # GitHub sends it to the registered callback
)


def is_client_misconfiguration(error: TokenEndpointError, quirks: Quirks | None = None) -> bool:
    """Whether a token-endpoint refusal is the app's configuration, not the user's grant.

    ``invalid_client`` (wrong ID, secret or ``client_auth``), ``unauthorized_client`` and
    ``unsupported_grant_type`` (the grant is not enabled for this client), and an ``invalid_request`` that
    names the ``redirect_uri`` or a ``redirect_uri_mismatch`` (GitHub, Google: not registered). Such a
    refusal must neither end the user's session nor read as an outage: it is shown as "sign-in is
    misconfigured" and logged as an error with the fix.
    """
    code = _standard(error, quirks)
    if code in _CLIENT_MISCONFIGURATION or {code, error.provider_error} & _REDIRECT_URI_ERRORS:
        return True
    return code == "invalid_request" and "redirect_uri" in (error.description or "").lower()


def is_authorization_misconfiguration(error: str) -> bool:
    """Whether an ``error=`` the provider sent back to the callback is the app's configuration (a scope,
    response type or parameter it refuses), rather than the user declining (``access_denied``)."""
    return error in _AUTHORIZATION_MISCONFIGURATION


def misconfiguration_fix(error: str, *, redirect_uri: str | None = None) -> str:
    """What to change, for the ERROR log line of a misconfiguration the provider reported."""
    if error == "invalid_client":
        return (
            "the provider refused this client's credentials: check client_id and client_secret, and "
            "client_auth ('client_secret_basic' or 'client_secret_post') against the provider's registration"
        )
    if error in ("unauthorized_client", "unsupported_grant_type"):
        return (
            "the provider does not allow this client the grant it asked for: enable the authorization code "
            "(and refresh token) grant for this client at the provider"
        )
    if error == "unsupported_response_type":
        return "the provider refused response_type=code: enable the authorization code flow for this client"
    if error == "invalid_scope":
        return "the provider refused the scopes asked for: check scopes= against what the client may ask"
    where = f" {redirect_uri!r}" if redirect_uri else ""
    return (
        f"the provider refused the sign-in request ({error}); if it names the redirect URI, register"
        f"{where} exactly at the provider, or set public_url=/redirect_uri= to the registered one"
    )


def is_prefetch(headers: Mapping[str, str]) -> bool:
    """A speculative load (``Sec-Purpose: prefetch`` or the legacy ``Purpose``/``X-Moz`` headers)."""
    purpose = headers.get("sec-purpose") or headers.get("purpose") or headers.get("x-moz") or ""
    return "prefetch" in purpose.lower() or "prerender" in purpose.lower()
