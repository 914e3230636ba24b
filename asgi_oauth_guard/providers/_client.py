"""The one place the guard talks HTTP to a provider: discovery, JWKS, token, revocation, userinfo.

One ``ProviderClient`` per :class:`Provider`. Takes an injected ``httpx.AsyncClient``; whoever created it
closes it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl, quote

import anyio
import httpx
from authlib.oauth2.rfc6749.parameters import prepare_token_request
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from .. import _id_token
from .._errors import ConfigurationError, IDTokenError, ProviderUnavailable
from .._protocol import TokenSet, decode_token_body, parse_token_response
from . import _discovery, _par
from ._client_auth import client_credentials
from ._metadata import Endpoints
from ._provider import DEFAULT_SCOPES, Provider
from ._userinfo import primary_verified_email, read_answer, userinfo_claims

logger = logging.getLogger("asgi_oauth_guard")

__all__ = ["JWKS_REFETCH_INTERVAL", "ProviderClient", "UserinfoTransport"]

# A token naming a key the cached JWKS lacks makes the client fetch the JWKS again (the provider rotated
# its keys), at most once per this many seconds: a flood of tokens with made-up kids cannot turn the
# guard into a load generator against the provider.
JWKS_REFETCH_INTERVAL = 60.0
UserinfoTransport = Literal["header", "body"]
# Claims of the ID token that a userinfo answer never overrides (OIDC Core 5.3.2: only sub must match).
_ID_TOKEN_ONLY = frozenset(
    {"iss", "sub", "aud", "azp", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "auth_time", "sid", "acr"}
)


class ProviderClient:
    """Talks to one provider for one client. Holds no user's token: every call takes what it needs."""

    def __init__(
        self,
        provider: Provider,
        *,
        http: httpx.AsyncClient,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        if not provider.client_id:
            raise ConfigurationError(
                f"Provider(name={provider.name!r}) has no client_id=: set it to the client ID the provider "
                "gave this app"
            )
        self.provider = provider
        self.name = provider.name
        self.client_id = provider.client_id
        self.scopes: tuple[str, ...] = provider.scopes if provider.scopes is not None else DEFAULT_SCOPES
        self.openid = "openid" in self.scopes
        self._http = http
        self._secret = provider.client_secret
        self._credentials = client_credentials(
            provider.client_auth,
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            client_key=provider.client_key,
            clock=clock,
        )
        self._discovery = provider.resolved_discovery
        self._timeout = timeout
        self._clock = clock
        self._id_token_alg = provider.id_token_signed_response_alg
        self._discovery_lock = anyio.Lock()
        self._jwks_lock = anyio.Lock()
        self._discovery_failure: ConfigurationError | ProviderUnavailable | None = None
        self._discovery_failures = 0
        self._retry_at = 0.0
        self._jwks: KeySet | None = None
        self._jwks_refetched_at: float | None = None
        self._said_cannot_revoke = False
        self._endpoints: Endpoints | None = self._written_out() if self._discovery == "none" else None

    def _written_out(self) -> Endpoints:
        p = self.provider
        assert p.issuer is not None
        assert p.authorization_endpoint is not None
        assert p.token_endpoint is not None
        return Endpoints(
            issuer=p.issuer,
            authorization_endpoint=p.authorization_endpoint,
            token_endpoint=p.token_endpoint,
            jwks_uri=p.jwks_uri,
            userinfo_endpoint=p.userinfo_endpoint,
            revocation_endpoint=p.revocation_endpoint,
            end_session_endpoint=p.end_session_endpoint,
            pushed_authorization_request_endpoint=p.pushed_authorization_request_endpoint,
            iss_parameter_supported=bool(p.iss_parameter_supported),
            id_token_algorithms=p.id_token_algorithms or ("RS256",),
        )

    def _completed(self, found: Endpoints) -> Endpoints:
        """The discovered endpoints, with what the Provider writes out winning."""
        p = self.provider
        changes: dict[str, Any] = dict(p.given_endpoints())
        if p.iss_parameter_supported is not None:
            changes["iss_parameter_supported"] = p.iss_parameter_supported
        if p.id_token_algorithms is not None:
            changes["id_token_algorithms"] = p.id_token_algorithms
        return dataclasses.replace(found, **changes) if changes else found

    def reroute(self, http: httpx.AsyncClient) -> httpx.AsyncClient:
        """Send every call through ``http`` from now on, and forget the endpoints discovered and the keys
        fetched so far (another server may answer now); returns the client used until now. For tests:
        ``asgi_oauth_guard.testing.signed_in`` routes a guard to the embedded provider this way."""
        previous, self._http = self._http, http
        if self._discovery != "none":
            self._endpoints = None
        self._jwks = None
        self._jwks_refetched_at = None
        return previous

    async def endpoints(self) -> Endpoints:
        """The provider's endpoints; discovery runs once, and again only after a failure.

        After a failure, requests fail at once with the same error until a backoff (1 s doubling to
        30 s) has passed: a provider that is down is not asked once per request, and a request does
        not wait out a connect timeout that the previous one just waited out.
        """
        if self._endpoints is not None:
            return self._endpoints
        failure = self._discovery_failure
        if failure is not None and self._clock() < self._retry_at:
            raise type(failure)(str(failure))
        async with self._discovery_lock:
            if self._endpoints is None:
                await self._discover()
            assert self._endpoints is not None
            return self._endpoints

    async def _discover(self) -> None:
        issuer = self.provider.issuer
        assert issuer is not None
        given = self.provider.given_endpoints()
        if self._discovery == "oidc":
            url, what = _discovery.oidc_metadata_url(issuer), "OIDC discovery"
        else:
            url, what = _discovery.oauth_metadata_url(issuer), "RFC 8414 metadata"
        try:
            metadata = await self._get_json(url, what, issuer=True)
            if self._discovery == "oidc" and _discovery.gaps(metadata, given):
                metadata = await self._fill_gaps(metadata)
            self._endpoints = self._completed(
                Endpoints.from_metadata(
                    metadata, issuer=issuer, named_issuer=self.provider.quirks.discovery_issuer, **given
                )
            )
        except (ConfigurationError, ProviderUnavailable) as exc:
            self._discovery_failures += 1
            self._discovery_failure = exc
            self._retry_at = self._clock() + min(30.0, 2.0 ** (self._discovery_failures - 1))
            raise
        self._discovery_failure = None
        self._discovery_failures = 0

    async def _fill_gaps(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The OpenID document completed by the provider's RFC 8414 metadata (``_discovery``), or as it is
        when there is none. Never fatal: a provider without that document is common, and an outage of it
        must not stop sign-ins; the sign-out that cannot revoke says so (``revoke``)."""
        issuer = metadata.get("issuer")
        if not isinstance(issuer, str):
            return metadata  # Endpoints.from_metadata refuses the document
        for url in _discovery.oauth_metadata_urls(issuer):
            try:
                oauth = await self._get_json(url, "RFC 8414 metadata")
                break
            except ConfigurationError:
                logger.debug("no RFC 8414 metadata at %s", url)
            except ProviderUnavailable as exc:
                logger.warning(
                    "%s; endpoints only it might name (%s) stay unknown", exc, ", ".join(_discovery.GAPS)
                )
                return metadata
        else:
            return metadata
        filled = _discovery.fill_gaps(metadata, oauth)
        if filled is None:
            logger.warning("RFC 8414 metadata at %s names another issuer: not used", url)
            return metadata
        return filled

    async def check(self) -> Endpoints:
        """Discovery and the key set, fetched now (whatever the backoff says): for startup checks.

        Raises :class:`ConfigurationError` for a mistake that cannot heal by itself (a wrong issuer, a
        404, an answer that is not JSON) and :class:`ProviderUnavailable` for one that may (no answer,
        a timeout, a 5xx)."""
        async with self._discovery_lock:
            if self._endpoints is None:
                await self._discover()
        provider = await self.endpoints()
        _par.uses_par(self.provider.use_par, provider, provider=self.name)  # use_par against the metadata
        if provider.jwks_uri is not None:
            keys = await self._fetch_keys(provider)
            async with self._jwks_lock:
                self._jwks = keys
        return provider

    async def authorization_redirect(self, endpoints: Endpoints, authorize_url: str) -> str:
        """Where the login route sends the browser: ``authorize_url`` itself, or with Pushed
        Authorization Requests (``_par``: when the provider requires them or ``use_par=True``) the
        authorization endpoint with the ``request_uri`` the provider gave for the pushed parameters."""
        if not _par.uses_par(self.provider.use_par, endpoints, provider=self.name):
            return authorize_url
        endpoint = endpoints.pushed_authorization_request_endpoint
        assert endpoint is not None
        body = _par.pushed_body(authorize_url)
        # RFC 9126 section 2: the audience may be the issuer, the token or the PAR endpoint; the token
        # endpoint is what the other requests use (RFC 7523 section 3).
        status, data = await self._post(
            endpoint, body, "pushed authorization", audience=endpoints.token_endpoint
        )
        redirect_uri = dict(parse_qsl(body)).get("redirect_uri")
        request_uri = _par.request_uri_of(status, data, redirect_uri=redirect_uri)
        return _par.pushed_redirect(
            endpoints.authorization_endpoint, client_id=self.client_id, request_uri=request_uri
        )

    async def exchange_code(self, *, code: str, redirect_uri: str, verifier: str) -> TokenSet:
        provider = await self.endpoints()
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=verifier
        )
        status, data = await self._post(
            provider.token_endpoint, body, "token", audience=provider.token_endpoint
        )
        return parse_token_response(status, data, now=self._clock(), quirks=self.provider.quirks)

    async def refresh(self, tokens: TokenSet, *, resource: str | None = None) -> TokenSet:
        """A refresh (RFC 6749 6); ``resource``: the API the new access token is for (RFC 8707)."""
        assert tokens.refresh_token is not None
        provider = await self.endpoints()
        extra = {"resource": resource} if resource is not None else {}
        body = prepare_token_request("refresh_token", refresh_token=tokens.refresh_token, **extra)
        status, data = await self._post(
            provider.token_endpoint, body, "token", audience=provider.token_endpoint
        )
        fresh = parse_token_response(
            status, data, now=self._clock(), previous=tokens, quirks=self.provider.quirks
        )
        if fresh.id_token is None or fresh.id_token == tokens.id_token:
            # OIDC Core 12.2: the answer may leave the ID token out; the login's one stays the session's
            # (RP-initiated logout sends it as id_token_hint).
            return dataclasses.replace(fresh, id_token=tokens.id_token)
        try:
            await self._check_refreshed_id_token(fresh, previous=tokens.id_token)
        except (IDTokenError, ProviderUnavailable, ConfigurationError) as exc:
            # The access token is good (the token endpoint sent it); only the identity assertion is not.
            # The session's identity never changes on refresh, so the login's ID token is kept.
            logger.warning("refresh: the new ID token is not used: %s", exc)
            return dataclasses.replace(fresh, id_token=tokens.id_token)
        return fresh

    async def client_credentials(self, *, scopes: Sequence[str], resource: str | None) -> TokenSet:
        """A token for this client itself (RFC 6749 4.4), for ``scopes`` and the API ``resource``
        (RFC 8707)."""
        provider = await self.endpoints()
        extra: dict[str, str] = {}
        if scopes:
            extra["scope"] = " ".join(scopes)
        if resource is not None:
            extra["resource"] = resource
        body = prepare_token_request("client_credentials", **extra)
        status, data = await self._post(
            provider.token_endpoint, body, "token", audience=provider.token_endpoint
        )
        return parse_token_response(status, data, now=self._clock(), quirks=self.provider.quirks)

    async def _check_refreshed_id_token(self, fresh: TokenSet, *, previous: str | None) -> None:
        """OIDC Core 12.2: a refreshed ID token passes the usual checks (no nonce) and has the login's
        ``iss``, ``sub`` and ``aud``."""
        assert fresh.id_token is not None
        claims = await self.validate_id_token(fresh.id_token, nonce=None, access_token=fresh.access_token)
        if previous is not None:
            before = _id_token.unverified_claims(previous)
            for name in ("iss", "sub", "aud"):
                if claims.get(name) != before.get(name):
                    raise IDTokenError(f"the refreshed ID token has another {name} than the login's")

    async def revoke(self, token: str, hint: Literal["refresh_token", "access_token"]) -> bool:
        """RFC 7009. ``False`` when the provider has no revocation endpoint or did not accept."""
        provider = await self.endpoints()
        if provider.revocation_endpoint is None:
            if not self._said_cannot_revoke:
                self._said_cannot_revoke = True
                logger.warning(
                    "sign-out cannot revoke tokens at provider %r (%s): it names no revocation_endpoint "
                    "(neither its discovery documents nor Provider(...) do), so refresh tokens stay valid "
                    "there until they expire; give the endpoint if it has one",
                    self.name,
                    provider.issuer,
                )
            return False
        if self.provider.quirks.revocation == "github":
            return await self._revoke_github(provider.revocation_endpoint, token, hint)
        body = f"token={quote(token, safe='')}&token_type_hint={hint}"
        # RFC 7523 section 3: the audience is the authorization server; OIDC Core 9 names its token endpoint.
        status, _ = await self._post(
            provider.revocation_endpoint, body, "revocation", audience=provider.token_endpoint
        )
        return status == 200

    @property
    def revokes_refresh_tokens(self) -> bool:
        """Whether sign-out can revoke a refresh token here (GitHub's API revokes access tokens only)."""
        return self.provider.quirks.revocation == "rfc7009"

    async def _revoke_github(self, url: str, token: str, hint: str) -> bool:
        """GitHub's "delete an app token": ``DELETE`` with the client's Basic credentials, the access
        token in a JSON body; 204 when revoked."""
        if hint != "access_token":
            return False
        secret = base64.b64encode(f"{self.client_id}:{self._secret}".encode()).decode("ascii")
        headers = {
            "Authorization": f"Basic {secret}",
            "Accept": "application/vnd.github+json",
            "Content-Type": "application/json",
        }
        try:
            with anyio.fail_after(self._timeout):
                response = await self._http.request(
                    "DELETE",
                    url,
                    content=json.dumps({"access_token": token}),
                    headers=headers,
                    timeout=self._timeout,
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            logger.warning("revocation request to the provider failed: %s", type(exc).__name__)
            raise ProviderUnavailable(f"the revocation request failed: {type(exc).__name__}") from None
        return response.status_code in (200, 204)

    async def validate_id_token(
        self, id_token: str, *, nonce: str | None, access_token: str | None = None, leeway: float = 60
    ) -> dict[str, Any]:
        """The ID token's claims, after every check of OIDC Core 3.1.3.7 (see ``_id_token``)."""
        provider = await self.endpoints()
        header = _id_token.header_of(id_token)
        _id_token.check_header(
            header, _id_token.allowed_algorithms(provider.id_token_algorithms, self._id_token_alg)
        )
        alg = header["alg"]
        if alg in _id_token.SYMMETRIC:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # joserfc warns about short secrets; the provider chose it
                keys: list[_id_token.Key] = [OctKey.import_key(self._secret)]
            claims = _id_token.verify(id_token, keys, alg)[1]
        else:
            claims = await self._verify_with_published_keys(provider, id_token, header)
        expected_issuer = self.provider.quirks.id_token_issuer
        _id_token.check_claims(
            claims,
            alg=alg,
            issuer=provider.issuer if expected_issuer is None else expected_issuer(claims),
            client_id=self.client_id,
            nonce=nonce,
            access_token=access_token,
            now=self._clock(),
            leeway=leeway,
        )
        return claims

    async def verify_signed_jwt(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The header and claims of a JWT the provider signed as it signs ID tokens (the same algorithms
        and keys, ``none`` never): a back-channel logout token. ``IDTokenError`` if it is not one."""
        provider = await self.endpoints()
        header = _id_token.header_of(token)
        alg = header["alg"]
        if alg not in _id_token.allowed_algorithms(provider.id_token_algorithms, self._id_token_alg):
            raise IDTokenError(f"the token is signed with {alg!r}, not an algorithm this client accepts")
        if "crit" in header:
            raise IDTokenError("the token's header has critical extensions this client does not know")
        if alg in _id_token.SYMMETRIC:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                keys: list[_id_token.Key] = [OctKey.import_key(self._secret)]
            return header, _id_token.verify(token, keys, alg)[1]
        return header, await self._verify_with_published_keys(provider, token, header)

    async def _verify_with_published_keys(
        self, provider: Endpoints, id_token: str, header: Mapping[str, Any]
    ) -> dict[str, Any]:
        keys = await self._keys(provider)
        candidates = _id_token.candidate_keys(keys, header)
        if not candidates or "kid" not in header:
            # An unknown kid (or, without a kid, no key that verifies): the provider may have rotated.
            try:
                return _id_token.verify(id_token, candidates, header["alg"])[1]
            except IDTokenError:
                refreshed = await self._refetch_keys(provider, keys)
                if refreshed is None:
                    raise
                candidates = _id_token.candidate_keys(refreshed, header)
        return _id_token.verify(id_token, candidates, header["alg"])[1]

    async def userinfo(
        self, access_token: str, *, transport: UserinfoTransport, expected_sub: str | None
    ) -> dict[str, Any]:
        """The userinfo answer (OIDC Core 5.3), sent the token in the header or the form body (RFC 6750
        2.1, 2.2), through ``Provider.userinfo_claims`` and bounded (``_userinfo``); ``IDTokenError``
        when its ``sub`` is not the ID token's (5.3.2: token substitution)."""
        provider = await self.endpoints()
        if provider.userinfo_endpoint is None:
            # Found out mid-sign-in (discovery came late): answered like an outage, so the sign-in's
            # outcome is recorded; the log says what to change.
            raise ProviderUnavailable("fetch_userinfo= is on but the provider has no userinfo_endpoint")
        url = provider.userinfo_endpoint
        headers = {"Accept": "application/json"}
        try:
            with anyio.fail_after(self._timeout):
                if transport == "body":
                    headers["Content-Type"] = "application/x-www-form-urlencoded"
                    body = f"access_token={quote(access_token, safe='')}"
                    response = await self._http.post(
                        url, content=body, headers=headers, timeout=self._timeout
                    )
                else:
                    headers["Authorization"] = f"Bearer {access_token}"
                    response = await self._http.get(url, headers=headers, timeout=self._timeout)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise ProviderUnavailable(f"userinfo failed: {type(exc).__name__}") from None
        data = userinfo_claims(
            read_answer(response.status_code, response.headers, response.content, "userinfo"),
            self.provider.userinfo_claims,
        )
        if expected_sub is not None and data["sub"] != expected_sub:
            raise IDTokenError("the userinfo answer is about another user than the ID token (sub differs)")
        return data

    async def identity(self, tokens: TokenSet, *, nonce: str | None) -> dict[str, Any]:
        """The user's claims from a fresh token answer: the ID token's (every check passed), with the
        userinfo answer's added when the provider reads it; a provider without ID tokens gives them through
        userinfo alone."""
        claims: dict[str, Any] = {}
        if tokens.id_token is not None:
            claims = await self.validate_id_token(
                tokens.id_token, nonce=nonce, access_token=tokens.access_token
            )
        elif self.openid:
            raise IDTokenError("the token answer has no id_token although the openid scope was asked")
        provider = self.provider
        if provider.fetch_userinfo or provider.userinfo_claims is not None:
            userinfo = await self.userinfo(
                tokens.access_token,
                transport="body" if provider.fetch_userinfo == "body" else "header",
                expected_sub=claims.get("sub") if claims else None,
            )
            claims = self.merge_userinfo(claims, userinfo)
        elif not claims:
            raise IDTokenError(
                f"provider {self.name!r} gave no ID token and reads no userinfo: nothing names the user "
                "(ask for the openid scope, or set userinfo_claims=)"
            )
        quirks = provider.quirks
        granted = set((tokens.scope if tokens.scope is not None else " ".join(self.scopes)).split())
        # An empty scope is a GitHub App's token: its permissions, not scopes, say whether it may.
        if quirks.emails_endpoint is not None and (granted & set(quirks.emails_scopes) or tokens.scope == ""):
            claims.pop("email", None)
            claims.pop("email_verified", None)
            email = await self._primary_email(quirks.emails_endpoint, tokens.access_token)
            if email is not None:
                claims.update(email=email, email_verified=True)
        return claims

    async def _primary_email(self, url: str, access_token: str) -> str | None:
        """The user's primary verified address from a list of them (GitHub's ``/user/emails``): one call
        at sign-in. An outage fails the sign-in (try again); an answer without one keeps no address."""
        headers = {"Accept": "application/json", "Authorization": f"Bearer {access_token}"}
        try:
            with anyio.fail_after(self._timeout):
                response = await self._http.get(url, headers=headers, timeout=self._timeout)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise ProviderUnavailable(f"the user's email addresses: {type(exc).__name__}") from None
        try:
            data = read_answer(response.status_code, response.headers, response.content, "the emails list")
        except IDTokenError as exc:
            logger.info("sign-in keeps no email address: %s", exc)
            return None
        email = primary_verified_email(data)
        if email is None:
            logger.info("sign-in keeps no email address: the provider lists no primary verified one")
        return email

    @staticmethod
    def merge_userinfo(id_claims: Mapping[str, Any], userinfo: Mapping[str, Any]) -> dict[str, Any]:
        """The ID token's claims with the userinfo claims added (never replacing the ID token's own)."""
        merged = {k: v for k, v in userinfo.items() if k not in _ID_TOKEN_ONLY}
        merged.update(id_claims)
        if "sub" not in merged:
            merged["sub"] = userinfo["sub"]
        return merged

    async def _keys(self, provider: Endpoints) -> KeySet:
        if self._jwks is None:
            async with self._jwks_lock:
                if self._jwks is None:
                    self._jwks = await self._fetch_keys(provider)
        return self._jwks

    async def _refetch_keys(self, provider: Endpoints, seen: KeySet) -> KeySet | None:
        """The JWKS fetched again, or ``None`` when a refetch ran less than ``JWKS_REFETCH_INTERVAL`` ago.

        Concurrent callers share one fetch: whoever waited on the lock finds the new set in place."""
        async with self._jwks_lock:
            if self._jwks is not seen:
                return self._jwks
            now = self._clock()
            if self._jwks_refetched_at is not None and now - self._jwks_refetched_at < JWKS_REFETCH_INTERVAL:
                return None
            self._jwks_refetched_at = now
            self._jwks = await self._fetch_keys(provider)
            return self._jwks

    async def _fetch_keys(self, provider: Endpoints) -> KeySet:
        if provider.jwks_uri is None:
            raise ConfigurationError("the provider has no jwks_uri: ID tokens cannot be checked")
        data = await self._get_json(provider.jwks_uri, "the provider's key set (jwks_uri)")
        keys = data.get("keys")
        if not isinstance(keys, list):
            raise ProviderUnavailable("the provider's JWKS has no keys list")
        # One key the client cannot read (a new key type, an encryption key) must not hide the others.
        usable = []
        for entry in keys:
            try:
                usable.append(KeySet.import_key_set({"keys": [entry]}).keys[0])
            except (JoseError, ValueError, KeyError, TypeError, IndexError):
                continue
        if keys and not usable:
            raise ProviderUnavailable("the provider's JWKS could not be read")
        return KeySet(usable)

    async def _get_json(self, url: str, what: str, *, issuer: bool = False) -> dict[str, Any]:
        """A provider document. No answer, a timeout, 408, 429 and 5xx may heal: ``ProviderUnavailable``.
        Any other status, or an answer that is not a JSON object, will not: ``ConfigurationError``,
        saying what to fix (``issuer``: the URL came from the ``issuer=`` setting)."""
        try:
            with anyio.fail_after(self._timeout):
                response = await self._http.get(
                    url, timeout=self._timeout, headers={"Accept": "application/json"}
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            raise ProviderUnavailable(f"{what} at {url} failed: {type(exc).__name__}") from None
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise ProviderUnavailable(f"{what} at {url} answered {status}")
        fix = (
            "set issuer= to the provider's issuer URL, the one that serves /.well-known/openid-configuration "
            "(for a provider without discovery, write its endpoints out: "
            "Provider(authorization_endpoint=..., token_endpoint=...))"
            if issuer
            else "check the provider's configuration"
        )
        if status != 200:
            moved = f" (a redirect to {response.headers.get('location')!r})" if 300 <= status < 400 else ""
            raise ConfigurationError(f"{what} at {url} answered {status}{moved}: {fix}")
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            raise ConfigurationError(f"{what} at {url} did not answer a JSON object: {fix}")
        return data

    async def _post(self, url: str, body: str, what: str, *, audience: str) -> tuple[int, Any]:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        headers, body = self._credentials.prepare(headers, body, audience=audience)
        try:
            # httpx's timeout bounds each phase (connect, each read); this bounds the whole call, so a
            # token request never outlasts the refresh lock's lease, whatever the transport does.
            with anyio.fail_after(self._timeout):
                response = await self._http.post(url, content=body, headers=headers, timeout=self._timeout)
        except (httpx.HTTPError, TimeoutError) as exc:
            logger.warning("%s request to the provider failed: %s", what, type(exc).__name__)
            raise ProviderUnavailable(f"the {what} request failed: {type(exc).__name__}") from None
        return response.status_code, decode_token_body(response.headers.get("content-type"), response.content)
