"""The public surface, its configuration checks, and bad input at every endpoint."""

from __future__ import annotations

import pytest

import asgi_oauth_guard.testing as testing
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider


def test_public_names() -> None:
    assert testing.__all__ == sorted(testing.__all__)
    assert testing.__all__ == [
        "CONFORMANCE_CASES",
        "Conformance",
        "FakeClock",
        "Hold",
        "MIMIC_CAUSES",
        "Mimic",
        "OAuthTestProvider",
        "RecordedCall",
        "find_guard",
        "providers_transport",
        "signed_in",
    ]
    for name in testing.__all__:
        value = getattr(testing, name)
        if isinstance(value, type):
            assert value.__module__.startswith("asgi_oauth_guard.testing")
    assert all(isinstance(case, testing.Conformance) for case in testing.CONFORMANCE_CASES.values())


def test_fake_clock() -> None:
    clock = FakeClock(start=100.0)
    assert clock() == clock.now() == 100.0
    assert clock.advance(2.5) == 102.5
    assert clock() == 102.5
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    assert FakeClock()() == 1_800_000_000.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"issuer": "idp.example.test"}, "issuer"),
        ({"issuer": "https://idp.example.test?x=1"}, "issuer"),
        ({"issuer": "ftp://idp.example.test"}, "issuer"),
        ({"client_secret": ""}, "client_secret"),
        ({"code_ttl": 0}, "code_ttl"),
        ({"refresh_token_ttl": -1.0}, "refresh_token_ttl"),
        ({"timeout_delay": -1}, "timeout_delay"),
        ({"redirect_uris": ["/callback"]}, "redirect_uris"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OAuthTestProvider(**kwargs)


def test_redirect_uris_must_be_a_list() -> None:
    with pytest.raises(TypeError, match="list"):
        OAuthTestProvider(redirect_uris="https://app.example.test/cb")


def test_fault_controls_check_their_arguments() -> None:
    provider = OAuthTestProvider()
    with pytest.raises(ValueError, match="endpoint"):
        provider.fail_next(1, endpoint="tokens")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status"):
        provider.fail_next(1, status=302)
    with pytest.raises(ValueError, match="negative"):
        provider.timeout_next(-1)
    with pytest.raises(ValueError, match="negative"):
        provider.slow_next(1, -0.5)
    with pytest.raises(ValueError, match="unknown user"):
        provider.revoke_grants("nobody")
    with pytest.raises(ValueError, match="unknown user"):
        provider.disable_user("nobody")
    with pytest.raises(KeyError, match="never issued"):
        provider.grant_alive("never-issued")


def test_add_user_replaces_claims() -> None:
    provider = OAuthTestProvider()
    provider.add_user("alice", email="a@other.test", name="Alice A.")
    provider.login_as("alice")
    with pytest.raises(ValueError, match="empty"):
        provider.add_user("")


_FORM = {"content-type": "application/x-www-form-urlencoded"}
_AUTH = {"authorization": "Basic Z3VhcmQtY2xpZW50Omd1YXJkLXNlY3JldA=="}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        ("GET", "/authorize?client_id=%FF%FE", {}, b""),
        ("GET", "/authorize?" + "a=1&" * 50, {}, b""),
        ("POST", "/authorize", {"content-type": "application/json"}, b'{"client_id": "x"}'),
        ("POST", "/authorize", _FORM, b"interaction="),
        ("PUT", "/authorize", {}, b""),
        ("GET", "/token", {}, b""),
        ("POST", "/token", _FORM | _AUTH, b"grant_type=%ZZ&code=%"),
        ("POST", "/token", _FORM | _AUTH, b"\xff\xfe=\x00"),
        ("POST", "/token", {"content-type": "application/json"} | _AUTH, b'{"grant_type": "x"}'),
        ("POST", "/token", {"content-type": "text/plain"} | _AUTH, b"grant_type=refresh_token"),
        ("POST", "/token", _FORM | _AUTH, b"grant_type=refresh_token&grant_type=authorization_code"),
        ("POST", "/token", _FORM | _AUTH, b"x" * (70 * 1024)),
        ("POST", "/token", _FORM | {"authorization": "Basic !!!"}, b"grant_type=refresh_token"),
        ("POST", "/token", _FORM | {"authorization": "Basic bm9jb2xvbg=="}, b"grant_type=refresh_token"),
        ("POST", "/token", _FORM | {"authorization": "Basic //79"}, b"grant_type=refresh_token"),
        ("POST", "/token", _FORM | {"authorization": "Bearer abc"}, b"grant_type=refresh_token"),
        ("POST", "/token", _FORM | _AUTH, b"grant_type=authorization_code&code=&redirect_uri="),
        ("POST", "/token", _FORM | _AUTH, b"grant_type=refresh_token&refresh_token=%00%0d%0a"),
        (
            "POST",
            "/token",
            _FORM | _AUTH,
            b"grant_type=authorization_code&code=x&redirect_uri=y&code_verifier=\xc3\xa9",
        ),
        ("GET", "/userinfo", {"authorization": "Basic abc"}, b""),
        ("GET", "/userinfo", {"authorization": "Bearer \xe9".encode("latin-1")}, b""),
        ("DELETE", "/userinfo", {}, b""),
        ("POST", "/revoke", _FORM, b"token=abc"),
        ("POST", "/revoke", _FORM | _AUTH, b"token=a&token=b"),
        ("GET", "/revoke?token=abc", {}, b""),
        ("GET", "/end_session?id_token_hint=a.b.c", {}, b""),
        ("GET", "/end_session?id_token_hint=%FF", {}, b""),
        (
            "GET",
            "/end_session?post_logout_redirect_uri=https://x.test&client_id=guard-client&client_id=x",
            {},
            b"",
        ),
        ("POST", "/.well-known/openid-configuration", {}, b""),
        ("POST", "/jwks", _FORM, b"a=b"),
    ],
)
async def test_bad_input_is_a_clear_4xx_never_a_500(client, method, path, headers, body) -> None:
    response = await client.request(method, path, headers=headers, content=body)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.text.strip()


def test_an_issuer_may_end_with_a_slash_like_auth0s() -> None:
    provider = OAuthTestProvider(issuer="https://tenant.example.test/")
    assert provider.metadata["issuer"] == "https://tenant.example.test/"
    assert provider.metadata["token_endpoint"] == "https://tenant.example.test/token"
