from __future__ import annotations

import base64
import hashlib
import threading
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

__all__ = ["at_hash", "decode_id_token", "ec_key", "jwks", "rsa_key", "sign_id_token", "signing_key"]

_lock = threading.Lock()
_rsa: dict[str, RSAKey] = {}
_ec: dict[str, ECKey] = {}


def rsa_key(name: str = "main") -> RSAKey:
    """A process-wide RS256 key per name: RSA generation is slow, so every provider in a process shares
    them ("main" signs by default; conformance cases use "extra", "rotated", "forger", "client")."""
    with _lock:
        if name not in _rsa:
            _rsa[name] = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
        return _rsa[name]


def ec_key(name: str = "main") -> ECKey:
    """A process-wide P-256 (ES256) key per name."""
    with _lock:
        if name not in _ec:
            _ec[name] = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, auto_kid=True)
        return _ec[name]


def signing_key() -> RSAKey:
    return rsa_key("main")


def jwks() -> dict[str, Any]:
    return {"keys": [signing_key().as_dict(private=False)]}


def sign_id_token(claims: dict[str, Any]) -> str:
    key = signing_key()
    return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": key.kid}, claims, key)


def decode_id_token(token: str) -> dict[str, Any] | None:
    """The claims of an ID token this process signed, or None if it is not one (signature only, no expiry)."""
    try:
        return dict(jwt.decode(token, KeySet([signing_key()]), algorithms=["RS256"]).claims)
    except (JoseError, ValueError, TypeError):
        return None


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")
