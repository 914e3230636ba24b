"""The authorization server's rules and state, without I/O: the ASGI layer in `_provider` drives it."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import logging
import math
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ._conformance import Conformance, IDTokenSigner
from ._keys import at_hash
from ._mimic import Mimic

__all__ = [
    "AuthRequest",
    "AuthorizationServer",
    "OAuthError",
    "PageError",
    "RedirectError",
    "Settings",
    "User",
    "absolute_http_uri",
]

logger = logging.getLogger("asgi_oauth_guard.testing")

# What oidc-provider says for every invalid_grant: the real cause is logged, never answered.
GENERIC_INVALID_GRANT = "grant request is invalid"
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_PKCE_VALUE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


class OAuthError(Exception):
    """An RFC 6749 error answered as JSON."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = dict(headers or {})
        self.body = {"error": error, "error_description": description} if body is None else dict(body)


class PageError(Exception):
    """An error the browser must see on a page: the redirect target cannot be trusted."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


class RedirectError(Exception):
    """An authorization error sent back to the (validated) redirect_uri."""

    def __init__(self, error: str, description: str, *, redirect_uri: str, state: str | None) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...] | None
    post_logout_redirect_uris: tuple[str, ...] | None
    clock: Callable[[], float]
    code_ttl: float
    access_token_ttl: float
    refresh_token_ttl: float
    id_token_ttl: float
    rotate_refresh_tokens: bool
    issue_refresh_tokens: bool
    conformance: Conformance = dataclasses.field(default_factory=Conformance)
    client_jwks: KeySet | None = None
    mimic: Mimic | None = None
    token_endpoint: str = ""
    iss_parameter: bool = True
    require_pushed_authorization_requests: bool = False
    request_uri_ttl: float = 60.0
    public_client: bool = False


@dataclasses.dataclass(kw_only=True)
class User:
    sub: str
    email: str
    name: str
    disabled: bool = False
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthRequest:
    client_id: str
    redirect_uri: str
    state: str | None
    scope: str
    nonce: str | None
    code_challenge: str
    prompt: str | None
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(kw_only=True)
class _Grant:
    sub: str
    scope: str
    auth_time: float
    acr: str | None = None
    alive: bool = True
    offline: bool = True  # whether its token answers carry a refresh token
    # the provider's session (OIDC sid), one per sign-in, for back-channel logout
    sid: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(12))


@dataclasses.dataclass(kw_only=True)
class _Code:
    grant: _Grant
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    expires_at: float
    consumed: bool = False


@dataclasses.dataclass(kw_only=True)
class _AccessToken:
    grant: _Grant
    expires_at: float
    revoked: bool = False
    # RFC 8707: the API this token is for (its audience), or None for the provider's default
    resource: str | None = None
    scope: str | None = None


@dataclasses.dataclass(kw_only=True)
class _RefreshToken:
    grant: _Grant
    expires_at: float
    consumed: bool = False
    dropped: bool = False  # one too many for its user (Mimic.refresh_tokens_per_user)


def absolute_http_uri(uri: str) -> bool:
    # Printable ASCII only: the URI goes into a Location header as it is.
    if not uri.isascii() or not uri.isprintable() or " " in uri or "#" in uri:
        return False
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _add_query(uri: str, params: Sequence[tuple[str, str]]) -> str:
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


def _seconds(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _user_claims(user: User) -> dict[str, Any]:
    return {"sub": user.sub, "email": user.email, "name": user.name, **user.extra}


def _scope_claims(user: User, scopes: set[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if "email" in scopes:
        claims["email"] = user.email
        claims["email_verified"] = True
    if "profile" in scopes:
        claims["name"] = user.name
        claims["preferred_username"] = user.sub
    claims.update(user.extra)
    return claims


class AuthorizationServer:
    """Users, grants, codes and tokens, and the rules that govern them (RFC 6749, 7009, 7636, 9207, OIDC)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.users: dict[str, User] = {}
        self.current_user = "alice"
        self._grants: list[_Grant] = []
        self._codes: dict[str, _Code] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._issued: list[str] = []
        self._interactions: dict[str, tuple[AuthRequest, float]] = {}
        self.signer = IDTokenSigner(settings.conformance, settings.client_secret)
        self._assertion_ids: dict[str, float] = {}
        # Played refusals (OAuthTestProvider.refuse_refreshes): sub -> cause, until the user signs in again.
        self.refusals: dict[str, str] = {}
        self._consented: set[str] = set()
        # Users' sessions at the provider (single sign-on), when a test set one: sub -> when it began.
        self.authenticated_at: dict[str, float] = {}
        self.ignores_step_up = False
        self._live_refresh: dict[str, list[_RefreshToken]] = {}
        # RFC 9126: request_uri -> (the pushed request, when it expires); each one is used once.
        self._pushed: dict[str, tuple[AuthRequest, float]] = {}

    # users and the controls on them

    def user(self, sub: str) -> User:
        try:
            return self.users[sub]
        except KeyError:
            raise ValueError(f"unknown user {sub!r}; add it with provider.add_user({sub!r})") from None

    def revoke_grants(self, sub: str) -> int:
        self.user(sub)
        revoked = 0
        for grant in self._grants:
            if grant.sub == sub and grant.alive:
                grant.alive = False
                revoked += 1
        self._grants = [g for g in self._grants if g.alive]
        return revoked

    def expire_codes(self) -> None:
        now = self.settings.clock()
        for code in self._codes.values():
            code.expires_at = min(code.expires_at, now)

    def expire_access_tokens(self) -> None:
        now = self.settings.clock()
        for token in self._access_tokens.values():
            token.expires_at = min(token.expires_at, now)

    def expire_refresh_tokens(self) -> None:
        now = self.settings.clock()
        for token in self._refresh_tokens.values():
            token.expires_at = min(token.expires_at, now)

    def issued_secrets(self) -> list[str]:
        """Every code and token issued so far, for tests that check nothing leaked."""
        return [*self._issued, *self._access_tokens, *self._refresh_tokens]

    def grant_alive(self, token: str) -> bool:
        found = self._access_tokens.get(token) or self._refresh_tokens.get(token)
        if found is None:
            raise KeyError(
                "this provider never issued that token (pass an access or refresh token it issued)"
            )
        return found.grant.alive

    # authorization endpoint

    def authorize_request(self, params: Mapping[str, str], repeated: set[str]) -> AuthRequest:
        """Validate an authorization request; PageError when the client or redirect_uri can't be trusted.

        With a ``request_uri`` (RFC 9126 section 4), the request pushed earlier, once: every other
        parameter but ``client_id`` is ignored, as the pushed ones are what the provider checked."""
        if "request_uri" in params:
            return self._pushed_request(params, repeated)
        request = self._checked_request(params, repeated)
        if self.settings.require_pushed_authorization_requests:
            raise RedirectError(
                "invalid_request",
                "this client must push its authorization requests (RFC 9126)",
                redirect_uri=request.redirect_uri,
                state=request.state,
            )
        return request

    def _pushed_request(self, params: Mapping[str, str], repeated: set[str]) -> AuthRequest:
        client_id = params.get("client_id")
        if not client_id or "client_id" in repeated or "request_uri" in repeated:
            raise PageError("invalid_request", "The request has no client_id (or more than one).")
        now = self.settings.clock()
        self._pushed = {k: v for k, v in self._pushed.items() if v[1] > now}
        found = self._pushed.pop(params["request_uri"], None)  # single use
        if found is None:
            raise PageError("invalid_request_uri", "The request_uri is unknown, used or expired.")
        if found[0].client_id != client_id:
            raise PageError("invalid_request_uri", "The request_uri was pushed by another client.")
        return found[0]

    def push(
        self, params: Mapping[str, str], repeated: set[str], authorization: str | None
    ) -> dict[str, Any]:
        """RFC 9126 section 2: authenticate the client, check the request as the authorization endpoint
        would, keep it under a new one-time ``request_uri``."""
        self.authenticate_client(params, authorization)
        if "request_uri" in params:
            raise OAuthError("invalid_request", "request_uri must not be pushed (RFC 9126 section 2.1)")
        try:
            request = self._checked_request(params, repeated)
        except (PageError, RedirectError) as exc:
            raise OAuthError(exc.error, exc.description) from None
        ttl = self.settings.request_uri_ttl
        request_uri = "urn:ietf:params:oauth:request_uri:" + secrets.token_urlsafe(24)
        self._pushed[request_uri] = (request, self.settings.clock() + ttl)
        return {"request_uri": request_uri, "expires_in": _seconds(ttl)}

    def _checked_request(self, params: Mapping[str, str], repeated: set[str]) -> AuthRequest:
        client_id = params.get("client_id")
        if not client_id or "client_id" in repeated:
            raise PageError("invalid_request", "The request has no client_id (or more than one).")
        if client_id != self.settings.client_id:
            raise PageError("invalid_client", f"Unknown client_id {client_id!r}.")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri or "redirect_uri" in repeated:
            raise PageError("invalid_request", "The request has no redirect_uri (or more than one).")
        if not self._redirect_uri_allowed(redirect_uri):
            raise PageError(
                "invalid_request",
                f"redirect_uri {redirect_uri!r} is not registered for client {client_id!r}.",
            )
        state = params.get("state")

        def refuse(error: str, description: str) -> RedirectError:
            return RedirectError(error, description, redirect_uri=redirect_uri, state=state)

        repeated = repeated - {"resource"}  # RFC 8707: one resource parameter per API asked for
        if repeated:
            raise refuse("invalid_request", f"parameters sent more than once: {', '.join(sorted(repeated))}")
        response_type = params.get("response_type")
        if not response_type:
            raise refuse("invalid_request", "missing required parameter 'response_type'")
        if response_type != "code":
            raise refuse("unsupported_response_type", "only response_type=code is supported")
        response_mode = params.get("response_mode")
        if response_mode not in (None, "query"):
            raise refuse("invalid_request", "only response_mode=query is supported")
        challenge = params.get("code_challenge")
        if not challenge:
            raise refuse(
                "invalid_request", "PKCE is required: send code_challenge and code_challenge_method=S256"
            )
        if params.get("code_challenge_method") != "S256":
            raise refuse("invalid_request", "only code_challenge_method=S256 is supported (plain is refused)")
        if not _PKCE_VALUE.fullmatch(challenge):
            raise refuse("invalid_request", "code_challenge must be 43-128 characters of [A-Za-z0-9-._~]")
        return AuthRequest(
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=state,
            scope=" ".join(params.get("scope", "").split()),
            nonce=params.get("nonce"),
            code_challenge=challenge,
            prompt=params.get("prompt"),
            params=dict(params),
        )

    def _redirect_uri_allowed(self, uri: str) -> bool:
        allowed = self.settings.redirect_uris
        if allowed is None:
            return absolute_http_uri(uri)
        return uri in allowed

    def error_redirect(self, redirect_uri: str, state: str | None, error: str, description: str) -> str:
        params = [("error", error), ("error_description", description)]
        if state is not None:
            params.append(("state", state))
        if self.settings.iss_parameter:
            params.append(("iss", self.settings.issuer))
        return _add_query(redirect_uri, params)

    def approve(self, request: AuthRequest, sub: str) -> tuple[str, str | None]:
        """Sign `sub` in for `request`: the redirect URL, and the error code if it is an error redirect."""
        user = self.user(sub)
        if user.disabled:
            logger.info("authorize: user %r is disabled; answering access_denied", sub)
            url = self.error_redirect(
                request.redirect_uri, request.state, "access_denied", "the user is not allowed to sign in"
            )
            return url, "access_denied"
        now = self.settings.clock()
        self._prune(now)
        auth_time, acr = self._authentication(request, sub, now)
        grant = _Grant(
            sub=sub, scope=request.scope, auth_time=auth_time, acr=acr, offline=self._offline(request, sub)
        )
        self._grants.append(grant)
        self.refusals.pop(sub, None)  # a new sign-in is what a played refusal asks for
        self._consented.add(sub)
        code = secrets.token_urlsafe(32)
        self._issued.append(code)
        self._codes[code] = _Code(
            grant=grant,
            redirect_uri=request.redirect_uri,
            code_challenge=request.code_challenge,
            nonce=request.nonce,
            expires_at=now + self.settings.code_ttl,
        )
        params = [("code", code)]
        if request.state is not None:
            params.append(("state", request.state))
        if self.settings.iss_parameter:
            params.append(("iss", self.settings.issuer))
        return _add_query(request.redirect_uri, params), None

    def _authentication(self, request: AuthRequest, sub: str, now: float) -> tuple[float, str | None]:
        """When the user authenticated for this sign-in, and how (``acr``). A user with a session here
        (``authenticated_at``) keeps it, unless the request asks for a fresh one (``prompt=login``, or a
        ``max_age`` shorter than the session's age: OIDC Core 3.1.2.1); ``acr_values`` are met with the
        first one asked. A provider that ``ignores_step_up`` does neither."""
        asked = request.params
        acr_values = asked.get("acr_values", "").split()
        acr = acr_values[0] if acr_values and not self.ignores_step_up else None
        since = self.authenticated_at.get(sub)
        if since is None:
            return now, acr
        if not self.ignores_step_up:
            max_age = asked.get("max_age", "")
            if "login" in (request.prompt or "").split() or (
                max_age.isdigit() and now - since > int(max_age)
            ):
                since = self.authenticated_at[sub] = now
        return since, acr

    def _offline(self, request: AuthRequest, sub: str) -> bool:
        """Whether this sign-in's grant gets refresh tokens, by the mimicked provider's rules."""
        mimic = self.settings.mimic
        if mimic is None:
            return True
        if not mimic.refresh_tokens:
            return False
        if mimic.refresh_token_scope is not None and mimic.refresh_token_scope not in request.scope.split():
            return False
        if mimic.refresh_token_param is not None:
            name, value = mimic.refresh_token_param
            if request.params.get(name) != value:
                return False
        if mimic.refresh_token_at_consent:
            consent = "consent" in (request.prompt or "").split()
            return consent or sub not in self._consented
        return True

    def deny(self, request: AuthRequest) -> str:
        return self.error_redirect(
            request.redirect_uri, request.state, "access_denied", "the user declined to sign in"
        )

    def new_interaction(self, request: AuthRequest) -> str:
        interaction = secrets.token_urlsafe(16)
        self._interactions[interaction] = (request, self.settings.clock() + self.settings.code_ttl)
        return interaction

    def interaction(self, interaction: str) -> AuthRequest | None:
        found = self._interactions.get(interaction)
        if found is None or self.settings.clock() >= found[1]:
            return None
        return found[0]

    def _prune(self, now: float) -> None:
        # Expired codes answer exactly like unknown ones, so forgetting them changes nothing observable.
        self._codes = {k: c for k, c in self._codes.items() if c.expires_at > now}
        self._interactions = {k: v for k, v in self._interactions.items() if v[1] > now}

    # token endpoint

    def authenticate_client(self, params: Mapping[str, str], authorization: str | None) -> str:
        """Check client_secret_basic or client_secret_post; the method used, or OAuthError."""
        realm = {"WWW-Authenticate": f'Basic realm="{self.settings.issuer}"'}

        def invalid_client(description: str) -> OAuthError:
            return OAuthError("invalid_client", description, status=401, headers=realm)

        if self.settings.public_client:
            # token_endpoint_auth_method "none" (RFC 7591 2): the client names itself, PKCE binds the code
            if authorization is not None or {"client_secret", "client_assertion"} & params.keys():
                raise invalid_client("this client is public: it authenticates with nothing but client_id")
            if not hmac.compare_digest(
                params.get("client_id", "").encode(), self.settings.client_id.encode()
            ):
                raise invalid_client("client authentication failed")
            return "none"
        if "client_assertion" in params or "client_assertion_type" in params:
            return self._authenticate_assertion(params, authorization, invalid_client)
        if authorization is not None and authorization[:6].lower() == "basic ":
            if "client_secret" in params:
                raise OAuthError(
                    "invalid_request", "use one client authentication method, not Basic and client_secret"
                )
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise invalid_client("the Basic credentials are not valid base64 of 'id:secret'") from None
            client_id, sep, secret = decoded.partition(":")
            if not sep:
                raise invalid_client("the Basic credentials are not valid base64 of 'id:secret'")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
            if "client_id" in params and params["client_id"] != client_id:
                raise OAuthError(
                    "invalid_request", "client_id in the body differs from the Basic credentials"
                )
            method = "client_secret_basic"
        elif "client_secret" in params:
            client_id, secret = params.get("client_id", ""), params["client_secret"]
            method = "client_secret_post"
        else:
            raise invalid_client(
                "client authentication is required (client_secret_basic or client_secret_post)"
            )
        id_ok = hmac.compare_digest(client_id.encode(), self.settings.client_id.encode())
        secret_ok = hmac.compare_digest(secret.encode(), self.settings.client_secret.encode())
        if not (id_ok and secret_ok):
            logger.info("token: client authentication failed (%s)", method)
            raise invalid_client("client authentication failed")
        required = self.settings.conformance.token_auth
        if required is not None and method != required:
            raise invalid_client(f"this client is registered for {required}, not {method}")
        return method

    def _authenticate_assertion(
        self,
        params: Mapping[str, str],
        authorization: str | None,
        invalid_client: Callable[[str], OAuthError],
    ) -> str:
        """RFC 7523 section 3 and OIDC Core 9 ``private_key_jwt``: a JWT signed by the client's own key."""
        s = self.settings
        if authorization is not None:
            raise OAuthError("invalid_request", "use one client authentication method, not two")
        if params.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            raise invalid_client(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            )
        if s.client_jwks is None or s.conformance.token_auth not in (None, "private_key_jwt"):
            raise invalid_client("this client has no registered key for private_key_jwt")
        try:
            claims = dict(jwt.decode(params.get("client_assertion", ""), s.client_jwks).claims)
        except (JoseError, ValueError, TypeError):
            raise invalid_client("the client assertion's signature does not verify") from None
        now = s.clock()
        token_endpoint = s.token_endpoint or s.issuer.rstrip("/") + "/token"
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        jti = claims.get("jti")
        exp = claims.get("exp")
        if claims.get("iss") != s.client_id or claims.get("sub") != s.client_id:
            raise invalid_client("the client assertion's iss and sub must be the client_id")
        if token_endpoint not in audiences and s.issuer not in audiences:
            raise invalid_client("the client assertion's aud must be the token endpoint")
        if not isinstance(exp, (int, float)) or exp <= now or exp > now + 600:
            raise invalid_client("the client assertion must expire within 10 minutes from now")
        if not isinstance(jti, str) or not jti:
            raise invalid_client("the client assertion has no jti")
        self._assertion_ids = {k: v for k, v in self._assertion_ids.items() if v > now}
        if jti in self._assertion_ids:
            raise invalid_client("this client assertion was already used (jti replay)")
        self._assertion_ids[jti] = float(exp)
        if "client_id" in params and params["client_id"] != s.client_id:
            raise invalid_client("client_id differs from the client assertion")
        return "private_key_jwt"

    def token(self, params: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        try:
            self.authenticate_client(params, authorization)
        except OAuthError as exc:
            mimic = self.settings.mimic
            if exc.error != "invalid_client" or mimic is None or "client_invalid" not in mimic.errors:
                raise
            status, body = mimic.errors["client_invalid"]
            raise OAuthError(
                str(body["error"]), str(body.get("error_description", "")), status=status, body=body
            ) from None
        grant_type = params.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "missing required parameter 'grant_type'")
        if grant_type == "authorization_code":
            return self._exchange_code(params)
        if grant_type == "refresh_token":
            return self._refresh(params)
        if grant_type == "client_credentials":
            return self._client_credentials(params)
        raise OAuthError(
            "unsupported_grant_type",
            "supported grant types: authorization_code, refresh_token, client_credentials",
        )

    def _client_credentials(self, params: Mapping[str, str]) -> dict[str, Any]:
        """RFC 6749 4.4: a token for the client itself, for the scopes and the resource (RFC 8707) asked."""
        s = self.settings
        now = s.clock()
        scope = params.get("scope", "")
        if "openid" in scope.split() or "offline_access" in scope.split():
            raise OAuthError("invalid_scope", "openid and offline_access are for users")
        access_token = secrets.token_urlsafe(32)
        grant = _Grant(sub=s.client_id, scope=scope, auth_time=now)
        self._access_tokens[access_token] = _AccessToken(
            grant=grant, expires_at=now + s.access_token_ttl, resource=params.get("resource"), scope=scope
        )
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": _seconds(s.access_token_ttl),
        }
        if scope:
            body["scope"] = scope
        return body

    def token_info(self, token: str) -> dict[str, Any]:
        """What an API learns by introspecting an access token (RFC 7662): ``active``, and its ``sub``,
        ``scope`` and ``aud`` (the resource it was issued for, RFC 8707; the client id by default)."""
        found = self._access_tokens.get(token)
        if found is None:
            return {"active": False}
        user = self.users.get(found.grant.sub)
        active = (
            not found.revoked
            and found.grant.alive
            and self.settings.clock() < found.expires_at
            and (user is None or not user.disabled)
        )
        if not active:
            return {"active": False}
        return {
            "active": True,
            "sub": found.grant.sub,
            "scope": found.scope if found.scope is not None else found.grant.scope,
            "aud": found.resource or self.settings.client_id,
        }

    def _invalid_grant(self, cause: str, why: str) -> OAuthError:
        """The refusal for ``cause`` (a `CAUSES` key): the mimicked provider's answer, or the generic one."""
        logger.info("token: invalid_grant (%s)", why)
        mimic = self.settings.mimic
        if mimic is not None and cause in mimic.errors:
            status, body = mimic.errors[cause]
            error, description = str(body["error"]), str(body.get("error_description", ""))
            return OAuthError(error, description, status=status, body=body)
        return OAuthError("invalid_grant", GENERIC_INVALID_GRANT)

    def _exchange_code(self, params: Mapping[str, str]) -> dict[str, Any]:
        for name in ("code", "redirect_uri"):
            if not params.get(name):
                raise OAuthError("invalid_request", f"missing required parameter {name!r}")
        # The order of checks follows oidc-provider: a reused code revokes its grant only once it is
        # otherwise valid, and a wrong redirect_uri or verifier leaves the code unconsumed.
        code = self._codes.get(params["code"])
        now = self.settings.clock()
        if code is None:
            raise self._invalid_grant("code_unknown", "authorization code not found")
        if now >= code.expires_at:
            raise self._invalid_grant("code_expired", "authorization code is expired")
        if not code.grant.alive:
            raise self._invalid_grant("code_revoked", "the grant of this authorization code was revoked")
        verifier = params.get("code_verifier", "")
        if not _pkce_matches(verifier, code.code_challenge):
            raise self._invalid_grant("code_pkce", "PKCE verification failed")
        if params["redirect_uri"] != code.redirect_uri:
            raise self._invalid_grant("code_redirect_uri", "redirect_uri differs from the authorize request")
        if code.consumed:
            self._revoke(code.grant, "authorization code reused")
            raise self._invalid_grant("code_reused", "authorization code already used; its grant is revoked")
        user = self.users.get(code.grant.sub)
        if user is None or user.disabled:
            raise self._invalid_grant("user_disabled", "the user is disabled")
        code.consumed = True
        return self._issue(code.grant, user, nonce=code.nonce, refresh_token=None)

    def _refresh(self, params: Mapping[str, str]) -> dict[str, Any]:
        value = params.get("refresh_token")
        if not value:
            raise OAuthError("invalid_request", "missing required parameter 'refresh_token'")
        token = self._refresh_tokens.get(value)
        if token is None:
            raise self._invalid_grant("refresh_unknown", "refresh token not found")
        if self.settings.clock() >= token.expires_at:
            raise self._invalid_grant("refresh_expired", "refresh token is expired")
        if not token.grant.alive or token.dropped:
            raise self._invalid_grant("refresh_revoked", "the grant of this refresh token was revoked")
        if token.consumed:
            self._revoke(token.grant, "rotated refresh token reused")
            raise self._invalid_grant("refresh_reused", "refresh token already used; its grant is revoked")
        user = self.users.get(token.grant.sub)
        if user is None or user.disabled:
            raise self._invalid_grant("user_disabled", "the user is disabled")
        refused = self.refusals.get(token.grant.sub)
        if refused is not None:
            raise self._invalid_grant(refused, f"refused as the mimicked provider would ({refused})")
        resource = params.get("resource")
        if self.settings.rotate_refresh_tokens:
            token.consumed = True
            return self._issue(
                token.grant, user, nonce=None, refresh_token=None, refreshed=True, resource=resource
            )
        return self._issue(
            token.grant, user, nonce=None, refresh_token=value, refreshed=True, resource=resource
        )

    def _new_refresh_token(self, value: str, grant: _Grant, now: float) -> None:
        token = _RefreshToken(grant=grant, expires_at=now + self.settings.refresh_token_ttl)
        self._refresh_tokens[value] = token
        limit = self.settings.mimic.refresh_tokens_per_user if self.settings.mimic is not None else None
        if limit is None:
            return
        # A rotation replaces the grant's token (it does not count twice); a new grant adds one.
        live = [t for t in self._live_refresh.get(grant.sub, []) if t.grant is not grant and not t.dropped]
        live.append(token)
        while len(live) > limit:
            logger.info("user %r has more than %d refresh tokens: the oldest stops working", grant.sub, limit)
            live.pop(0).dropped = True
        self._live_refresh[grant.sub] = live

    def _revoke(self, grant: _Grant, why: str) -> None:
        if grant.alive:
            logger.info("revoking a grant of user %r: %s", grant.sub, why)
        grant.alive = False
        self._grants = [g for g in self._grants if g.alive]

    def _issue(
        self,
        grant: _Grant,
        user: User,
        *,
        nonce: str | None,
        refresh_token: str | None,
        refreshed: bool = False,
        resource: str | None = None,
    ) -> dict[str, Any]:
        s = self.settings
        mimic = s.mimic
        now = s.clock()
        access_token = secrets.token_urlsafe(32)
        expires = mimic is None or mimic.expires
        self._access_tokens[access_token] = _AccessToken(
            grant=grant, expires_at=now + s.access_token_ttl if expires else math.inf, resource=resource
        )
        body: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer"}
        if expires:
            body["expires_in"] = _seconds(s.access_token_ttl)
        if mimic is not None and mimic.answered_scope is not None:
            body["scope"] = mimic.answered_scope
        elif grant.scope:
            body["scope"] = (mimic.scope_separator if mimic else " ").join(grant.scope.split())
        if s.issue_refresh_tokens and grant.offline:
            if refresh_token is None:
                refresh_token = secrets.token_urlsafe(32)
                self._new_refresh_token(refresh_token, grant, now)
                body["refresh_token"] = refresh_token
            elif mimic is None or mimic.echo_refresh_token:
                body["refresh_token"] = refresh_token
            idle = s.mimic.refresh_idle if s.mimic is not None else None
            if idle is not None:  # Keycloak: the SSO session's idle time, renewed by each use
                self._refresh_tokens[refresh_token].expires_at = now + idle
                body["refresh_expires_in"] = _seconds(idle)
            if mimic is not None and mimic.refresh_token_expires_in and "refresh_token" in body:
                left = self._refresh_tokens[refresh_token].expires_at - now
                body[mimic.refresh_token_expires_in] = _seconds(max(0.0, round(left)))
        scopes = set(grant.scope.split())
        id_tokens = mimic is None or mimic.id_tokens
        if id_tokens and "openid" in scopes and (s.conformance.refresh_id_token or not refreshed):
            claims: dict[str, Any] = {
                **(s.mimic.claims if s.mimic is not None else {}),
                "iss": s.issuer,
                "sub": user.sub,
                "aud": s.client_id,
                "iat": int(now),
                "exp": int(now + s.id_token_ttl),
                "auth_time": int(grant.auth_time),
                "at_hash": at_hash(access_token),
                "sid": grant.sid,
            }
            if grant.acr is not None:
                claims["acr"] = grant.acr
            if nonce is not None:
                claims["nonce"] = nonce
            claims.update(_scope_claims(user, scopes))
            if s.mimic is not None:
                claims["iss"] = s.mimic.token_issuer({**s.mimic.claims, **user.extra})
            body["id_token"] = self.signer.sign(claims, access_token, refreshed=refreshed)
            self._issued.append(body["id_token"])
        return body

    # userinfo, revocation, logout

    def userinfo(self, authorization: str | None, form: Mapping[str, str]) -> dict[str, Any]:
        mimic = self.settings.mimic
        if mimic is not None and mimic.user_api is not None:  # a user API (GitHub's /user)
            return mimic.user_api(_user_claims(self._bearer(authorization)[1]))  # type: ignore[no-any-return]
        if self.settings.conformance.userinfo_bearer == "body":
            value = form.get("access_token", "") if authorization is None else ""
            how = "as the form parameter access_token in a POST body (RFC 6750 section 2.2)"
        elif authorization is not None and authorization[:7].lower() == "bearer ":
            value = authorization[7:].strip()
            how = "as 'Authorization: Bearer <token>'"
        else:
            value, how = "", "as 'Authorization: Bearer <token>'"
        if not value:
            raise OAuthError(
                "invalid_request",
                f"no access token: send it {how}",
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        live = self._live_access(value)
        if live is None:
            raise OAuthError(
                "invalid_token",
                "the access token is unknown, expired or revoked",
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        token, user = live
        sub = self.settings.conformance.userinfo_sub or user.sub
        return {"sub": sub, **_scope_claims(user, set(token.grant.scope.split()))}

    def emails(self, authorization: str | None) -> Any:
        """A mimic's list of the user's addresses (GitHub's /user/emails), for a token granted one of its
        ``emails_scopes``."""
        mimic = self.settings.mimic
        assert mimic is not None
        assert mimic.emails is not None
        token, user = self._bearer(authorization)
        if mimic.emails_scopes and not set(token.grant.scope.split()) & set(mimic.emails_scopes):
            raise OAuthError("not_found", "Not Found", status=404, body={"message": "Not Found"})
        return mimic.emails(_user_claims(user))

    def _bearer(self, authorization: str | None) -> tuple[_AccessToken, User]:
        value = authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else ""
        live = self._live_access(value)
        if live is None:
            raise OAuthError(
                "invalid_token", "Bad credentials", status=401, body={"message": "Bad credentials"}
            )
        return live

    def _live_access(self, value: str) -> tuple[_AccessToken, User] | None:
        """The access token ``value`` and its user, if it is known, unexpired, unrevoked, of a live grant
        and of a user still enabled."""
        token = self._access_tokens.get(value)
        user = self.users.get(token.grant.sub) if token is not None else None
        if (
            token is None
            or user is None
            or token.revoked
            or not token.grant.alive
            or user.disabled
            or self.settings.clock() >= token.expires_at
        ):
            return None
        return token, user

    def revoke_github(self, body: Any, authorization: str | None) -> bool:
        """GitHub's "delete an app token": Basic client credentials, ``{"access_token": ...}``; whether a
        token of this client was revoked (GitHub answers 204, else 404)."""
        self.authenticate_client({}, authorization)
        value = body.get("access_token") if isinstance(body, dict) else None
        access = self._access_tokens.get(value) if isinstance(value, str) else None
        if access is None or access.revoked:
            return False
        access.revoked = True
        return True

    def revoke(self, params: Mapping[str, str], authorization: str | None) -> None:
        self.authenticate_client(params, authorization)
        value = params.get("token")
        if not value:
            raise OAuthError("invalid_request", "missing required parameter 'token'")
        refresh = self._refresh_tokens.get(value)
        if refresh is not None:
            self._revoke(refresh.grant, "its refresh token was revoked (RFC 7009)")
            return
        access = self._access_tokens.get(value)
        if access is not None:
            access.revoked = True

    def end_session(self, params: Mapping[str, str], repeated: set[str]) -> str | None:
        """Validate an RP-initiated logout: the URL to redirect to, or None to show 'Signed out'."""
        s = self.settings
        if repeated:
            raise PageError(
                "invalid_request", f"Parameters sent more than once: {', '.join(sorted(repeated))}."
            )
        client_id = params.get("client_id")
        if client_id is not None and client_id != s.client_id:
            raise PageError("invalid_client", f"Unknown client_id {client_id!r}.")
        hint = params.get("id_token_hint")
        if hint is not None:
            claims = self.signer.decode(hint)
            expected = s.issuer
            if claims is not None and s.mimic is not None:
                expected = s.mimic.token_issuer({**s.mimic.claims, **claims})
            if claims is None or claims.get("iss") != expected:
                raise PageError(
                    "invalid_request", "id_token_hint is not an ID token issued by this provider."
                )
            aud = claims.get("aud")
            if s.client_id != aud and not (isinstance(aud, list) and s.client_id in aud):
                raise PageError("invalid_request", "id_token_hint was issued to another client.")
        target = params.get("post_logout_redirect_uri")
        if target is None:
            return None
        if hint is None and client_id is None:
            raise PageError(
                "invalid_request",
                "post_logout_redirect_uri needs id_token_hint or client_id to identify the client.",
            )
        allowed = s.post_logout_redirect_uris
        if not (absolute_http_uri(target) if allowed is None else target in allowed):
            raise PageError("invalid_request", f"post_logout_redirect_uri {target!r} is not registered.")
        state = params.get("state")
        return _add_query(target, [("state", state)]) if state is not None else target


def _pkce_matches(verifier: str, challenge: str) -> bool:
    if not _PKCE_VALUE.fullmatch(verifier):
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return hmac.compare_digest(computed, challenge)
