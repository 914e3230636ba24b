"""The conformance mode: the provider behaves as one OpenID Connect relying-party test case prescribes.

The OpenID Foundation's RP test tool serves each case under its own issuer path
(``https://rp.certification.openid.net:8080/<rp_id>/<case>``); `OAuthTestProvider.conformance_case`
does the same, and `Conformance` holds the individual faults for cases of your own.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OctKey, RSAKey

from ._keys import at_hash, ec_key, rsa_key

__all__ = ["CASES", "Conformance", "IDTokenSigner"]

IDTokenAlg = Literal["RS256", "ES256", "HS256", "none"]
TokenAuth = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Conformance:
    """What the provider does differently from a correct one, for one relying-party test case.

    The defaults are a correct provider; each field is one fault (or one optional behaviour).
    """

    id_token_alg: IDTokenAlg = "RS256"
    """How ID tokens are signed: RS256 or ES256 with a published key, HS256 with the client secret,
    ``none`` unsigned. Discovery advertises this algorithm only."""
    bad_signature: bool = False
    """Sign with another key (or secret) than the published one, under the published key's kid."""
    kid_absent: bool = False
    """Leave ``kid`` out of the ID token's header."""
    extra_keys: int = 0
    """Publish this many more RSA keys before the signing key in the JWKS."""
    rotate_key_after: int | None = None
    """After this many ID tokens, sign with a new key, published (beside the old one) from then on."""
    omit_claims: frozenset[str] = frozenset()
    """ID-token claims to leave out (``iat``, ``sub``, ``aud``...)."""
    claims: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    """ID-token claims to replace (``{"aud": "another-client"}``)."""
    refreshed_claims: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    """Claims replaced in ID tokens from refresh only (``{"sub": "someone-else"}``: OIDC Core 12.2)."""
    refresh_id_token: bool = True
    """False: refresh answers carry no ID token (OIDC Core 12.2 lets a provider leave it out)."""
    nonce: Literal["sent", "wrong", "list"] = "sent"
    """The ID token's nonce: the one sent, another one, or the one sent inside a list."""
    at_hash: Literal["right", "wrong", "absent"] = "right"
    typ: str | None = "JWT"
    """The ID token's header ``typ`` (``at+jwt`` makes it look like an RFC 9068 access token)."""
    id_token_scope_claims: bool = True
    """False: the claims of ``email`` and ``profile`` come only from userinfo (rp-scope-userinfo-claims)."""
    userinfo_sub: str | None = None
    """Userinfo answers this ``sub`` instead of the user's."""
    userinfo_bearer: Literal["header", "body"] = "header"
    """How userinfo takes the access token (RFC 6750 2.1 or 2.2); the other way is refused."""
    discovery_issuer: str | None = None
    """Discovery names this issuer instead of the provider's own."""
    token_auth: TokenAuth | None = None
    """The one client authentication the token endpoint accepts (``None``: either secret method)."""
    logout_alg: Literal["HS256", "none"] | None = None
    """Back-channel logout tokens signed with the client secret (HS256, an algorithm the client did not
    register) or unsigned, instead of with the provider's key."""
    logout_claims: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    """Logout-token claims replaced after the caller's (``None`` removes one: ``{"events": None}``)."""


def _case(**faults: Any) -> Conformance:
    return Conformance(**faults)


OTHER_CLIENT = "another-client"
OTHER_ISSUER = "https://other-idp.example.test"

CASES: Mapping[str, Conformance] = MappingProxyType(
    {
        # Basic RP
        "rp-response_type-code": _case(),
        "rp-scope-userinfo-claims": _case(id_token_scope_claims=False),
        "rp-nonce-invalid": _case(nonce="wrong"),
        "rp-token_endpoint-client_secret_basic": _case(token_auth="client_secret_basic"),
        "rp-id_token-kid-absent-single-jwks": _case(kid_absent=True),
        "rp-id_token-kid-absent-multiple-jwks": _case(kid_absent=True, extra_keys=1),
        "rp-id_token-iat": _case(omit_claims=frozenset({"iat"})),
        "rp-id_token-aud": _case(claims=MappingProxyType({"aud": OTHER_CLIENT})),
        "rp-id_token-sub": _case(omit_claims=frozenset({"sub"})),
        "rp-id_token-sig-none": _case(id_token_alg="none"),
        "rp-id_token-sig-rs256": _case(id_token_alg="RS256"),
        "rp-id_token-bad-sig-rs256": _case(id_token_alg="RS256", bad_signature=True),
        "rp-id_token-issuer-mismatch": _case(claims=MappingProxyType({"iss": OTHER_ISSUER})),
        "rp-userinfo-bad-sub-claim": _case(userinfo_sub="someone-else"),
        "rp-userinfo-bearer-header": _case(userinfo_bearer="header"),
        "rp-token_endpoint-client_secret_post": _case(token_auth="client_secret_post"),
        "rp-token_endpoint-private_key_jwt": _case(token_auth="private_key_jwt"),
        "rp-id_token-sig-es256": _case(id_token_alg="ES256"),
        "rp-id_token-bad-sig-es256": _case(id_token_alg="ES256", bad_signature=True),
        "rp-id_token-sig-hs256": _case(id_token_alg="HS256"),
        "rp-id_token-bad-sig-hs256": _case(id_token_alg="HS256", bad_signature=True),
        "rp-userinfo-bearer-body": _case(userinfo_bearer="body"),
        "rp-id_token-bad-at_hash": _case(at_hash="wrong"),
        # Config RP
        "rp-discovery-openid-configuration": _case(),
        "rp-discovery-jwks_uri-keys": _case(),
        "rp-discovery-issuer-not-matching-config": _case(discovery_issuer=OTHER_ISSUER),
        "rp-key-rotation-op-sign-key": _case(rotate_key_after=1),
        # RP-initiated logout
        "rp-init-logout": _case(),
        # Back-channel logout (the logout token the provider POSTs to the app)
        "rp-backchannel-rpinitlogout": _case(),
        "rp-backchannel-rpinitlogout-lt-alg-none": _case(logout_alg="none"),
        "rp-backchannel-rpinitlogout-lt-wrong-alg": _case(logout_alg="HS256"),
        "rp-backchannel-rpinitlogout-lt-wrong-aud": _case(
            logout_claims=MappingProxyType({"aud": OTHER_CLIENT})
        ),
        "rp-backchannel-rpinitlogout-lt-wrong-issuer": _case(
            logout_claims=MappingProxyType({"iss": OTHER_ISSUER})
        ),
        "rp-backchannel-rpinitlogout-lt-no-event": _case(logout_claims=MappingProxyType({"events": None})),
        "rp-backchannel-rpinitlogout-lt-wrong-event": _case(
            logout_claims=MappingProxyType({"events": {"http://schemas.openid.net/event/not-logout": {}}})
        ),
        "rp-backchannel-rpinitlogout-lt-with-nonce": _case(
            logout_claims=MappingProxyType({"nonce": "a-nonce-in-a-logout-token"})
        ),
        "x-backchannel-wrong-sid": _case(
            logout_claims=MappingProxyType({"sid": "not-a-session-of-this-app"})
        ),
        "x-backchannel-no-sid-no-sub": _case(logout_claims=MappingProxyType({"sid": None, "sub": None})),
        "x-backchannel-jti-replay": _case(),
        # not in the RP test tool: checks a certified RP makes all the same
        "x-id_token-azp-mismatch": _case(claims=MappingProxyType({"azp": OTHER_CLIENT})),
        "x-id_token-nonce-list": _case(nonce="list"),
        "x-id_token-typ-at+jwt": _case(typ="at+jwt"),
        "x-id_token-expired": _case(claims=MappingProxyType({"exp": 1_000_000_000})),
    }
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class IDTokenSigner:
    """Signs one provider's ID tokens and publishes its JWKS, as its `Conformance` says."""

    def __init__(self, conformance: Conformance, client_secret: str) -> None:
        self.conformance = conformance
        self._secret = client_secret
        self._issued = 0
        if conformance.id_token_alg == "ES256":
            self._key: RSAKey | ECKey = ec_key()
        else:
            self._key = rsa_key()
        self._published: list[RSAKey | ECKey] = [rsa_key(f"extra-{i}") for i in range(conformance.extra_keys)]
        self._published.append(self._key)
        if conformance.id_token_alg == "ES256":
            self._published.append(rsa_key())  # an RS256 key beside it, as providers publish

    @property
    def algorithms(self) -> list[str]:
        return [self.conformance.id_token_alg]

    def jwks(self) -> dict[str, Any]:
        if self.conformance.id_token_alg == "HS256":
            return {"keys": [k.as_dict(private=False) for k in self._published if k is not self._key]}
        return {"keys": [k.as_dict(private=False) for k in self._published]}

    def sign(self, claims: dict[str, Any], access_token: str | None, *, refreshed: bool = False) -> str:
        c = self.conformance
        claims = dict(claims)
        if c.rotate_key_after is not None and self._issued == c.rotate_key_after:
            self._key = rsa_key("rotated")
            self._published.insert(0, self._key)
        self._issued += 1
        if c.at_hash == "wrong" and access_token is not None:
            claims["at_hash"] = at_hash(access_token + "-not-this-one")
        elif c.at_hash == "absent":
            claims.pop("at_hash", None)
        if "nonce" in claims and c.nonce == "wrong":
            claims["nonce"] = "a-nonce-this-client-never-sent"
        elif "nonce" in claims and c.nonce == "list":
            claims["nonce"] = [claims["nonce"]]
        if not c.id_token_scope_claims:
            for name in ("email", "email_verified", "name", "preferred_username"):
                claims.pop(name, None)
        claims.update(c.claims)
        if refreshed:
            claims.update(c.refreshed_claims)
        for name in c.omit_claims:
            claims.pop(name, None)
        header: dict[str, Any] = {"alg": c.id_token_alg}
        if c.typ is not None:
            header["typ"] = c.typ
        if c.id_token_alg == "none":
            return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
        if c.id_token_alg == "HS256":
            secret = self._secret + ("-forged" if c.bad_signature else "")
            return jwt.encode(header, claims, _oct(secret))
        if not c.kid_absent:
            header["kid"] = self._key.kid
        key: RSAKey | ECKey = self._key
        if c.bad_signature:
            key = ec_key("forger") if c.id_token_alg == "ES256" else rsa_key("forger")
        return jwt.encode(header, claims, key)

    def sign_logout(self, claims: dict[str, Any]) -> str:
        """A back-channel logout token, signed with the key that signs ID tokens (asymmetric algs), with
        the case's logout faults."""
        c = self.conformance
        claims = dict(claims)
        for name, value in c.logout_claims.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        if c.logout_alg == "none":
            header = {"alg": "none", "typ": "logout+jwt"}
            return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
        if c.logout_alg == "HS256":
            return jwt.encode({"alg": "HS256", "typ": "logout+jwt"}, claims, _oct(self._secret))
        alg = "RS256" if c.id_token_alg in ("none", "HS256") else c.id_token_alg
        key = self._key if alg == c.id_token_alg else rsa_key()
        return jwt.encode({"alg": alg, "typ": "logout+jwt", "kid": key.kid}, claims, key)

    def decode(self, token: str) -> dict[str, Any] | None:
        """The claims of an ID token this provider signed (signature only, no expiry), else None."""
        c = self.conformance
        if c.id_token_alg == "none":
            try:
                payload = token.split(".")[1]
                claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            except (IndexError, ValueError):
                return None
            return claims if isinstance(claims, dict) else None
        keys: list[RSAKey | ECKey | OctKey] = list(self._published)
        if c.id_token_alg == "HS256":
            keys = [_oct(self._secret)]
        for key in keys:
            try:
                return dict(jwt.decode(token, key, algorithms=[c.id_token_alg]).claims)
            except (JoseError, ValueError, TypeError):
                continue
        return None


def _oct(secret: str) -> OctKey:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns about secrets under 112 bits; a test double's choice
        key: OctKey = OctKey.import_key(secret)
        return key
