"""ID-token validation as a certified relying party does it (OIDC Core 3.1.3.7, 3.1.3.6), without I/O.

The client (``_client.py``) fetches the keys; everything decided about a token is decided here, one check
per line, so each rule has a test that fails when the rule is removed (docs/oidc-conformance.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey, RSAKey

from ._errors import IDTokenError

__all__ = [
    "ASYMMETRIC",
    "SYMMETRIC",
    "allowed_algorithms",
    "at_hash",
    "candidate_keys",
    "check_claims",
    "check_header",
    "header_of",
    "unverified_claims",
    "verify",
]

Key = RSAKey | ECKey | OKPKey | OctKey

# Signatures a provider makes with a key it publishes. "none" is never accepted, whatever a provider
# advertises: an unsigned token proves nothing, even from the token endpoint over TLS.
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"}
)
# Signed with the client secret (OIDC Core 10.1): accepted only when the client registered for it, or
# anyone who learns the provider's public key could forge tokens by "HMAC-signing" with it.
SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})
# JWTs that are not ID tokens but are signed by the same keys: an access token (RFC 9068 section 4)
# or a back-channel logout token presented as an ID token must not sign anyone in.
CONFUSED_TYPES = frozenset({"at+jwt", "application/at+jwt", "logout+jwt", "application/logout+jwt"})
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP", "HS": "oct"}
_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
MAX_ID_TOKEN_LENGTH = 16 * 1024


def allowed_algorithms(advertised: Sequence[str], registered: str | None) -> frozenset[str]:
    """The algorithms this client accepts: the one it registered (``id_token_signed_response_alg``),
    else every asymmetric one the provider advertises (RS256 when it advertises none)."""
    if registered is not None:
        return frozenset({registered})
    return frozenset(a for a in advertised if a in ASYMMETRIC) or frozenset({"RS256"})


def header_of(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, unverified; ``IDTokenError`` if it is not one."""
    if len(token) > MAX_ID_TOKEN_LENGTH or token.count(".") != 2:
        raise IDTokenError("the ID token is not a compact JWS")
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise IDTokenError("the ID token's header is not base64url JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise IDTokenError("the ID token's header has no alg")
    return header


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS without checking it: only for a token this client checked before, or to
    pick whose keys check it."""
    try:
        segment = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, binascii.Error, ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def check_header(header: Mapping[str, Any], algorithms: frozenset[str]) -> None:
    alg = header["alg"]
    if alg not in algorithms or alg == "none":
        raise IDTokenError(f"the ID token is signed with {alg!r}, not one of {sorted(algorithms)}")
    typ = header.get("typ")
    if isinstance(typ, str) and typ.lower() in CONFUSED_TYPES:
        raise IDTokenError(f"a JWT of type {typ!r} is not an ID token")
    if "crit" in header:
        raise IDTokenError("the ID token's header has critical extensions this client does not know")


def candidate_keys(keys: KeySet, header: Mapping[str, Any]) -> list[Key]:
    """The published keys that may have signed a token with this header: the one its ``kid`` names,
    or, without a ``kid``, every key of the algorithm's type (the RP may try them all)."""
    kty = _KEY_TYPES.get(str(header["alg"])[:2])
    kid = header.get("kid")
    found: list[Key] = []
    for key in keys:
        if key.key_type != kty or key.get("use", "sig") != "sig":
            continue
        if key.get("alg") not in (None, header["alg"]):
            continue
        if kid is not None and key.kid != kid:
            continue
        found.append(key)
    return found


def verify(token: str, keys: Sequence[Key], alg: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of ``token`` if one of ``keys`` verifies it with ``alg``, else IDTokenError."""
    for key in keys:
        try:
            with warnings.catch_warnings():
                # joserfc warns on "EdDSA" (superseded by "Ed25519"): the provider's choice, not the app's
                warnings.simplefilter("ignore", SecurityWarning)
                decoded = jwt.decode(token, key, algorithms=[alg])
        except (JoseError, ValueError, TypeError):
            continue
        return dict(decoded.header), dict(decoded.claims)
    raise IDTokenError("no published key verifies the ID token's signature")


def at_hash(access_token: str, alg: str) -> str:
    """OIDC Core 3.1.3.6: the left half of the access token's hash by the hash of the ID token's alg."""
    digest = _HASHES.get(alg[-3:], hashlib.sha512 if alg in ("EdDSA", "Ed25519") else hashlib.sha256)(
        access_token.encode("ascii", "replace")
    ).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def check_claims(
    claims: Mapping[str, Any],
    *,
    alg: str,
    issuer: str,
    client_id: str,
    nonce: str | None,
    access_token: str | None,
    now: float,
    leeway: float,
) -> None:
    """OIDC Core 3.1.3.7 steps 2-12 (signature checked before): ``IDTokenError`` naming the failed rule."""
    if claims.get("iss") != issuer:
        raise IDTokenError("the ID token's iss is not the provider's issuer")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if client_id not in audiences:
        raise IDTokenError("the ID token's aud does not contain this client")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise IDTokenError("the ID token has several audiences and its azp is not this client")
    if "azp" in claims and claims["azp"] != client_id:
        raise IDTokenError("the ID token's azp is not this client")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise IDTokenError("the ID token has no sub")
    if not _number(claims.get("exp")) or claims["exp"] + leeway <= now:
        raise IDTokenError("the ID token has expired (or has no exp)")
    if not _number(claims.get("iat")) or claims["iat"] - leeway > now:
        raise IDTokenError("the ID token has no iat, or one in the future")
    if nonce is not None and not _same_string(claims.get("nonce"), nonce):
        raise IDTokenError("the ID token's nonce is not the one this sign-in sent")
    hashed = claims.get("at_hash")
    if hashed is not None and access_token and not _same_string(hashed, at_hash(access_token, alg)):
        raise IDTokenError("the ID token's at_hash does not match the access token")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _same_string(value: Any, expected: str) -> bool:
    return isinstance(value, str) and hmac.compare_digest(value.encode(), expected.encode())
