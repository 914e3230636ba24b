"""The back-channel logout route (OpenID Connect Back-Channel Logout 1.0): the provider POSTs a signed
``logout_token`` naming a user (``sub``) and/or one of its sessions (``sid``); the guard ends the matching
sessions in the store, so every worker sees them gone at its next request.

``check_logout_token`` is the validation of section 2.6, one rule per line, without I/O; the route reads
the form, has the client verify the signature with the provider's keys, remembers each ``jti`` (a token is
never accepted twice), and answers 200 (``Cache-Control: no-store``) or 400 with a JSON ``invalid_request``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope

from . import _id_token
from ._ending import SessionEnder
from ._errors import IDTokenError, ProviderUnavailable, StoreUnavailable
from ._http import headers_map
from ._relogin import NO_STORE
from ._store import Store
from .providers._client import ProviderClient
from .providers._registry import Providers

__all__ = ["BackchannelLogout", "InvalidLogoutToken", "LogoutRequest", "check_logout_token"]

logger = logging.getLogger("asgi_oauth_guard")

EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TYPES = frozenset({"logout+jwt", "application/logout+jwt"})
# A logout token is sent at once: one issued longer ago than this is refused (a replay window bound), and
# its jti is remembered for this long past its iat or exp.
MAX_AGE = 300.0
LEEWAY = 60.0
MAX_BODY = 64 * 1024
MAX_CLAIM_LENGTH = 512
JTI_PREFIX = "bcl:"


class InvalidLogoutToken(ValueError):
    """A logout token that must be refused; the message says which rule it broke (never its content)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogoutRequest:
    """What a valid logout token asks: end the sessions of ``sid`` (and ``sub``), or of ``sub``."""

    sub: str | None
    sid: str | None
    jti: str
    remember_until: float  # keep the jti this long: the token is refused as too old after that


def check_logout_token(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    *,
    issuer: str,
    client_id: str,
    now: float,
    leeway: float = LEEWAY,
    max_age: float = MAX_AGE,
) -> LogoutRequest:
    """Back-Channel Logout 1.0 section 2.6, steps 3-7 (the signature is checked before)."""
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in LOGOUT_TYPES):
        raise InvalidLogoutToken("its typ is not logout+jwt")
    if claims.get("iss") != issuer:
        raise InvalidLogoutToken("its iss is not the provider's issuer")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if client_id not in audiences:
        raise InvalidLogoutToken("its aud does not contain this client")
    if len(audiences) > 1 and claims.get("azp", client_id) != client_id:
        raise InvalidLogoutToken("it has several audiences and its azp is not this client")
    iat = _number(claims.get("iat"))
    if iat is None or iat - leeway > now:
        raise InvalidLogoutToken("it has no iat, or one in the future")
    if iat + max_age + leeway < now:
        raise InvalidLogoutToken("it was issued too long ago")
    exp = _number(claims.get("exp"))
    if "exp" in claims and (exp is None or exp + leeway <= now):
        raise InvalidLogoutToken("it has expired")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(EVENT), dict):
        raise InvalidLogoutToken("its events claim has no back-channel logout event object")
    if "nonce" in claims:
        raise InvalidLogoutToken("it has a nonce (an ID token is not a logout token)")
    sub, sid = claims.get("sub"), claims.get("sid")
    for name, value in (("sub", sub), ("sid", sid)):
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= MAX_CLAIM_LENGTH):
            raise InvalidLogoutToken(f"its {name} is not a string")
    if sub is None and sid is None:
        raise InvalidLogoutToken("it names neither sub nor sid")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_CLAIM_LENGTH:
        raise InvalidLogoutToken("it has no jti")
    remember_until = max(iat + max_age, exp if exp is not None else 0) + leeway
    return LogoutRequest(sub=sub, sid=sid, jti=jti, remember_until=remember_until)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class BackchannelLogout:
    """The route: ``POST`` with a form ``logout_token=...``."""

    def __init__(self, *, providers: Providers, store: Store, ender: SessionEnder, clock: Any) -> None:
        self._providers = providers
        self._store = store
        self._ender = ender
        self._clock = clock

    async def serve(self, scope: Scope, receive: Receive) -> ASGIApp:
        if scope["method"] != "POST":
            return Response("Method not allowed.", status_code=405, headers={**NO_STORE, "Allow": "POST"})
        return await self._answer(scope, receive)

    async def _answer(self, scope: Scope, receive: Receive) -> Response:
        headers = headers_map(scope)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _invalid("the request must be a form (application/x-www-form-urlencoded)")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            return _invalid("the request body is too large")
        body = await _read_body(receive)
        if body is None:
            return _invalid("the request body is too large")
        try:
            pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            return _invalid("the request body is not a form")
        tokens = [value for name, value in pairs if name == "logout_token"]
        if len(tokens) != 1 or not tokens[0]:
            return _invalid("the form must carry exactly one logout_token")
        try:
            client = await self._addressee(tokens[0])
            provider = await client.endpoints()
            header, claims = await client.verify_signed_jwt(tokens[0])
            request = check_logout_token(
                header, claims, issuer=provider.issuer, client_id=client.client_id, now=self._clock()
            )
        except IDTokenError:
            logger.warning("back-channel logout refused: the logout token's signature does not verify")
            return _invalid("the logout token is not signed by the provider")
        except InvalidLogoutToken as exc:
            logger.warning("back-channel logout refused: the logout token %s", exc)
            return _invalid(f"the logout token is not valid: {exc}")
        except ProviderUnavailable as exc:
            logger.warning("back-channel logout: the provider's keys could not be read: %s", exc)
            return _unavailable()
        jti_key = JTI_PREFIX + hashlib.sha256(f"{provider.issuer}\x00{request.jti}".encode()).hexdigest()
        try:
            ttl = max(1.0, request.remember_until - self._clock())
            if not await self._store.add(jti_key, b"1", ttl=ttl):
                logger.warning("back-channel logout refused: a logout token replayed (its jti was seen)")
                return _invalid("the logout token was already used")
            try:
                if request.sid is not None:
                    ended = await self._ender.end_op_session(
                        request.sid, sub=request.sub, provider=client, cause="backchannel"
                    )
                else:
                    assert request.sub is not None
                    ended = await self._ender.end_user(request.sub, provider=client, cause="backchannel")
            except StoreUnavailable:
                # Let the provider's retry through: the sessions may not all have ended.
                await self._store.delete(jti_key)
                raise
        except StoreUnavailable as exc:
            logger.warning("back-channel logout: answering 503: %s", exc)
            return _unavailable()
        logger.info("back-channel logout: %d session(s) ended", ended)
        return Response(status_code=200, headers=NO_STORE)

    async def _addressee(self, token: str) -> ProviderClient:
        """The provider (and registration) the token names by its ``iss`` and ``aud``, read before the
        signature is checked only to pick whose keys check it; with one provider, that one."""
        if len(self._providers) == 1:
            return self._providers.default
        claims = _id_token.unverified_claims(token)
        iss, aud = claims.get("iss"), claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        for client in self._providers:
            if client.client_id in audiences and (await client.endpoints()).issuer == iss:
                return client
        raise InvalidLogoutToken("its iss and aud name none of this app's providers")


def _invalid(description: str) -> Response:
    return JSONResponse(
        {"error": "invalid_request", "error_description": description}, status_code=400, headers=NO_STORE
    )


def _unavailable() -> Response:
    return JSONResponse(
        {"error": "temporarily_unavailable"}, status_code=503, headers={**NO_STORE, "Retry-After": "5"}
    )


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or ``None`` past ``MAX_BODY`` (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
