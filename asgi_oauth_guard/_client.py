"""The one place the guard talks HTTP to the provider: discovery, JWKS, token, revocation.

Takes an injected ``httpx.AsyncClient``; whoever created it closes it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import quote

import anyio
import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_token_request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ._errors import ConfigurationError, IDTokenError, ProviderUnavailable
from ._protocol import TokenSet, parse_token_response

logger = logging.getLogger("asgi_oauth_guard")

ClientAuthMethod = Literal["client_secret_basic", "client_secret_post"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Provider:
    """The provider's endpoints: from OIDC discovery (:meth:`OAuthGuard` ``issuer=``) or written out here."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str | None = None
    userinfo_endpoint: str | None = None
    revocation_endpoint: str | None = None
    end_session_endpoint: str | None = None
    iss_parameter_supported: bool = False
    id_token_algorithms: tuple[str, ...] = ("RS256",)

    def __post_init__(self) -> None:
        for name in ("issuer", "authorization_endpoint", "token_endpoint"):
            _check_url(f"Provider({name}=...)", getattr(self, name))
        for name in ("jwks_uri", "userinfo_endpoint", "revocation_endpoint", "end_session_endpoint"):
            value = getattr(self, name)
            if value is not None:
                _check_url(f"Provider({name}=...)", value)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], *, issuer: str) -> Provider:
        """From a discovery document, checking that it is the issuer's own (OIDC Discovery section 4.3).

        An issuer given without the trailing slash the provider uses (Auth0's ``https://tenant.auth0.com/``),
        or with one it does not use, takes the provider's exact spelling: ID tokens carry that one.
        """
        named = metadata.get("issuer")
        if isinstance(named, str) and named.rstrip("/") == issuer.rstrip("/"):
            issuer = named
        if named != issuer:
            raise ConfigurationError(
                f"the discovery document of {issuer!r} names issuer {metadata.get('issuer')!r}: "
                "set issuer= to exactly the provider's issuer URL"
            )
        algs = metadata.get("id_token_signing_alg_values_supported")
        try:
            return cls(
                issuer=issuer,
                authorization_endpoint=str(metadata["authorization_endpoint"]),
                token_endpoint=str(metadata["token_endpoint"]),
                jwks_uri=_opt(metadata, "jwks_uri"),
                userinfo_endpoint=_opt(metadata, "userinfo_endpoint"),
                revocation_endpoint=_opt(metadata, "revocation_endpoint"),
                end_session_endpoint=_opt(metadata, "end_session_endpoint"),
                iss_parameter_supported=metadata.get("authorization_response_iss_parameter_supported")
                is True,
                id_token_algorithms=tuple(a for a in algs if isinstance(a, str) and a != "none")
                if isinstance(algs, list)
                else ("RS256",),
            )
        except KeyError as exc:
            raise ConfigurationError(f"the discovery document of {issuer!r} lacks {exc.args[0]!r}") from None


def _opt(metadata: Mapping[str, Any], name: str) -> str | None:
    value = metadata.get(name)
    return value if isinstance(value, str) and value else None


def _check_url(what: str, value: str) -> None:
    url = httpx.URL(value) if isinstance(value, str) else None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"{what} must be an absolute http(s) URL, got {value!r}")


class OAuthClient:
    """Talks to one provider for one client. Holds no user's token: every call takes what it needs."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        client_id: str,
        client_secret: str,
        auth_method: ClientAuthMethod,
        issuer: str | None,
        provider: Provider | None,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self._http = http
        self.client_id = client_id
        self._auth = ClientAuth(
            quote(client_id, safe="") if auth_method == "client_secret_basic" else client_id,
            quote(client_secret, safe="") if auth_method == "client_secret_basic" else client_secret,
            auth_method,
        )
        self._issuer = issuer
        self._provider = provider
        self._timeout = timeout
        self._clock = clock
        self._discovery_lock = anyio.Lock()
        self._jwks: KeySet | None = None

    async def provider(self) -> Provider:
        """The provider's endpoints; discovery runs once, and again only after a failure."""
        if self._provider is not None:
            return self._provider
        async with self._discovery_lock:
            if self._provider is None:
                assert self._issuer is not None
                url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
                metadata = await self._get_json(url, "discovery")
                self._provider = Provider.from_metadata(metadata, issuer=self._issuer)
            return self._provider

    async def exchange_code(self, *, code: str, redirect_uri: str, verifier: str) -> TokenSet:
        provider = await self.provider()
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=verifier
        )
        status, data = await self._post(provider.token_endpoint, body, "token")
        return parse_token_response(status, data, now=self._clock())

    async def refresh(self, tokens: TokenSet) -> TokenSet:
        assert tokens.refresh_token is not None
        provider = await self.provider()
        body = prepare_token_request("refresh_token", refresh_token=tokens.refresh_token)
        status, data = await self._post(provider.token_endpoint, body, "token")
        return parse_token_response(status, data, now=self._clock(), previous=tokens)

    async def revoke(self, token: str, hint: Literal["refresh_token", "access_token"]) -> bool:
        """RFC 7009. ``False`` when the provider has no revocation endpoint or did not accept."""
        provider = await self.provider()
        if provider.revocation_endpoint is None:
            return False
        body = f"token={quote(token, safe='')}&token_type_hint={hint}"
        status, _ = await self._post(provider.revocation_endpoint, body, "revocation")
        return status == 200

    async def validate_id_token(
        self, id_token: str, *, nonce: str | None, leeway: int = 60
    ) -> dict[str, Any]:
        """The ID token's claims, after checking signature, ``iss``, ``aud``, ``azp``, ``exp``, ``nonce``."""
        provider = await self.provider()
        keys = await self._keys(provider, refresh=False)
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=list(provider.id_token_algorithms))
            except JoseError:
                # A key rotation at the provider: fetch the key set once more before refusing.
                token = jwt.decode(
                    id_token,
                    await self._keys(provider, refresh=True),
                    algorithms=list(provider.id_token_algorithms),
                )
            options: dict[str, Any] = {
                "iss": {"essential": True, "value": provider.issuer},
                "aud": {"essential": True, "value": self.client_id},
                "sub": {"essential": True},
                "exp": {"essential": True},
            }
            if nonce is not None:
                options["nonce"] = {"essential": True, "value": nonce}
            registry = jwt.JWTClaimsRegistry(now=lambda: int(self._clock()), leeway=leeway, **options)
            registry.validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise IDTokenError(f"the ID token is not valid: {type(exc).__name__}") from None
        claims = dict(token.claims)
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.client_id:
            raise IDTokenError("the ID token has several audiences and its azp is not this client")
        return claims

    async def _keys(self, provider: Provider, *, refresh: bool) -> KeySet:
        if self._jwks is None or refresh:
            if provider.jwks_uri is None:
                raise ConfigurationError("the provider has no jwks_uri: ID tokens cannot be checked")
            data = await self._get_json(provider.jwks_uri, "jwks")
            try:
                self._jwks = KeySet.import_key_set(data)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError):
                raise ProviderUnavailable("the provider's JWKS could not be read") from None
        return self._jwks

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            with anyio.fail_after(self._timeout):
                response = await self._http.get(
                    url, timeout=self._timeout, headers={"Accept": "application/json"}
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            raise ProviderUnavailable(f"{what} at {url} failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ProviderUnavailable(f"{what} at {url} answered {response.status_code}")
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            raise ProviderUnavailable(f"{what} at {url} did not answer a JSON object")
        return data

    async def _post(self, url: str, body: str, what: str) -> tuple[int, Any]:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        url, headers, body = self._auth.prepare("POST", url, headers, body)
        try:
            # httpx's timeout bounds each phase (connect, each read); this bounds the whole call, so a
            # token request never outlasts the refresh lock's lease, whatever the transport does.
            with anyio.fail_after(self._timeout):
                response = await self._http.post(url, content=body, headers=headers, timeout=self._timeout)
        except (httpx.HTTPError, TimeoutError) as exc:
            logger.warning("%s request to the provider failed: %s", what, type(exc).__name__)
            raise ProviderUnavailable(f"the {what} request failed: {type(exc).__name__}") from None
        try:
            data: Any = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        return response.status_code, data
