"""How the client proves itself to the token and revocation endpoints.

``client_secret_basic`` and ``client_secret_post`` (RFC 6749 section 2.3.1), and ``private_key_jwt``
(RFC 7523 section 2.2, OIDC Core section 9): a short-lived JWT signed with the client's own private key,
so no shared secret exists to leak.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol
from urllib.parse import quote

from authlib.oauth2.auth import ClientAuth
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from .._errors import ConfigurationError

__all__ = ["ASSERTION_TYPE", "CLIENT_AUTH_METHODS", "ClientAuthMethod", "Credentials", "client_credentials"]

ClientAuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
CLIENT_AUTH_METHODS: tuple[ClientAuthMethod, ...] = (
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Long enough for clock skew between here and the provider, short enough that a leaked assertion
# (a proxy log) is useless soon; each one also carries a unique jti the provider can refuse twice.
ASSERTION_LIFETIME = 60
_EC_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


class Credentials(Protocol):
    def prepare(self, headers: dict[str, str], body: str, *, audience: str) -> tuple[dict[str, str], str]:
        """The request's headers and form body, with the client's credentials added."""
        ...


class _Secret:
    def __init__(self, client_id: str, client_secret: str, method: ClientAuthMethod) -> None:
        basic = method == "client_secret_basic"
        self._post = not basic
        # RFC 6749 section 2.3.1: Basic credentials are form-encoded first.
        self._auth = ClientAuth(
            quote(client_id, safe="") if basic else client_id,
            quote(client_secret, safe="") if basic else client_secret,
            method,
        )

    def prepare(self, headers: dict[str, str], body: str, *, audience: str) -> tuple[dict[str, str], str]:
        if self._post:  # it adds client_id itself; a pushed authorization request already has one
            body = _without_client_id(body)
        _, headers, body = self._auth.prepare("POST", audience, headers, body)
        return headers, body


class _Public:
    """A public client (RFC 6749 section 2.1: a native or single-page app, no secret): it names itself
    with ``client_id`` in the body; PKCE is what binds the code to it."""

    def __init__(self, client_id: str) -> None:
        self._id = f"client_id={quote(client_id, safe='')}"

    def prepare(self, headers: dict[str, str], body: str, *, audience: str) -> tuple[dict[str, str], str]:
        return headers, _with(_without_client_id(body), self._id)


class _PrivateKeyJWT:
    def __init__(self, client_id: str, key: RSAKey | ECKey | OKPKey, clock: Callable[[], float]) -> None:
        self._client_id = client_id
        self._key = key
        self._clock = clock
        if isinstance(key, RSAKey):
            alg = "RS256"
        elif isinstance(key, ECKey):
            alg = _EC_ALGS.get(str(key.get("crv")), "ES256")
        else:
            alg = "EdDSA"
        self._alg = str(key.get("alg") or alg)
        self._kid = key.kid if key.kid else key.thumbprint()

    def assertion(self, audience: str) -> str:
        now = int(self._clock())
        claims = {
            "iss": self._client_id,
            "sub": self._client_id,
            "aud": audience,
            "jti": secrets.token_urlsafe(24),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        return jwt.encode({"alg": self._alg, "typ": "JWT", "kid": self._kid}, claims, self._key)

    def prepare(self, headers: dict[str, str], body: str, *, audience: str) -> tuple[dict[str, str], str]:
        extra = (
            f"client_id={quote(self._client_id, safe='')}"
            f"&client_assertion_type={quote(ASSERTION_TYPE, safe='')}"
            f"&client_assertion={self.assertion(audience)}"
        )
        return headers, _with(_without_client_id(body), extra)


def _without_client_id(body: str) -> str:
    """The form body without its ``client_id``: a pushed authorization request (RFC 9126) carries one,
    and a method that names the client in the body must not make it two (a provider refuses those)."""
    if "client_id=" not in body:
        return body
    return "&".join(p for p in body.split("&") if not p.startswith("client_id="))


def _with(body: str, extra: str) -> str:
    return f"{body}&{extra}" if body else extra


def client_credentials(
    method: ClientAuthMethod,
    *,
    client_id: str,
    client_secret: str,
    client_key: str | Mapping[str, Any] | None,
    clock: Callable[[], float],
) -> Credentials:
    if method == "private_key_jwt":
        if client_key is None:
            raise ConfigurationError(
                "client_auth='private_key_jwt' needs client_key=: the client's private key as PEM text "
                "or a JWK dict (with the kid registered at the provider)"
            )
        return _PrivateKeyJWT(client_id, load_private_key(client_key), clock)
    if method == "none":
        return _Public(client_id)
    return _Secret(client_id, client_secret, method)


def load_private_key(value: str | Mapping[str, Any]) -> RSAKey | ECKey | OKPKey:
    """An RSA, EC or OKP private key from PEM text or a JWK dict; ``ConfigurationError`` otherwise."""
    key_types: dict[str, type[RSAKey] | type[ECKey] | type[OKPKey]] = {
        "RSA": RSAKey,
        "EC": ECKey,
        "OKP": OKPKey,
    }
    classes = list(key_types.values())
    if isinstance(value, Mapping):
        wanted = key_types.get(str(value.get("kty")))
        classes = [wanted] if wanted is not None else []
    for cls in classes:
        try:
            data = dict(value) if isinstance(value, Mapping) else value
            key: RSAKey | ECKey | OKPKey = cls.import_key(data)
        except (JoseError, ValueError, TypeError):
            continue
        if not key.is_private:
            raise ConfigurationError("client_key= is a public key: give the client's private key")
        return key
    raise ConfigurationError(
        "client_key= is not an RSA, EC or OKP private key (PEM text or a JWK dict with 'kty')"
    )
