from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import anyio
import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ._conformance import CASES, Conformance
from ._faults import Faults, Hold, check_endpoint
from ._mimic import CAUSES, Mimic
from ._pages import message_page, sign_in_page
from ._records import Endpoint, RecordedCall
from ._server import (
    AuthorizationServer,
    AuthRequest,
    OAuthError,
    PageError,
    RedirectError,
    Settings,
    User,
    absolute_http_uri,
)

__all__ = ["OAuthTestProvider"]

logger = logging.getLogger("asgi_oauth_guard.testing")

_PATHS: dict[str, Endpoint] = {
    "/.well-known/openid-configuration": "discovery",
    "/jwks": "jwks",
    "/authorize": "authorize",
    "/token": "token",
    "/userinfo": "userinfo",
    "/revoke": "revoke",
    "/end_session": "end_session",
    "/par": "par",
}
_METHODS: dict[Endpoint, tuple[str, ...]] = {
    "discovery": ("GET",),
    "jwks": ("GET",),
    "authorize": ("GET", "POST"),
    "token": ("POST",),
    "userinfo": ("GET", "POST"),
    "revoke": ("POST",),
    "end_session": ("GET", "POST"),
    "par": ("POST",),
    "emails": ("GET",),
}
_RESERVED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "auth_time", "azp", "at_hash", "c_hash", "sid", "jti"}
)
_PAGE_ENDPOINTS = frozenset({"authorize", "end_session"})
_MAX_BODY = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM = "application/x-www-form-urlencoded"


class _BadInput(Exception):
    pass


class _BodyTooLarge(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class _Answer:
    response: Response
    error: str | None = None
    fault: str | None = None


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers={**_NO_STORE, **(headers or {})})


def _oauth_error(exc: OAuthError) -> _Answer:
    return _Answer(_json(exc.status, exc.body, exc.headers), exc.error)


def _page(status: int, html: str) -> Response:
    return HTMLResponse(html, status_code=status, headers=_NO_STORE)


def _redirect(url: str, error: str | None = None) -> _Answer:
    return _Answer(Response(status_code=302, headers={"Location": url, **_NO_STORE}), error)


def _bad_request(endpoint: str, message: str, status: int = 400) -> _Answer:
    if endpoint in _PAGE_ENDPOINTS:
        return _Answer(_page(status, message_page("Bad request", message)), "invalid_request")
    body = {"error": "invalid_request", "error_description": message}
    return _Answer(_json(status, body), "invalid_request")


def _pairs(raw: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except ValueError:
        raise _BadInput("parameters are not valid UTF-8 application/x-www-form-urlencoded text") from None


def _json_pairs(raw: bytes) -> list[tuple[str, str]]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise _BadInput("the body is not JSON") from None
    if not isinstance(body, dict):
        raise _BadInput("the body is not a JSON object")
    return [(str(k), v) for k, v in body.items() if isinstance(v, str)]


def _first_values(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for key, value in pairs:
        if key in params:
            repeated.add(key)
        else:
            params[key] = value
    return params, repeated


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None if the client left. Too large a body is drained (so the sender finishes)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size <= _MAX_BODY:
            chunks.append(chunk)
        if not message.get("more_body", False):
            if size > _MAX_BODY:
                raise _BodyTooLarge
            return b"".join(chunks)


class OAuthTestProvider:
    """An in-process OAuth 2.0 / OpenID Connect provider that behaves like a real one, and breaks on demand.

    It is an ASGI app: serve it with uvicorn, mount it in Starlette, or call it in-process through
    `transport()` with `httpx.AsyncClient`. It answers client mistakes the way real servers do (observed on
    panva's oidc-provider): a reused code or rotated refresh token revokes the whole grant, every
    `invalid_grant` says only "grant request is invalid". Fault controls (`fail_next`, `timeout_next`,
    `hold`, ...) and records (`calls`, `count`) let tests drive and check a client's behaviour.

    ``mimic=`` plays a real provider's documented shape instead (`Mimic`; ready ones in
    `asgi_oauth_guard.testing.mimics`): its endpoint URLs and issuer, when it issues refresh tokens,
    and its own error bodies. ``issuer`` then defaults to the mimic's.

    Pushed Authorization Requests (RFC 9126) are served at ``/par`` (with the client's authentication;
    each ``request_uri`` works once, for ``request_uri_ttl`` seconds); with
    ``require_pushed_authorization_requests=True`` the metadata says so and ``/authorize`` refuses any
    request that was not pushed. ``public_client=True`` registers the client as a public one
    (``token_endpoint_auth_method: none``): it names itself with ``client_id`` alone, and a secret, Basic
    credentials or an assertion are refused.
    """

    def __init__(
        self,
        *,
        issuer: str | None = None,
        client_id: str = "guard-client",
        client_secret: str = "guard-secret",  # noqa: S107 - a test double's well-known default
        redirect_uris: Iterable[str] | None = None,
        post_logout_redirect_uris: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
        code_ttl: float = 600.0,
        access_token_ttl: float = 3600.0,
        refresh_token_ttl: float = 30 * 24 * 3600.0,
        id_token_ttl: float = 3600.0,
        rotate_refresh_tokens: bool | None = None,
        issue_refresh_tokens: bool = True,
        auto_approve: bool = True,
        timeout_delay: float = 30.0,
        conformance: str | Conformance | None = None,
        client_jwks: Mapping[str, Any] | None = None,
        mimic: Mimic | None = None,
        require_pushed_authorization_requests: bool = False,
        request_uri_ttl: float = 60.0,
        public_client: bool = False,
    ) -> None:
        if issuer is None:
            issuer = mimic.issuer if mimic is not None else "https://idp.example.test"
        if rotate_refresh_tokens is None:
            rotate_refresh_tokens = mimic.rotate_refresh_tokens if mimic is not None else True
        parts = urlsplit(issuer)
        if not absolute_http_uri(issuer) or parts.query:
            raise ValueError(f"issuer must be an http(s) URL without query or fragment, got {issuer!r}")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret must not be empty")
        for name, ttl in (
            ("code_ttl", code_ttl),
            ("access_token_ttl", access_token_ttl),
            ("refresh_token_ttl", refresh_token_ttl),
            ("id_token_ttl", id_token_ttl),
            ("request_uri_ttl", request_uri_ttl),
        ):
            if not ttl > 0:
                raise ValueError(f"{name} must be positive, got {ttl!r}")
        if timeout_delay < 0:
            raise ValueError(f"timeout_delay must not be negative, got {timeout_delay!r}")
        if isinstance(conformance, str):
            if conformance not in CASES:
                raise ValueError(f"unknown conformance case {conformance!r}; known: {', '.join(CASES)}")
            conformance = CASES[conformance]
        self.conformance = conformance or Conformance()
        """The `Conformance` faults this provider plays (a correct provider without them)."""
        keys: KeySet | None = None
        if client_jwks is not None:
            try:
                keys = KeySet.import_key_set(dict(client_jwks))  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError):
                raise ValueError("client_jwks must be a JWK set {'keys': [...]} of public keys") from None
        if self.conformance.token_auth == "private_key_jwt" and keys is None:
            raise ValueError("a private_key_jwt case needs client_jwks= (the client's public key set)")
        self.issuer = issuer
        self.client_id = client_id
        self.auto_approve = auto_approve
        self.timeout_delay = timeout_delay
        self.down = False
        """While True, `transport()` raises httpx.ConnectError for every call (served for real: 503)."""
        self._clock = clock
        self._prefix = parts.path.rstrip("/")  # an issuer may end with a slash, as Auth0's does
        self.mimic = mimic
        """The `Mimic` this provider plays, if any."""
        self._routes = {urlsplit(url).path: name for url, name in (mimic.routes() if mimic else {}).items()}
        self._server = AuthorizationServer(
            Settings(
                issuer=issuer,
                client_id=client_id,
                client_secret=client_secret,
                redirect_uris=_uri_list("redirect_uris", redirect_uris),
                post_logout_redirect_uris=_uri_list("post_logout_redirect_uris", post_logout_redirect_uris),
                clock=clock,
                code_ttl=code_ttl,
                access_token_ttl=access_token_ttl,
                refresh_token_ttl=refresh_token_ttl,
                id_token_ttl=id_token_ttl,
                rotate_refresh_tokens=rotate_refresh_tokens,
                issue_refresh_tokens=issue_refresh_tokens,
                conformance=self.conformance,
                client_jwks=keys,
                mimic=mimic,
                token_endpoint=mimic.endpoints["token"] if mimic is not None else "",
                iss_parameter=mimic is None
                or mimic.metadata.get("authorization_response_iss_parameter_supported") is True,
                require_pushed_authorization_requests=require_pushed_authorization_requests,
                request_uri_ttl=request_uri_ttl,
                public_client=public_client,
            )
        )
        self._faults = Faults()
        self._calls: list[RecordedCall] = []
        self._metadata = self._build_metadata()
        self.add_user("alice", email="alice@example.test", name="Alice")

    @classmethod
    def conformance_case(
        cls, case: str, *, base: str = "https://idp.example.test", **settings: Any
    ) -> OAuthTestProvider:
        """A provider playing one relying-party test case (`CONFORMANCE_CASES`), whose issuer names the
        case in its path, as the OpenID Foundation's RP test tool does: ``{base}/{case}``."""
        return cls(issuer=f"{base.rstrip('/')}/{case}", conformance=case, **settings)

    def _build_metadata(self) -> dict[str, Any]:
        base = self.issuer.rstrip("/")
        metadata = {
            "issuer": self.issuer,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/token",
            "userinfo_endpoint": base + "/userinfo",
            "jwks_uri": base + "/jwks",
            "revocation_endpoint": base + "/revoke",
            "end_session_endpoint": base + "/end_session",
            "pushed_authorization_request_endpoint": base + "/par",
            "require_pushed_authorization_requests": (
                self._server.settings.require_pushed_authorization_requests
            ),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "subject_types_supported": ["public"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [
                *("client_secret_basic", "client_secret_post"),
                *(("private_key_jwt",) if self._server.settings.client_jwks is not None else ()),
                *(("none",) if self._server.settings.public_client else ()),
            ],
            "revocation_endpoint_auth_methods_supported": [
                *("client_secret_basic", "client_secret_post"),
                *(("none",) if self._server.settings.public_client else ()),
            ],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": [
                *("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash"),
                *("email", "email_verified", "name", "preferred_username"),
            ],
            "id_token_signing_alg_values_supported": self._server.signer.algorithms,
            "authorization_response_iss_parameter_supported": True,
        }
        return self.mimic.document(metadata) if self.mimic is not None else metadata

    # users

    def add_user(
        self,
        sub: str,
        *,
        email: str | None = None,
        name: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a user who can sign in, or replace its claims. A user "alice" exists from the start.

        ``claims`` go into the ID token and ``/userinfo`` as they are (``{"groups": ["admin"]}``); the
        registered ones the provider sets itself (``iss``, ``sub``, ``aud``, ``exp``, ...) cannot be given.
        """
        if not sub:
            raise ValueError("sub must not be empty")
        extra = dict(claims or {})
        reserved = sorted(extra.keys() & _RESERVED_CLAIMS)
        if reserved:
            raise ValueError(f"claims= cannot set {reserved}: the provider sets them itself")
        self._server.users[sub] = User(
            sub=sub, email=email or f"{sub}@example.test", name=name or sub.title(), extra=extra
        )

    def has_user(self, sub: str) -> bool:
        """Whether a user ``sub`` exists."""
        return sub in self._server.users

    def login_as(self, sub: str) -> None:
        """Choose whom auto-approve (and `complete_authorization` without `user=`) signs in."""
        self._server.user(sub)
        self._server.current_user = sub

    def signed_in_at(self, sub: str, when: float) -> None:
        """User ``sub``'s session at the provider began at ``when``: sign-ins reuse it (their ID token's
        ``auth_time`` is ``when``) until one asks for a fresh authentication (``prompt=login``, or a
        ``max_age`` shorter than the session's age), as a real provider's single sign-on does. An
        ``acr_values`` request is met with its first value. Without this call every sign-in
        authenticates anew."""
        self._server.user(sub)
        self._server.authenticated_at[sub] = when

    @property
    def ignores_step_up(self) -> bool:
        """Whether the provider ignores ``prompt=login``, ``max_age`` and ``acr_values``, as some do: a
        user with a session (:meth:`signed_in_at`) keeps its old ``auth_time``, and no ``acr`` is given."""
        return self._server.ignores_step_up

    @ignores_step_up.setter
    def ignores_step_up(self, value: bool) -> None:
        self._server.ignores_step_up = value

    def disable_user(self, sub: str) -> None:
        """Refresh and code exchange: invalid_grant; userinfo: 401; authorize: access_denied redirect."""
        self._server.user(sub).disabled = True

    def enable_user(self, sub: str) -> None:
        """Undo `disable_user` (grants that were not revoked work again)."""
        self._server.user(sub).disabled = False

    def session_ids(self, sub: str) -> list[str]:
        """The provider's session ids (the ID tokens' ``sid``) of `sub`'s live sign-ins, oldest first."""
        return [g.sid for g in self._server._grants if g.sub == sub and g.alive]

    def logout_token(self, *, sub: str | None = None, sid: str | None = None, **overrides: Any) -> str:
        """A signed back-channel logout token (OIDC Back-Channel Logout 1.0) for `sub` and/or `sid`.

        ``overrides`` replace or add claims (``iat=...``, ``aud="other"``); a value of ``None`` removes one.
        """
        s = self._server.settings
        now = int(s.clock())
        claims: dict[str, Any] = {
            "iss": s.issuer,
            "aud": s.client_id,
            "iat": now,
            "exp": now + 120,
            "jti": secrets.token_urlsafe(16),
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }
        if sub is not None:
            claims["sub"] = sub
        if sid is not None:
            claims["sid"] = sid
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        token = self._server.signer.sign_logout(claims)
        self._server._issued.append(token)
        return token

    # faults

    def set_client_secret(self, secret: str) -> None:
        """Accept only `secret` from now on, as a provider whose client secret was rotated (or an app
        deployed with the wrong one): every token and revocation call with another answers invalid_client."""
        if not secret:
            raise ValueError("secret must not be empty")
        self._server.settings = dataclasses.replace(self._server.settings, client_secret=secret)

    def refuse_refreshes(self, sub: str, cause: str) -> None:
        """Refuse every refresh of `sub`'s tokens with the mimicked provider's answer for `cause` (one of
        its `Mimic.errors`, such as Google's ``"reauthentication_required"``) until `sub` signs in again,
        as a provider policy that wants the user back (re-authentication, a second factor) does."""
        self._server.user(sub)
        known = set(self.mimic.errors) if self.mimic is not None else set()
        if cause not in known | set(CAUSES):
            raise ValueError(f"unknown cause {cause!r}; this provider knows {sorted(known | set(CAUSES))}")
        self._server.refusals[sub] = cause

    def revoke_grants(self, sub: str) -> None:
        """Kill every grant of `sub`, with its unused codes and its tokens, as a password change would."""
        count = self._server.revoke_grants(sub)
        logger.info("revoked %d grant(s) of user %r", count, sub)

    def expire_codes(self) -> None:
        """Make every authorization code issued so far expired (later ones are unaffected)."""
        self._server.expire_codes()

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired (later ones are unaffected)."""
        self._server.expire_access_tokens()

    def expire_refresh_tokens(self) -> None:
        """Make every refresh token issued so far expired (later ones are unaffected)."""
        self._server.expire_refresh_tokens()

    def fail_next(self, n: int, status: int = 503, endpoint: Endpoint = "token") -> None:
        """Answer the next `n` calls to `endpoint` with `status`.

        503 and 429 answer `{"error": "temporarily_unavailable"}`, other 5xx `{"error": "server_error"}`,
        other 4xx `{"error": "invalid_request"}`. Queued after any failures already queued.
        """
        _check_count(n)
        if not 400 <= status <= 599:
            raise ValueError(f"status must be a 4xx or 5xx code, got {status!r}")
        self._faults.fail[check_endpoint(endpoint)].extend([status] * n)

    def timeout_next(self, n: int, endpoint: Endpoint = "token") -> None:
        """Time out the next `n` calls to `endpoint`.

        Through `transport()`: raise httpx.ReadTimeout without calling the app. Served for real: stall
        `timeout_delay` seconds, then answer 503.
        """
        _check_count(n)
        self._faults.timeout[check_endpoint(endpoint)] += n

    def connect_error_next(self, n: int) -> None:
        """Through `transport()`: raise httpx.ConnectError for the next `n` calls, to any endpoint."""
        _check_count(n)
        self._faults.connect_error += n

    def slow_next(self, n: int, seconds: float, endpoint: Endpoint = "token") -> None:
        """Wait `seconds` (real time) before answering each of the next `n` calls to `endpoint`."""
        _check_count(n)
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds!r}")
        self._faults.slow[check_endpoint(endpoint)].extend([seconds] * n)

    def hold(self, endpoint: Endpoint = "token") -> Hold:
        """Block calls to `endpoint` inside the provider until the returned Hold is released."""
        hold = Hold(check_endpoint(endpoint))
        self._faults.holds.append(hold)
        return hold

    # records

    @property
    def calls(self) -> list[RecordedCall]:
        """Every call so far, in the order the provider answered them."""
        return list(self._calls)

    def count(
        self, endpoint: str | None = "token", grant_type: str | None = None, error: str | None = None
    ) -> int:
        """How many recorded calls match; `None` matches anything."""
        return sum(
            1
            for call in self._calls
            if (endpoint is None or call.endpoint == endpoint)
            and (grant_type is None or call.grant_type == grant_type)
            and (error is None or call.error == error)
        )

    def reset_calls(self) -> None:
        self._calls.clear()

    def issued_secrets(self) -> list[str]:
        """Every authorization code, access, refresh and ID token this provider issued: for tests that
        check none of them reached a log, a page or a header that should not carry it."""
        return self._server.issued_secrets()

    def token_info(self, token: str) -> dict[str, Any]:
        """What an API learns by introspecting an access token (RFC 7662): ``active``, and its ``sub``,
        ``scope`` and ``aud`` (the RFC 8707 resource it was issued for; the client id by default)."""
        return self._server.token_info(token)

    def grant_alive(self, token: str) -> bool:
        """Whether the grant that issued this access or refresh token is still alive (not revoked).

        Raises KeyError for a token this provider never issued, so a typo can't pass as "revoked".
        """
        return self._server.grant_alive(token)

    @property
    def metadata(self) -> dict[str, Any]:
        """The discovery document (a fresh copy)."""
        metadata = {k: list(v) if isinstance(v, list) else v for k, v in self._metadata.items()}
        if self.conformance.discovery_issuer is not None:
            metadata["issuer"] = self.conformance.discovery_issuer
        return metadata

    # driving it

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport that calls this provider in-process, with the connection-level faults."""
        return _FaultTransport(self)

    async def complete_authorization(self, authorize_url: str, user: str | None = None) -> str:
        """Act as the browser and the user at /authorize: the URL the provider redirects back to.

        That is the redirect_uri with `code`, `state` and `iss`, or with `error` (for example access_denied
        for a disabled user). Signs in `user`, else the `login_as` user, whether or not `auto_approve` is on.
        Raises ValueError when the provider would show an error page (unknown client_id, bad redirect_uri).
        """
        at = self._clock()
        sub = self._server.user(user if user is not None else self._server.current_user).sub
        try:
            pairs = parse_qsl(urlsplit(authorize_url).query, keep_blank_values=True, errors="strict")
        except ValueError:
            raise ValueError("authorize_url has a query that is not valid UTF-8 form encoding") from None
        params, repeated = _first_values(pairs)

        def record(status: int, error: str | None) -> None:
            self._record(
                RecordedCall(
                    endpoint="authorize", method="GET", params=params, status=status, error=error, at=at
                )
            )

        try:
            request = self._server.authorize_request(params, repeated)
        except PageError as exc:
            record(400, exc.error)
            raise ValueError(f"the provider refuses this authorization request: {exc.description}") from None
        except RedirectError as exc:
            record(302, exc.error)
            return self._server.error_redirect(exc.redirect_uri, exc.state, exc.error, exc.description)
        url, error = self._server.approve(request, sub)
        record(302, error)
        return url

    # ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1003})
            return
        if scope["type"] != "http":
            return
        at = self._clock()
        endpoint = self._endpoint(_route_path(scope))
        method: str = scope["method"]
        query: list[tuple[str, str]] = []
        form: list[tuple[str, str]] = []
        bad_input: tuple[int, str] | None = None
        try:
            body = await _read_body(receive)
            if body is None:
                return
            query = _pairs(scope.get("query_string", b""))
            if body:
                content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
                if endpoint == "revoke" and self._github_revocation:
                    form = _json_pairs(body)  # GitHub's API takes JSON
                elif content_type != _FORM:
                    raise _BadInput(
                        f"send the parameters as {_FORM}, not {content_type or 'an untyped body'}"
                    )
                else:
                    form = _pairs(body)
        except _BodyTooLarge:
            bad_input = 413, f"the request body is larger than {_MAX_BODY} bytes"
        except _BadInput as exc:
            bad_input = 400, str(exc)

        if endpoint is None:
            answer = _Answer(_json(404, {"error": "not_found", "error_description": "no such endpoint"}))
        else:
            answer = await self._answer(endpoint, method, scope, query, form, bad_input)
        params, _ = _first_values([*query, *form])
        self._record(
            RecordedCall(
                endpoint=endpoint or "unknown",
                method=method,
                params=params,
                status=answer.response.status_code,
                error=answer.error,
                grant_type=params.get("grant_type") if endpoint == "token" else None,
                at=at,
                fault=answer.fault,
            )
        )
        await answer.response(scope, receive, send)

    def _endpoint(self, path: str) -> Endpoint | None:
        if self._routes:
            return self._routes.get(path)
        prefix = self._prefix
        if prefix and path.startswith(prefix + "/") and path[len(prefix) :] in _PATHS:
            return _PATHS[path[len(prefix) :]]
        return _PATHS.get(path)

    async def _answer(
        self,
        endpoint: Endpoint,
        method: str,
        scope: Scope,
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
        bad_input: tuple[int, str] | None,
    ) -> _Answer:
        faults = self._faults
        fault: str | None = None
        fail_status: int | None = None
        delay = 0.0
        if self.down:
            fault, fail_status = "down", 503
        elif faults.take_timeout(endpoint):
            fault, fail_status, delay = "timeout", 503, self.timeout_delay
        elif (fail_status := faults.take_fail(endpoint)) is not None:
            fault = "fail"
        elif (slow := faults.take_slow(endpoint)) is not None:
            fault, delay = "slow", slow
        for hold in faults.holds_for(endpoint):
            await hold._block()
        if delay:
            await anyio.sleep(delay)
        if fail_status is not None:
            return dataclasses.replace(_fault_answer(fail_status, fault or "fail"), fault=fault)
        methods = ("DELETE",) if endpoint == "revoke" and self._github_revocation else _METHODS[endpoint]
        if method not in methods:
            allowed = ", ".join(methods)
            message = f"the {endpoint} endpoint accepts {allowed}, not {method}"
            response = _json(
                405, {"error": "invalid_request", "error_description": message}, {"Allow": allowed}
            )
            return _Answer(response, "invalid_request", fault)
        if bad_input is not None:
            answer = _bad_request(endpoint, bad_input[1], bad_input[0])
        else:
            answer = self._dispatch(endpoint, method, scope, query, form)
        return dataclasses.replace(answer, fault=fault)

    def _dispatch(
        self,
        endpoint: Endpoint,
        method: str,
        scope: Scope,
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
    ) -> _Answer:
        server = self._server
        authorization = _header(scope, b"authorization")
        params, repeated = _first_values(query if method == "GET" else form)
        try:
            if endpoint == "discovery":
                return _Answer(_json(200, self.metadata, {"Access-Control-Allow-Origin": "*"}))
            if endpoint == "jwks":
                return _Answer(_json(200, server.signer.jwks(), {"Access-Control-Allow-Origin": "*"}))
            if endpoint == "authorize":
                if method == "POST" and "interaction" in params:
                    return self._sign_in(params)
                return self._authorize(params, repeated)
            if endpoint == "end_session":
                target = server.end_session(params, repeated)
                if target is not None:
                    return _redirect(target)
                return _Answer(
                    _page(200, message_page("Signed out", "You are signed out of the test provider."))
                )
            if endpoint == "par":
                return _Answer(_json(201, server.push(params, repeated, authorization)))
            if repeated:
                names = ", ".join(sorted(repeated))
                raise OAuthError("invalid_request", f"parameters sent more than once: {names}")
            if endpoint == "token":
                return self._token_answer(scope, lambda: server.token(params, authorization))
            if endpoint == "userinfo":
                return _Answer(_json(200, server.userinfo(authorization, params if method == "POST" else {})))
            if endpoint == "emails":
                return _Answer(_json(200, server.emails(authorization)))
            if self._github_revocation:
                revoked = server.revoke_github(params, authorization)
                if not revoked:
                    return _Answer(_json(404, {"message": "Not Found"}), "not_found")
                return _Answer(Response(status_code=204, headers=_NO_STORE))
            server.revoke(params, authorization)
            return _Answer(Response(status_code=200, headers=_NO_STORE))
        except OAuthError as exc:
            return _oauth_error(exc)
        except PageError as exc:
            return _Answer(_page(400, message_page("Request refused", exc.description)), exc.error)

    @property
    def _github_revocation(self) -> bool:
        return self.mimic is not None and self.mimic.revocation == "github"

    def _token_answer(self, scope: Scope, answer: Callable[[], Mapping[str, Any]]) -> _Answer:
        """The token endpoint's answer: JSON, or (a mimic with ``token_format="form_unless_json"``, as
        GitHub) form-encoded unless the request accepts ``application/json``, errors included."""
        try:
            status, body, error = 200, dict(answer()), None
        except OAuthError as exc:
            status, body, error = exc.status, exc.body, exc.error
            headers = exc.headers
        else:
            headers = {}
        accept = (_header(scope, b"accept") or "").lower()
        if self.mimic is None or self.mimic.token_format == "json" or "application/json" in accept:
            return _Answer(_json(status, body, headers), error)
        encoded = urlencode({k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()})
        headers = {**_NO_STORE, **headers, "Content-Type": f"{_FORM}; charset=utf-8"}
        return _Answer(Response(encoded, status_code=status, headers=headers), error)

    def _authorize(self, params: Mapping[str, str], repeated: set[str]) -> _Answer:
        server = self._server
        try:
            request = server.authorize_request(params, repeated)
        except RedirectError as exc:
            return _redirect(
                server.error_redirect(exc.redirect_uri, exc.state, exc.error, exc.description), exc.error
            )
        if self.auto_approve:
            return _redirect(*server.approve(request, server.current_user))
        if request.prompt == "none":
            url = server.error_redirect(
                request.redirect_uri, request.state, "login_required", "the user must sign in"
            )
            return _redirect(url, "login_required")
        return self._sign_in_page(request)

    def _sign_in_page(self, request: AuthRequest) -> _Answer:
        html = sign_in_page(
            issuer=self.issuer,
            client_id=request.client_id,
            scope=request.scope,
            interaction=self._server.new_interaction(request),
            users=[u.sub for u in self._server.users.values() if not u.disabled],
        )
        return _Answer(_page(200, html))

    def _sign_in(self, params: Mapping[str, str]) -> _Answer:
        server = self._server
        request = server.interaction(params["interaction"])
        if request is None:
            message = (
                "This sign-in page has expired or is unknown; start signing in again from the application."
            )
            return _Answer(_page(400, message_page("Sign-in expired", message)), "invalid_request")
        if "deny" in params:
            return _redirect(server.deny(request), "access_denied")
        sub = params.get("sub", "")
        if sub not in server.users:
            return _Answer(
                _page(400, message_page("Unknown user", "Choose one of the listed users.")), "invalid_request"
            )
        return _redirect(*server.approve(request, sub))

    def _record(self, call: RecordedCall) -> None:
        self._calls.append(call)
        logger.info(
            "%s %s -> %s%s%s",
            call.method,
            call.endpoint,
            call.status or "no answer",
            f" {call.error}" if call.error else "",
            f" (fault: {call.fault})" if call.fault else "",
        )

    async def _connection_fault(self, request: httpx.Request) -> None:
        """Raise the connection-level fault due for this request, if any (only through `transport()`)."""
        endpoint = self._endpoint(request.url.path)
        exc: httpx.TransportError
        if self.down:
            fault, exc = (
                "down",
                httpx.ConnectError("the test provider is down (provider.down)", request=request),
            )
        elif self._faults.take_connect_error():
            fault, exc = "connect_error", httpx.ConnectError("injected connect error", request=request)
        elif endpoint is not None and self._faults.take_timeout(endpoint):
            fault, exc = "timeout", httpx.ReadTimeout("injected read timeout", request=request)
        else:
            return
        pairs = list(request.url.params.multi_items())
        body = await request.aread()
        if body and _FORM in request.headers.get("content-type", ""):
            with contextlib.suppress(_BadInput):
                pairs += _pairs(body)
        params, _ = _first_values(pairs)
        self._record(
            RecordedCall(
                endpoint=endpoint or "unknown",
                method=request.method,
                params=params,
                status=0,
                grant_type=params.get("grant_type") if endpoint == "token" else None,
                at=self._clock(),
                fault=fault,
            )
        )
        raise exc

    def __repr__(self) -> str:
        return f"<OAuthTestProvider issuer={self.issuer!r} client_id={self.client_id!r}>"


class _FaultTransport(httpx.AsyncBaseTransport):
    def __init__(self, provider: OAuthTestProvider) -> None:
        self._provider = provider
        self._inner = httpx.ASGITransport(app=provider)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._provider._connection_fault(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _fault_answer(status: int, fault: str) -> _Answer:
    if status in (429, 503):
        error = "temporarily_unavailable"
    elif status >= 500:
        error = "server_error"
    else:
        error = "invalid_request"
    body = {"error": error, "error_description": f"injected by the test provider ({fault})"}
    return _Answer(_json(status, body), error)


def _check_count(n: int) -> None:
    if n < 0:
        raise ValueError(f"n must not be negative, got {n!r}")


def _uri_list(name: str, uris: Iterable[str] | None) -> tuple[str, ...] | None:
    if uris is None:
        return None
    if isinstance(uris, str):
        raise TypeError(f"{name} must be a list of URIs, not one string")
    result = tuple(uris)
    for uri in result:
        if not absolute_http_uri(uri):
            raise ValueError(f"{name}: {uri!r} is not an absolute http(s) URI without a fragment")
    return result


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
