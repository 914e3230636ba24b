"""The pure ID-token rules of ``_id_token``, on inputs the provider cases do not reach."""

from __future__ import annotations

import base64
import json
import warnings
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from asgi_oauth_guard import IDTokenError, OAuthGuard
from asgi_oauth_guard._id_token import (
    allowed_algorithms,
    at_hash,
    candidate_keys,
    check_header,
    header_of,
    unverified_claims,
    verify,
)
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider
from asgi_oauth_guard.testing._keys import ec_key, rsa_key

ISSUER = "https://idp.example.test"


def _segment(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.e30.",
        f"{_segment(b'not json')}.e30.",
        f"{_segment([1, 2])}.e30.",
        f"{_segment({'typ': 'JWT'})}.e30.",
        f"{_segment({'alg': 7})}.e30.",
        f"{_segment({'alg': 'RS256'})}.{'x' * 20_000}.",
    ],
    ids=[
        "empty",
        "two-parts",
        "four-parts",
        "bad-base64",
        "not-json",
        "not-an-object",
        "no-alg",
        "alg-not-a-string",
        "huge",
    ],
)
def test_a_malformed_header_is_an_id_token_error(token: str) -> None:
    with pytest.raises(IDTokenError):
        header_of(token)


@pytest.mark.parametrize(
    "typ", ["at+jwt", "AT+JWT", "application/at+jwt", "logout+jwt", "application/logout+jwt"]
)
def test_token_types_that_are_not_id_tokens_are_refused(typ: str) -> None:
    with pytest.raises(IDTokenError, match="not an ID token"):
        check_header({"alg": "RS256", "typ": typ}, frozenset({"RS256"}))


@pytest.mark.parametrize(
    "header", [{"alg": "RS256"}, {"alg": "RS256", "typ": "JWT"}, {"alg": "RS256", "typ": "jwt"}]
)
def test_an_id_token_header_passes(header: dict[str, Any]) -> None:
    check_header(header, frozenset({"RS256"}))


def test_critical_extensions_are_refused() -> None:
    with pytest.raises(IDTokenError, match="critical"):
        check_header({"alg": "RS256", "crit": ["exp"], "exp": 1}, frozenset({"RS256"}))


def test_allowed_algorithms() -> None:
    assert allowed_algorithms(("RS256", "HS256", "none", "ES256"), None) == {"RS256", "ES256"}
    assert allowed_algorithms(("HS256", "none"), None) == {"RS256"}
    assert allowed_algorithms((), None) == {"RS256"}
    assert allowed_algorithms(("RS256",), "HS256") == {"HS256"}
    with pytest.raises(IDTokenError):
        check_header({"alg": "none"}, allowed_algorithms(("none",), None))


def test_at_hash_uses_the_algs_hash() -> None:
    token = "jHkWEdUXMU1BwAsC4vtUsZwnNTeYBD1d"
    assert len(at_hash(token, "RS256")) == 22  # 16 bytes
    assert len(at_hash(token, "ES384")) == 32  # 24 bytes
    assert len(at_hash(token, "PS512")) == 43  # 32 bytes
    assert at_hash(token, "EdDSA") == at_hash(token, "Ed25519") == at_hash(token, "RS512")
    assert at_hash(token, "RS256") == at_hash(token, "ES256") == at_hash(token, "HS256")


def test_candidate_keys_follow_kid_type_use_and_alg() -> None:
    signing = rsa_key().as_dict(private=False)
    encrypting = {**rsa_key("extra-0").as_dict(private=False), "use": "enc"}
    other_alg = {**rsa_key("rotated").as_dict(private=False), "alg": "PS256"}
    keys = KeySet.import_key_set({"keys": [signing, encrypting, other_alg, ec_key().as_dict(private=False)]})
    assert [k.kid for k in candidate_keys(keys, {"alg": "RS256"})] == [signing["kid"]]
    assert [k.kid for k in candidate_keys(keys, {"alg": "RS256", "kid": signing["kid"]})] == [signing["kid"]]
    assert candidate_keys(keys, {"alg": "RS256", "kid": "unknown"}) == []
    assert [k.kid for k in candidate_keys(keys, {"alg": "ES256"})] == [ec_key().kid]
    assert candidate_keys(keys, {"alg": "none"}) == []


def test_unverified_claims_of_garbage_is_empty() -> None:
    assert unverified_claims("nope") == {}
    assert unverified_claims(f"e30.{_segment([1])}.") == {}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_jwks_entry_the_client_cannot_read_does_not_hide_the_others(anyio_backend: str) -> None:
    clock = FakeClock()
    provider = OAuthTestProvider(issuer=ISSUER, client_id="c", client_secret="s" * 32, clock=clock)

    class OddJWKS(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self._inner = provider.transport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            if request.url.path != "/jwks":
                return response
            keys = json.loads(await response.aread())["keys"]
            return httpx.Response(200, json={"keys": [{"kty": "future", "kid": "x"}, {"kty": "RSA"}, *keys]})

    async with httpx.AsyncClient(transport=OddJWKS()) as http:
        guard = OAuthGuard(
            lambda scope, receive, send: None,  # type: ignore[arg-type,return-value]
            issuer=ISSUER,
            client_id="c",
            client_secret="s" * 32,
            secret_key="k" * 32,
            http_client=http,
            clock=clock,
        )
        now = int(clock())
        claims = {"iss": ISSUER, "aud": "c", "sub": "alice", "iat": now, "exp": now + 60}
        token = jwt.encode({"alg": "RS256", "kid": rsa_key().kid}, claims, rsa_key())
        assert (await guard.client.validate_id_token(token, nonce=None))["sub"] == "alice"


@pytest.mark.parametrize(
    ("alg", "key"),
    [
        ("PS256", RSAKey.generate_key(2048, auto_kid=True)),
        ("ES384", ECKey.generate_key("P-384", auto_kid=True)),
        ("EdDSA", OKPKey.generate_key("Ed25519", auto_kid=True)),
        ("Ed25519", OKPKey.generate_key("Ed25519", auto_kid=True)),
    ],
)
def test_other_asymmetric_algorithms_verify(alg: str, key: RSAKey | ECKey | OKPKey) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc on EdDSA; the guard's side must not warn
        token = jwt.encode({"alg": alg, "kid": key.kid}, {"sub": "alice"}, key, algorithms=[alg])
    header = header_of(token)
    check_header(header, allowed_algorithms((alg,), None))
    keys = KeySet.import_key_set({"keys": [key.as_dict(private=False)]})
    assert verify(token, candidate_keys(keys, header), alg)[1] == {"sub": "alice"}
    with pytest.raises(IDTokenError):
        verify(
            token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"), candidate_keys(keys, header), alg
        )
