"""Token answers of providers without OpenID Connect, read through their quirks (GitHub's above all)."""

from __future__ import annotations

import pytest

from asgi_oauth_guard import ConfigurationError, ProviderUnavailable, Reason, TokenEndpointError
from asgi_oauth_guard._protocol import (
    classify_code_error,
    decode_token_body,
    grant_refused,
    is_authorization_misconfiguration,
    is_client_misconfiguration,
    misconfiguration_fix,
    parse_token_response,
    refresh_due,
)
from asgi_oauth_guard.providers import Quirks

GITHUB_LIKE = Quirks(scope_separator=",", error_aliases={"unverified_user_email": "access_denied"})
SAME = {"callback_url": "https://a/cb", "redirect_uri": "https://a/cb"}


def refusal(body: dict[str, str], quirks: Quirks = GITHUB_LIKE) -> TokenEndpointError:
    with pytest.raises(TokenEndpointError) as caught:
        parse_token_response(200, body, now=0, quirks=quirks)
    return caught.value


def test_an_error_in_a_200_answer_is_a_refusal_with_the_rfc_code_it_stands_for() -> None:
    error = refusal(
        {
            "error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired.",
            "error_uri": "https://docs.github.com/apps/...#bad-verification-code",
        }
    )
    assert (error.error, error.provider_error, error.status) == (
        "invalid_grant",
        "bad_verification_code",
        400,
    )
    assert (
        error.describe() == "invalid_grant [bad_verification_code]: The code passed is incorrect or expired."
    )
    # A young code: the guard never sent it before, so nothing says it was reused: start again.
    assert classify_code_error(error, age=5, code_lifetime=600, **SAME) is Reason.state_expired
    assert classify_code_error(error, age=601, code_lifetime=600, **SAME) is Reason.code_expired
    assert not is_client_misconfiguration(error)
    refresh = refusal(
        {
            "error": "bad_refresh_token",
            "error_description": "The refresh token passed is incorrect or expired.",
        }
    )
    assert grant_refused(refresh)  # the session's grant is gone: its tokens go, the user signs in again


def test_githubs_client_and_redirect_uri_refusals_read_as_misconfiguration() -> None:
    wrong_secret = refusal({"error": "incorrect_client_credentials"})
    assert wrong_secret.error == "invalid_client" and is_client_misconfiguration(wrong_secret)
    assert not grant_refused(wrong_secret)  # every session is kept
    assert "client_secret" in misconfiguration_fix(wrong_secret.error)
    moved = refusal(
        {
            "error": "redirect_uri_mismatch",
            "error_description": "The redirect_uri MUST match the registered callback URL for this application.",
        }
    )
    assert is_client_misconfiguration(moved) and not grant_refused(moved)
    assert "register" in misconfiguration_fix(moved.error, redirect_uri="https://a/cb")
    # GitHub sends the same word to the registered callback when the authorize request named another.
    assert is_authorization_misconfiguration("redirect_uri_mismatch")


def test_a_providers_own_error_map_comes_first() -> None:
    denied = refusal(
        {"error": "unverified_user_email", "error_description": "The user must verify their primary email."}
    )
    assert denied.error == "access_denied"
    assert classify_code_error(denied, age=1, code_lifetime=600, **SAME) is Reason.access_denied
    custom = Quirks(error_aliases={"grant_gone": "invalid_grant", "bad_refresh_token": "invalid_request"})
    assert grant_refused(TokenEndpointError("grant_gone"), custom)
    assert not grant_refused(TokenEndpointError("bad_refresh_token"), custom)  # the provider's map wins
    assert refusal({"error": "grant_gone"}, custom).error == "invalid_grant"
    # A code nobody maps stays as it came, and never ends a session.
    odd = refusal({"error": "something_new"})
    assert odd.error == "something_new" and odd.provider_error is None and not grant_refused(odd)


def test_comma_separated_scopes_are_kept_as_rfc_6749_writes_them() -> None:
    tokens = parse_token_response(
        200,
        {"access_token": "gho_x", "token_type": "bearer", "scope": "repo,user:email, read:org"},
        now=0,
        quirks=GITHUB_LIKE,
    )
    assert tokens.scope == "repo user:email read:org" and tokens.token_type == "Bearer"
    spaced = parse_token_response(
        200, {"access_token": "a", "scope": "openid  email"}, now=0, quirks=Quirks()
    )
    assert spaced.scope == "openid email"
    empty = parse_token_response(200, {"access_token": "a", "scope": ""}, now=0, quirks=GITHUB_LIKE)
    assert empty.scope == ""


def test_a_token_without_expires_in_never_expires_and_is_never_refreshed() -> None:
    tokens = parse_token_response(
        200, {"access_token": "gho_x", "token_type": "bearer"}, now=0, quirks=GITHUB_LIKE
    )
    assert tokens.expires_at is None and tokens.refresh_token is None
    assert not refresh_due(tokens, now=10 * 365 * 24 * 3600, leeway=60)


def test_a_github_app_expiring_token_answer() -> None:
    # GitHub's documented example answer writes the lifetimes as strings.
    tokens = parse_token_response(
        200,
        {
            "access_token": "ghu_a",
            "expires_in": "28800",
            "refresh_token": "ghr_r",
            "refresh_token_expires_in": "15897600",
            "scope": "",
            "token_type": "bearer",
        },
        now=1000,
        quirks=GITHUB_LIKE,
    )
    assert tokens.expires_at == 1000 + 28800 and tokens.refresh_expires_at == 1000 + 15897600
    assert refresh_due(tokens, now=1000 + 28800 - 30, leeway=60)


def test_form_encoded_answers_read_like_json_ones() -> None:
    form = "application/x-www-form-urlencoded; charset=utf-8"
    body = decode_token_body(form, b"access_token=gho_x&scope=repo%2Cgist&token_type=bearer")
    assert body == {"access_token": "gho_x", "scope": "repo,gist", "token_type": "bearer"}
    assert parse_token_response(200, body, now=0, quirks=GITHUB_LIKE).scope == "repo gist"
    error = decode_token_body(
        form, b"error=bad_verification_code&error_description=The+code+passed+is+incorrect"
    )
    with pytest.raises(TokenEndpointError):
        parse_token_response(200, error, now=0, quirks=GITHUB_LIKE)
    assert decode_token_body("application/json", b'{"access_token": "a"}') == {"access_token": "a"}
    for content_type, content in (
        ("text/html", b"<html>Sign in to GitHub</html>"),
        (form, b""),
        (form, b"\xff\xfe"),
        ("application/json", b"[" * 100_000),
        (None, b"{not json"),
    ):
        with pytest.raises(ProviderUnavailable):
            parse_token_response(200, decode_token_body(content_type, content), now=0, quirks=GITHUB_LIKE)


@pytest.mark.parametrize(
    "settings",
    [
        {"scope_separator": ""},
        {"scope_separator": ", "},
        {"error_aliases": {"x": ""}},
        {"error_aliases": ["x"]},
    ],
)
def test_quirks_that_cannot_be_applied_are_refused_when_written(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="Quirks"):
        Quirks(**settings)  # type: ignore[arg-type]
