"""How a real provider shapes its answers, written down as data that the embedded provider plays.

One declarative value per provider instead of one fake per provider: where its endpoints live, what its
discovery document names as issuer and what its ID tokens carry, when it issues a refresh token, and the
exact error bodies it answers for each way a code or a refresh token is refused.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from ._records import ENDPOINTS, Endpoint

__all__ = ["CAUSES", "Mimic"]

# Why the embedded provider refuses a code or a refresh token: the keys of `Mimic.errors`. A mimic may
# add its own (Google's "reauthentication_required"), played by `OAuthTestProvider.refuse_refreshes`.
CAUSES = (
    "code_unknown",
    "code_expired",
    "code_revoked",
    "code_pkce",
    "code_redirect_uri",
    "code_reused",
    "user_disabled",
    "refresh_unknown",
    "refresh_expired",
    "refresh_revoked",
    "refresh_reused",
)
_METADATA_NAMES: Mapping[Endpoint, str] = {
    "jwks": "jwks_uri",
    "authorize": "authorization_endpoint",
    "token": "token_endpoint",
    "userinfo": "userinfo_endpoint",
    "revoke": "revocation_endpoint",
    "end_session": "end_session_endpoint",
    "par": "pushed_authorization_request_endpoint",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Mimic:
    """A provider's documented answers, for `OAuthTestProvider(mimic=...)`.

    - ``issuer``: the issuer its tokens name (for a multi-tenant one, see ``id_token_issuer``).
    - ``endpoints``: each endpoint's absolute URL, as its discovery document lists them; an endpoint left
      out does not exist (Entra has no revocation endpoint, Google no end-session endpoint). The host is
      ignored when called through ``transport()``; the path routes. ``discovery`` defaults to
      ``{issuer}/.well-known/openid-configuration``.
    - ``discovery_issuer``: the ``issuer`` its discovery document names, when that is not ``issuer``
      (Entra's multi-tenant ``https://login.microsoftonline.com/{tenantid}/v2.0``).
    - ``id_token_issuer``: the ``iss`` of its ID tokens as a ``str.format`` template over their claims
      (``"https://login.microsoftonline.com/{tid}/v2.0"``); ``claims``: claims every ID token carries
      unless the user's own (``add_user(claims=...)``) say otherwise (Entra's ``tid``).
    - When a refresh token comes: only with the scope ``refresh_token_scope`` (``offline_access``), only
      with the authorize parameter ``refresh_token_param`` (Google's ``access_type=offline``), and with
      ``refresh_token_at_consent`` only at a consent: the user's first authorization of the client, or
      one with ``prompt=consent``. ``refresh_tokens_per_user``: live refresh tokens per user; a new one
      past it silently kills the oldest (Google: 100).
    - ``rotate_refresh_tokens``: each refresh answers a new refresh token and spends the old one (reuse
      revokes the grant); ``echo_refresh_token``: a refresh answer of a non-rotating provider repeats the
      refresh token (Keycloak) or leaves it out (Google). ``refresh_idle``: a refresh token dies after
      this many seconds unused, each use renews it, and every answer says so as ``refresh_expires_in``
      (Keycloak's "SSO Session Idle").
    - ``errors``: for each cause (`CAUSES`, or one of the mimic's own), the status and JSON body it
      answers. A cause not listed answers oidc-provider's generic ``invalid_grant``.
    - ``metadata``: more fields of its discovery document (or ``None`` to leave one out).

    A provider without OpenID Connect (GitHub): ``id_tokens=False`` (never an ID token);
    ``refresh_tokens=False`` (never a refresh token); ``expires=False`` (access tokens never expire and
    answers carry no ``expires_in``); ``refresh_token_expires_in``: the answer field that says how long
    the refresh token lives (GitHub's own name for it); ``scope_separator`` in token answers;
    ``token_format="form_unless_json"``: token answers (errors too) are form-encoded unless the request
    accepts ``application/json``. ``user_api``: the userinfo endpoint's answer, from the user's claims
    (``sub``, ``email``, ``name`` and ``add_user(claims=...)``); ``emails``: the ``emails`` endpoint's
    answer from the same, served only to tokens granted one of ``emails_scopes`` (404 otherwise; any
    token when empty). ``answered_scope``: the ``scope`` every token answer names whatever was asked (a
    GitHub App's ``""``: its permissions are its app settings, not scopes).
    ``revocation="github"``: the revoke endpoint is GitHub's ``DELETE`` with Basic client credentials
    and ``{"access_token": ...}`` as JSON, answering 204. The ``errors`` cause ``"client_invalid"``:
    the answer to a failed client authentication at the token endpoint.
    """

    name: str
    issuer: str
    endpoints: Mapping[Endpoint, str]
    discovery_issuer: str | None = None
    id_token_issuer: str | None = None
    claims: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    refresh_token_scope: str | None = None
    refresh_token_param: tuple[str, str] | None = None
    refresh_token_at_consent: bool = False
    refresh_tokens_per_user: int | None = None
    rotate_refresh_tokens: bool = True
    echo_refresh_token: bool = True
    refresh_idle: float | None = None
    errors: Mapping[str, tuple[int, Mapping[str, Any]]] = dataclasses.field(default_factory=dict)
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    id_tokens: bool = True
    refresh_tokens: bool = True
    expires: bool = True
    refresh_token_expires_in: str | None = None
    scope_separator: str = " "
    token_format: Literal["json", "form_unless_json"] = "json"
    user_api: Callable[[Mapping[str, Any]], Any] | None = None
    emails: Callable[[Mapping[str, Any]], Any] | None = None
    emails_scopes: tuple[str, ...] = ()
    answered_scope: str | None = None
    revocation: Literal["rfc7009", "github"] = "rfc7009"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.endpoints) - set(ENDPOINTS))
        if unknown:
            raise ValueError(f"Mimic(endpoints=...) names unknown endpoints {unknown}; known: {ENDPOINTS}")
        for name in ("authorize", "token"):
            if name not in self.endpoints:
                raise ValueError(f"Mimic(endpoints=...) needs {name!r}")
        urls = list(self.endpoints.values())
        if "discovery" not in self.endpoints:
            urls.append(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        paths = [urlsplit(url).path for url in urls]
        if len(set(paths)) != len(paths):
            raise ValueError("Mimic(endpoints=...) has two endpoints at the same path")
        for cause, (status, body) in self.errors.items():
            if not 400 <= status <= 599 and not (status == 200 and "error" in body):
                raise ValueError(f"Mimic(errors={{{cause!r}: ...}}) must be an error status")
            if not isinstance(body.get("error"), str):
                raise ValueError(f"Mimic(errors={{{cause!r}: ...}}) needs an 'error' code in its body")
        if self.refresh_idle is not None and not self.refresh_idle > 0:
            raise ValueError("Mimic(refresh_idle=...) must be positive")
        if ("emails" in self.endpoints) != (self.emails is not None):
            raise ValueError("Mimic(emails=...) and an 'emails' endpoint go together")
        if self.token_format not in ("json", "form_unless_json") or self.revocation not in (
            "rfc7009",
            "github",
        ):
            raise ValueError("Mimic(token_format=...) or Mimic(revocation=...) is not one this mimic plays")
        if self.refresh_tokens_per_user is not None and self.refresh_tokens_per_user < 1:
            raise ValueError("Mimic(refresh_tokens_per_user=...) must be at least 1")

    def routes(self) -> dict[str, Endpoint]:
        """Each endpoint's URL, the discovery document's included."""
        urls = {url: name for name, url in self.endpoints.items()}
        if "discovery" not in self.endpoints:
            urls[self.issuer.rstrip("/") + "/.well-known/openid-configuration"] = "discovery"
        return urls

    def document(self, base: Mapping[str, Any]) -> dict[str, Any]:
        """The discovery document: ``base`` (the embedded provider's own) reshaped to this provider's."""
        document = {k: v for k, v in base.items() if k not in _METADATA_NAMES.values()}
        document["issuer"] = self.discovery_issuer or self.issuer
        for endpoint, name in _METADATA_NAMES.items():
            if endpoint in self.endpoints:
                document[name] = self.endpoints[endpoint]
        document.pop("authorization_response_iss_parameter_supported", None)
        for name, value in self.metadata.items():
            if value is None:
                document.pop(name, None)
            else:
                document[name] = value
        return document

    def token_issuer(self, claims: Mapping[str, Any]) -> str:
        """The ``iss`` of an ID token with these claims."""
        if self.id_token_issuer is None:
            return self.issuer
        names = set(re.findall(r"{(\w+)}", self.id_token_issuer))
        missing = sorted(names - set(claims))
        if missing:
            raise ValueError(f"the ID token's issuer template needs the claims {missing}")
        return self.id_token_issuer.format_map({name: claims[name] for name in names})
