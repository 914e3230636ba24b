"""One provider as the app registered with it: who it is, where it answers, how this client signs in there."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import httpx

from .. import _id_token
from .._errors import ConfigurationError
from .._login_params import LoginParams
from .._offline_access import OfflineAccess
from ._client_auth import CLIENT_AUTH_METHODS, ClientAuthMethod
from ._metadata import ENDPOINT_NAMES, check_url
from ._quirks import Quirks

__all__ = ["DEFAULT_SCOPES", "Discovery", "Provider"]

Discovery = Literal["oidc", "oauth", "none"]
DEFAULT_SCOPES = ("openid", "email", "profile")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MAX_TITLE_LENGTH = 64
# A title is one line of a button's text: no control characters (a line break or a NUL in a label is a
# copy-paste accident, and a page hook may put the label somewhere less forgiving than escaped HTML).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Provider:
    """A provider the guard signs users in with, and this app's registration there.

    Give ``issuer`` for a provider with discovery (its endpoints are fetched once); write the endpoints out
    for one without, or to override or complete what discovery says. Presets for common providers
    (``asgi_oauth_guard.providers``) return one of these.

    Args:
        name: Names the provider in the login URL (``?provider=NAME``), in sessions, events and logs:
            lower-case letters, digits, ``-`` and ``_``.
        title: The provider's name as the sign-in chooser shows it (one line, at most 64 characters);
            ``None``: ``name`` capitalised.
        client_id: The client ID the provider gave this app. Empty only in ``OAuthGuard(provider=...)``,
            whose ``client_id=`` fills it in.
        client_secret: The client secret; sent only to the token, revocation and PAR endpoints.
        client_auth: ``"client_secret_basic"``, ``"client_secret_post"``, ``"private_key_jwt"`` (RFC 7523,
            signed with ``client_key``) or ``"none"`` (a public client: PKCE only, no secret).
        client_key: The private key for ``private_key_jwt``: PEM text or a JWK dict.
        use_par: Pushed Authorization Requests (RFC 9126): the login route POSTs the authorization
            parameters, with the client's authentication, to the provider's
            ``pushed_authorization_request_endpoint`` and sends the browser there with only a one-time
            ``request_uri``. ``None``: when the provider's metadata requires it; ``True``: always;
            ``False``: never.
        issuer: The provider's issuer URL. With ``discovery="oidc"`` its
            ``/.well-known/openid-configuration`` is read; for a provider without OpenID Connect, any stable
            URL naming it (``"https://github.com"``): sessions and the user index are keyed by it.
        discovery: ``"oidc"`` (OpenID Connect Discovery), ``"oauth"`` (RFC 8414 metadata only) or ``"none"``
            (every endpoint written out). ``None``: ``"oidc"`` unless the authorization and token
            endpoints are both given.
        scopes: The scopes to ask for; ``None``: the guard's ``scopes=``. With ``"openid"`` an ID token is
            required and validated.
        authorize_params: Extra query parameters for every authorization request of this provider.
        id_token_signed_response_alg: The ID-token algorithm this client registered (see ``OAuthGuard``).
        fetch_userinfo: Also read the userinfo endpoint at sign-in (``True``: token in the header,
            ``"body"``: in a form body); a provider without ID tokens needs it for the identity.
        userinfo_claims: For a provider without ID tokens: a function from the userinfo answer to the
            identity's claims, which must hold a stable, non-empty ``sub`` (string).
        iss_parameter_supported: Whether the provider adds ``iss`` to its authorization responses
            (RFC 9207); ``None``: as its metadata says.
        id_token_algorithms: The ID-token algorithms the provider uses; ``None``: as its metadata says.
        quirks: The provider's departures from the specifications (presets set them).
        login_params: What a login link may ask of this provider per request (more scopes,
            ``login_hint``, ``prompt``, ``max_age``, ``acr_values``): ``LoginParams(...)``; ``None``: the
            guard's ``login_params=``. Anything else a link carries is not sent (docs/sign-in.md).
        offline: Offline access for this provider's users, ``OfflineAccess(...)``: their refresh tokens
            kept for background jobs (``guard.tokens().for_user(sub, provider=NAME)``), sealed with the
            guard's ``server_keys`` (docs/background-jobs.md). ``None``: off.
    """

    name: str = "default"
    title: str | None = None
    client_id: str = ""
    client_secret: str = dataclasses.field(default="", repr=False)
    client_auth: ClientAuthMethod = "client_secret_basic"
    client_key: str | Mapping[str, Any] | None = dataclasses.field(default=None, repr=False)
    issuer: str | None = None
    discovery: Discovery | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    jwks_uri: str | None = None
    userinfo_endpoint: str | None = None
    revocation_endpoint: str | None = None
    end_session_endpoint: str | None = None
    pushed_authorization_request_endpoint: str | None = None
    use_par: bool | None = None
    scopes: tuple[str, ...] | None = None
    authorize_params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    id_token_signed_response_alg: str | None = None
    fetch_userinfo: bool | Literal["body"] = False
    userinfo_claims: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    iss_parameter_supported: bool | None = None
    id_token_algorithms: tuple[str, ...] | None = None
    quirks: Quirks = dataclasses.field(default_factory=Quirks)
    login_params: LoginParams | None = None
    offline: OfflineAccess | None = None

    def __post_init__(self) -> None:
        what = f"Provider(name={self.name!r})"
        if self.offline is not None and not isinstance(self.offline, OfflineAccess):
            raise ConfigurationError(f"{what}: offline= must be OfflineAccess(...) or None")
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigurationError(
                f"Provider(name={self.name!r}): a name is 1-32 lower-case letters, digits, '-' or '_', "
                "such as 'google'"
            )
        if self.title is not None:
            self._check_title(what)
        if self.issuer is None:
            raise ConfigurationError(
                f"{what} needs issuer=: the provider's issuer URL (for one without OpenID Connect, any "
                "stable URL naming it, such as 'https://github.com')"
            )
        check_url(f"{what}: issuer=", self.issuer)
        for name in ENDPOINT_NAMES:
            value = getattr(self, name)
            if value is not None:
                check_url(f"{what}: {name}=", value)
        if self.discovery not in (None, "oidc", "oauth", "none"):
            raise ConfigurationError(f"{what}: discovery= must be 'oidc', 'oauth', 'none' or None")
        if self.resolved_discovery == "none" and (
            self.authorization_endpoint is None or self.token_endpoint is None
        ):
            raise ConfigurationError(
                f"{what}: without discovery, give authorization_endpoint= and token_endpoint="
            )
        if self.use_par not in (None, True, False):
            raise ConfigurationError(f"{what}: use_par= must be True, False or None")
        if (
            self.use_par
            and self.resolved_discovery == "none"
            and self.pushed_authorization_request_endpoint is None
        ):
            raise ConfigurationError(
                f"{what}: use_par=True without discovery needs pushed_authorization_request_endpoint="
            )
        if self.scopes is not None:
            if isinstance(self.scopes, str):
                raise ConfigurationError(
                    f"{what}: scopes= must be a list, not a string: write scopes={self.scopes.split()!r}"
                )
            if not self.scopes or any(not isinstance(s, str) or not s or " " in s for s in self.scopes):
                raise ConfigurationError(f"{what}: scopes= must be a list of scope names, e.g. ['openid']")
        if not isinstance(self.authorize_params, Mapping):
            raise ConfigurationError(
                f"{what}: authorize_params= must be a mapping, such as {{'prompt': 'consent'}}, "
                f"got {type(self.authorize_params).__name__}"
            )
        if self.login_params is not None and not isinstance(self.login_params, LoginParams):
            raise ConfigurationError(f"{what}: login_params= must be LoginParams(...) or None")
        if self.fetch_userinfo not in (True, False, "body"):
            raise ConfigurationError(f"{what}: fetch_userinfo= must be True, False or 'body'")
        if self.userinfo_claims is not None and not callable(self.userinfo_claims):
            raise ConfigurationError(f"{what}: userinfo_claims= must be a function from the userinfo JSON")
        if (
            (self.fetch_userinfo or self.userinfo_claims is not None)
            and self.resolved_discovery == "none"
            and self.userinfo_endpoint is None
        ):
            raise ConfigurationError(f"{what}: reading userinfo needs userinfo_endpoint=")
        alg = self.id_token_signed_response_alg
        if alg is not None and alg not in (_id_token.ASYMMETRIC | _id_token.SYMMETRIC):
            raise ConfigurationError(
                f"{what}: id_token_signed_response_alg= {alg!r} is not a JWS algorithm this guard checks "
                "('none' is never accepted)"
            )
        if self.client_id:
            self._check_registration(what)

    def _check_title(self, what: str) -> None:
        title = self.title
        if not isinstance(title, str) or not title.strip():
            raise ConfigurationError(
                f"{what}: title= is the sign-in chooser's label: give a non-empty text such as 'Google', "
                "or leave it out to show the name"
            )
        if len(title) > MAX_TITLE_LENGTH or _CONTROL.search(title):
            raise ConfigurationError(
                f"{what}: title= must be one line of at most {MAX_TITLE_LENGTH} characters, without "
                f"control characters (it labels a button of the sign-in chooser), got {title[:80]!r}"
            )

    def _check_registration(self, what: str) -> None:
        if self.client_auth not in CLIENT_AUTH_METHODS:
            raise ConfigurationError(f"{what}: client_auth= must be one of {', '.join(CLIENT_AUTH_METHODS)}")
        if not self.client_secret and self.client_auth in ("client_secret_basic", "client_secret_post"):
            raise ConfigurationError(
                f"{what}: client_secret= is empty: set it to the client secret the provider gave you "
                "(or client_auth='none' for a public client)"
            )
        if self.client_auth == "none" and self.client_secret:
            raise ConfigurationError(
                f"{what}: client_secret= is set, but client_auth='none' (a public client) never sends it: "
                "drop client_secret=, or set client_auth= to how the provider registered this client"
            )
        if self.client_key is not None and self.client_auth != "private_key_jwt":
            raise ConfigurationError(f"{what}: client_key= is only used with client_auth='private_key_jwt'")
        if self.id_token_signed_response_alg in _id_token.SYMMETRIC and not self.client_secret:
            raise ConfigurationError(
                f"{what}: id_token_signed_response_alg={self.id_token_signed_response_alg!r} is checked "
                + (
                    "with a client secret, which a public client (client_auth='none') has not: register "
                    "an asymmetric algorithm such as 'RS256'"
                    if self.client_auth == "none"
                    else "with the client secret: set client_secret="
                )
            )

    @property
    def resolved_discovery(self) -> Discovery:
        if self.discovery is not None:
            return self.discovery
        if self.authorization_endpoint is not None and self.token_endpoint is not None:
            return "none"
        return "oidc"

    @property
    def label(self) -> str:
        """The name the chooser shows: the title, else the name; the one-provider form's unnamed provider
        ("default", a word that means nothing to a user) shows its issuer's host."""
        if self.title:
            return self.title
        if self.name == "default" and self.issuer is not None:
            return httpx.URL(self.issuer).host
        return self.name.replace("-", " ").replace("_", " ").title()

    def given_endpoints(self) -> dict[str, str]:
        """The endpoints written out here (they win over discovered ones)."""
        return {name: value for name in ENDPOINT_NAMES if (value := getattr(self, name)) is not None}
