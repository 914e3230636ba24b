"""The protocol logic without I/O."""

from __future__ import annotations

import base64
import hashlib

import pytest

from asgi_oauth_guard import ProviderUnavailable, Reason, TokenEndpointError, TokenSet
from asgi_oauth_guard._protocol import (
    authorize_url,
    classify_code_error,
    grant_refused,
    is_authorization_misconfiguration,
    is_client_misconfiguration,
    is_prefetch,
    misconfiguration_fix,
    new_pkce,
    parse_token_response,
    refresh_due,
    safe_next,
)
from asgi_oauth_guard.providers import Quirks


def test_pkce_is_s256_of_a_long_verifier() -> None:
    verifier, challenge = new_pkce()
    assert 43 <= len(verifier) <= 128
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == digest
    assert new_pkce()[0] != verifier


def test_authorize_url_carries_extra_params_like_googles() -> None:
    url = authorize_url(
        "https://accounts.example/o/auth?hd=example.com",
        client_id="c",
        redirect_uri="https://app/cb",
        scope="openid email",
        state="s",
        code_challenge="x",
        nonce=None,
        extra={"access_type": "offline", "prompt": "consent"},
    )
    assert url.startswith("https://accounts.example/o/auth?hd=example.com&")
    for part in ("access_type=offline", "prompt=consent", "code_challenge_method=S256", "response_type=code"):
        assert part in url
    assert "nonce" not in url


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "/"),
        ("", "/"),
        ("/a/b?c=d", "/a/b?c=d"),
        ("//evil", "/"),
        ("/\\evil", "/"),
        ("https://evil/", "/"),
        ("evil", "/"),
        ("/a\r\nb", "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
def test_safe_next(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def tokens(lifetime: float | None) -> TokenSet:
    return TokenSet(
        access_token="a", issued_at=1000.0, expires_at=None if lifetime is None else 1000.0 + lifetime
    )


def test_refresh_is_due_inside_the_leeway_capped_at_half_the_lifetime() -> None:
    hour = tokens(3600)
    assert not refresh_due(hour, 1000 + 3600 - 61, 60)
    assert refresh_due(hour, 1000 + 3600 - 60, 60)
    short = tokens(10)
    assert not refresh_due(short, 1004, 60)
    assert refresh_due(short, 1005, 60)
    assert not refresh_due(tokens(None), 10**9, 60)


def test_parse_success_keeps_the_previous_refresh_token_when_none_comes() -> None:
    previous = TokenSet(access_token="old", refresh_token="r1", scope="openid", issued_at=0)
    fresh = parse_token_response(200, {"access_token": "new", "expires_in": 30}, now=100, previous=previous)
    assert (fresh.access_token, fresh.refresh_token, fresh.expires_at, fresh.scope) == (
        "new",
        "r1",
        130,
        "openid",
    )
    rotated = parse_token_response(
        200, {"access_token": "n", "refresh_token": "r2"}, now=1, previous=previous
    )
    assert rotated.refresh_token == "r2" and rotated.expires_at is None


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"error": "invalid_grant", "error_description": "grant request is invalid"}, "invalid_grant"),
        (401, {"error": "invalid_client"}, "invalid_client"),
        (200, {"error": "invalid_grant"}, "invalid_grant"),
        (200, {"error": "bad_refresh_token"}, "bad_refresh_token"),  # GitHub's 200 with an error body
    ],
)
def test_parse_errors_carry_the_rfc_code(status: int, body: object, error: str) -> None:
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(status, body, now=0)
    assert info.value.error == error


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"error": "server_error"}),
        (503, None),
        (400, {"error": "temporarily_unavailable"}),
        (200, None),
        # Answers that are neither tokens nor an OAuth error: the provider's (or a proxy's) fault, so
        # nobody's session may end over them.
        (400, "not json"),
        (400, {}),
        (401, {"error": 42}),
        (200, {"token_type": "Bearer"}),
        (200, {"access_token": 12345}),
        (200, [{"access_token": "a"}]),
    ],
)
def test_parse_outages_are_unavailable(status: int, body: object) -> None:
    with pytest.raises(ProviderUnavailable):
        parse_token_response(status, body, now=0)


def test_expires_in_is_read_defensively() -> None:
    assert parse_token_response(200, {"access_token": "a", "expires_in": "60"}, now=0).expires_at == 60
    assert parse_token_response(200, {"access_token": "a", "expires_in": True}, now=0).expires_at is None
    assert (
        parse_token_response(200, {"access_token": "a", "expires_in": float("nan")}, now=0).expires_at is None
    )
    for odd in (1e308, -5, 0, "abc", 10**30, "1" * 40, [60], None):
        tokens = parse_token_response(200, {"access_token": "a", "expires_in": odd}, now=0)
        assert tokens.expires_at is None and tokens.token_type == "Bearer", odd


def test_keycloak_refresh_expiry_is_kept_and_carried_over() -> None:
    first = parse_token_response(
        200, {"access_token": "a", "refresh_token": "r", "refresh_expires_in": 1800}, now=100
    )
    assert first.refresh_expires_at == 1900
    again = parse_token_response(200, {"access_token": "b"}, now=200, previous=first)
    assert again.refresh_token == "r" and again.refresh_expires_at == 1900  # the same refresh token
    offline = parse_token_response(
        200, {"access_token": "c", "refresh_token": "o", "refresh_expires_in": 0}, now=0
    )
    assert offline.refresh_expires_at is None  # Keycloak's offline tokens: no expiry


def test_only_the_users_grant_errors_end_a_session() -> None:
    for error in ("invalid_grant", "bad_refresh_token", "invalid_refresh_token"):
        assert grant_refused(TokenEndpointError(error), Quirks())
    for error in ("invalid_client", "unauthorized_client", "invalid_request", "unsupported_grant_type"):
        assert not grant_refused(TokenEndpointError(error), Quirks())
    assert not grant_refused(TokenEndpointError("bad_refresh_token"))  # no quirks: the RFC's codes only


def test_code_errors_are_classified_from_the_guards_own_records() -> None:
    grant = TokenEndpointError("invalid_grant", "grant request is invalid")
    same = {"callback_url": "https://a/cb", "redirect_uri": "https://a/cb"}
    assert classify_code_error(grant, age=61, code_lifetime=60, **same) is Reason.code_expired
    assert classify_code_error(grant, age=5, code_lifetime=60, **same) is Reason.state_expired
    moved = {"callback_url": "http://a/cb", "redirect_uri": "https://a/cb"}
    assert classify_code_error(grant, age=5, code_lifetime=60, **moved) is Reason.redirect_uri_mismatch
    other = TokenEndpointError("invalid_request")
    assert classify_code_error(other, age=500, code_lifetime=60, **same) is Reason.state_expired


def test_prefetch_headers() -> None:
    assert is_prefetch({"sec-purpose": "prefetch"})
    assert is_prefetch({"purpose": "Prefetch"})
    assert is_prefetch({"sec-purpose": "prefetch;prerender"})
    assert not is_prefetch({"accept": "text/html"})


@pytest.mark.parametrize(
    ("error", "description", "expected"),
    [
        ("invalid_client", None, True),
        ("unauthorized_client", "grant not allowed", True),
        ("unsupported_grant_type", None, True),
        ("invalid_request", "redirect_uri did not match a registered one", True),
        ("invalid_request", "Missing REDIRECT_URI", True),
        ("invalid_request", "code_verifier required", False),
        ("invalid_grant", "redirect_uri mismatch", False),  # a grant problem: the user signs in again
        ("invalid_scope", None, False),
    ],
)
def test_client_misconfiguration_is_told_from_grant_problems(
    error: str, description: str | None, expected: bool
) -> None:
    assert is_client_misconfiguration(TokenEndpointError(error, description)) is expected


def test_authorization_errors_caused_by_the_app_are_misconfiguration() -> None:
    for error in ("invalid_request", "unauthorized_client", "unsupported_response_type", "invalid_scope"):
        assert is_authorization_misconfiguration(error)
    for error in ("access_denied", "login_required", "consent_required", "server_error", "other"):
        assert not is_authorization_misconfiguration(error)


def test_misconfiguration_fixes_name_the_setting() -> None:
    assert "client_secret" in misconfiguration_fix("invalid_client")
    assert "grant" in misconfiguration_fix("unauthorized_client")
    assert "scopes=" in misconfiguration_fix("invalid_scope")
    fix = misconfiguration_fix("invalid_request", redirect_uri="https://app.test/auth/callback")
    assert "'https://app.test/auth/callback'" in fix and "register" in fix
