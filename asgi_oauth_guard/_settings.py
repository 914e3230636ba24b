"""OAuthGuard's settings, checked in one place.

``OAuthGuard(...)`` keeps its explicit keyword arguments (and the docstring the configuration reference is
generated from); it hands them to :class:`GuardSettings`, which checks every one of them, raising
:class:`ConfigurationError` with a message that names the fix, and resolves what follows from them (the
pinned redirect URI, the cookie's name and ``Secure``, the providers of the one-provider form). The guard
then only wires its parts from a settings object that is known to be good.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import httpx

from ._cookies import SameSite, check_cookie_prefix, default_cookie_name
from ._errors import ConfigurationError
from ._events import EventHook
from ._http import ForwardedTrust
from ._lifetime import TOUCH_INTERVAL
from ._login_params import LoginParams
from ._offline import OfflineAccess
from ._on_login import LoginHook
from ._origins import normal_origin
from ._pages import PageHook
from ._relogin import ReloginHandler, ReloginMode
from ._server_keys import ServerKeys
from ._store import Store
from ._telemetry import Telemetry
from .providers import ClientAuthMethod, Provider
from .providers._client_auth import CLIENT_AUTH_METHODS

__all__ = ["DEFAULT_SESSION_MAX_AGE", "GuardSettings"]

DEFAULT_SESSION_MAX_AGE = 12 * 3600.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class GuardSettings:
    """The guard's settings as given to ``OAuthGuard(...)`` (same names, same defaults: a test holds the
    two together), checked when built. ``OAuthGuard``'s docstring says what each one means.

    The sequence settings come out as tuples, ``redirect_uri`` filled from ``public_url`` and
    ``cookie_secure`` from the redirect URI's scheme; the fields after ``clock`` are resolved here too.
    """

    client_id: str = ""
    client_secret: str = dataclasses.field(default="", repr=False)
    secret_key: str | Sequence[str] = dataclasses.field(repr=False)
    issuer: str | None = None
    provider: Provider | None = None
    providers: Sequence[Provider] | None = None
    client_auth: ClientAuthMethod = "client_secret_basic"
    client_key: str | Mapping[str, Any] | None = dataclasses.field(default=None, repr=False)
    id_token_signed_response_alg: str | None = None
    fetch_userinfo: bool | Literal["body"] = False
    scopes: Sequence[str] = ("openid", "email", "profile")
    authorize_params: Mapping[str, str] | None = None
    store: Store | None = None
    http_client: httpx.AsyncClient | None = None
    redirect_uri: str | None = None
    public_url: str | None = None
    trusted_proxies: Sequence[str] = ()
    allowed_origins: Sequence[str] = ()
    login_path: str = "/auth/login"
    callback_path: str = "/auth/callback"
    logout_path: str = "/auth/logout"
    backchannel_logout_path: str | None = "/auth/backchannel-logout"
    require_login: bool | Sequence[str] = False
    public_paths: Sequence[str] = ()
    api_prefixes: Sequence[str] = ("/api/",)
    relogin: ReloginMode | ReloginHandler = "auto"
    pages: PageHook | None = None
    page_texts: Mapping[str, str] | None = None
    cookie_name: str | None = None
    cookie_secure: bool | None = None
    cookie_domain: str | None = None
    cookie_path: str | None = None
    cookie_same_site: SameSite = "lax"
    session_max_age: float | None = None
    session_idle_timeout: float | None = 8 * 3600
    session_ttl: float | None = None
    max_sessions_per_user: int = 100
    transaction_ttl: float = 600
    duplicate_window: float = 30
    max_transactions_per_browser: int = 5
    code_lifetime: float = 60
    refresh_leeway: float = 60
    http_timeout: float = 10
    max_concurrent_refreshes: int = 32
    post_logout_redirect: str = "/"
    rp_initiated_logout: bool = False
    private_cache_headers: bool = True
    session_record_format: Literal[1, 2] = 2
    offline: OfflineAccess | None = None
    server_keys: Sequence[str] | None = dataclasses.field(default=None, repr=False)
    on_login: LoginHook | None = None
    login_params: LoginParams | None = None
    on_event: EventHook | None = None
    telemetry: Telemetry | None = None
    clock: Callable[[], float] = time.time

    # Resolved from the settings above.
    secret_keys: tuple[str, ...] = dataclasses.field(init=False, repr=False)
    """``secret_key`` as a list: the last one signs, all of them verify."""
    configured_providers: tuple[Provider, ...] = dataclasses.field(init=False)
    """Every provider, complete: those of ``providers=``, or the one the one-provider settings make."""
    max_age: float = dataclasses.field(init=False)
    """``session_max_age`` (or its deprecated name ``session_ttl``), or the default."""
    session_cookie_name: str = dataclasses.field(init=False)
    """``cookie_name``, or the name its prefix rules give (``__Host-`` where it can)."""
    trust: ForwardedTrust = dataclasses.field(init=False, repr=False)
    """Whose forwarded headers to believe (``trusted_proxies``)."""
    sealing_keys: ServerKeys | None = dataclasses.field(init=False, repr=False)
    """``server_keys`` as a key ring, or ``None``."""

    def __post_init__(self) -> None:
        resolved = self._checked()
        for name, value in resolved.items():
            object.__setattr__(self, name, value)  # frozen: these are set once, here

    def _checked(self) -> dict[str, Any]:
        """Every check, in the order the messages assume; returns the resolved values."""
        keys = [self.secret_key] if isinstance(self.secret_key, str) else list(self.secret_key)
        if not keys or any(not isinstance(k, str) or len(k) < 32 for k in keys):
            raise ConfigurationError(
                "secret_key= must be at least 32 characters: generate one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        scopes = self.scopes
        split = scopes.split() if isinstance(scopes, str) else None
        scope_list = _strings("scopes", scopes, suggestion=split)
        trusted_proxies = _strings("trusted_proxies", self.trusted_proxies)
        public_paths = _strings("public_paths", self.public_paths)
        api_prefixes = _strings("api_prefixes", self.api_prefixes)
        require_login = self.require_login
        if not isinstance(require_login, bool):
            require_login = tuple(_strings("require_login", require_login))
        if not scope_list or any(not s or " " in s for s in scope_list):
            raise ConfigurationError("scopes= must be a list of scope names, e.g. ['openid', 'email']")
        if self.offline is not None and not isinstance(self.offline, OfflineAccess):
            raise ConfigurationError("offline= must be OfflineAccess(...) or None")
        sealing = ServerKeys(self.server_keys) if self.server_keys is not None else None
        if sealing is not None and set(self.server_keys or ()) & set(keys):
            # One secret for two jobs: whoever learns the cookies' key (it signs what every browser
            # holds) would also open every offline grant and client-credentials token kept in the store.
            raise ConfigurationError(
                "server_keys= must not repeat secret_key=: give each its own random keys "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        configured = _providers(
            self.providers,
            one={name: getattr(self, name) for name in _ONE_PROVIDER_DEFAULTS},
            scopes=tuple(scope_list),
        )
        for item in configured:
            if item.offline is not None and sealing is None:
                raise ConfigurationError(
                    f"offline access (provider {item.name!r}) needs server_keys=[...]: offline grants are "
                    "sealed with keys every process holds; generate one with "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
        # A provider with offline access asks for what it needs (OpenID Connect's offline_access).
        configured = [
            dataclasses.replace(p, scopes=(*p.scopes, *(s for s in p.offline.scopes if s not in p.scopes)))
            if p.offline is not None and p.scopes is not None
            else p
            for p in configured
        ]
        paths = {
            "login_path": self.login_path,
            "callback_path": self.callback_path,
            "logout_path": self.logout_path,
        }
        if self.backchannel_logout_path is not None:
            paths["backchannel_logout_path"] = self.backchannel_logout_path
        for name, path in paths.items():
            if not path.startswith("/") or path.startswith("//") or "?" in path:
                raise ConfigurationError(f"{name}= must be a path such as '/auth/login', got {path!r}")
        if len(set(paths.values())) != len(paths):
            raise ConfigurationError(f"{', '.join(paths)} must differ")
        if self.max_sessions_per_user < 1:
            raise ConfigurationError("max_sessions_per_user= must be at least 1")
        max_age = self.session_max_age
        if self.session_ttl is not None:
            if max_age is not None:
                raise ConfigurationError("give session_max_age= only: session_ttl= is its deprecated name")
            warnings.warn(
                "OAuthGuard(session_ttl=...) is deprecated: use session_max_age=... (the same setting)",
                DeprecationWarning,
                stacklevel=5,  # _checked, __post_init__, __init__, OAuthGuard.__init__, its caller
            )
            max_age = self.session_ttl
        if max_age is None:
            max_age = DEFAULT_SESSION_MAX_AGE
        idle = self.session_idle_timeout
        if idle is not None and not idle >= 2 * TOUCH_INTERVAL:
            raise ConfigurationError(
                f"session_idle_timeout= must be at least {2 * TOUCH_INTERVAL:.0f} seconds (it is counted to "
                f"within a minute), or None for no idle timeout; got {idle!r}"
            )
        if type(self.session_record_format) is not int or self.session_record_format not in (1, 2):
            raise ConfigurationError(
                "session_record_format= is 2 (the default), or 1 while processes of a version before "
                f"format 2 share the store; got {self.session_record_format!r}"
            )
        for name, value in (
            ("session_max_age", max_age),
            ("transaction_ttl", self.transaction_ttl),
            ("duplicate_window", self.duplicate_window),
            ("code_lifetime", self.code_lifetime),
            ("http_timeout", self.http_timeout),
        ):
            if not value > 0:
                raise ConfigurationError(f"{name}= must be positive, got {value!r}")
        if self.refresh_leeway < 0:
            raise ConfigurationError(f"refresh_leeway= must be zero or more, got {self.refresh_leeway!r}")
        if self.max_transactions_per_browser < 1:
            raise ConfigurationError("max_transactions_per_browser= must be at least 1")
        if self.max_concurrent_refreshes < 1:
            raise ConfigurationError("max_concurrent_refreshes= must be at least 1")
        same_site, secure = self.cookie_same_site, self.cookie_secure
        if same_site not in ("lax", "strict", "none"):
            raise ConfigurationError("cookie_same_site= must be 'lax', 'strict' or 'none'")
        if same_site == "none" and secure is False:
            raise ConfigurationError(
                "cookie_same_site='none' needs cookie_secure=True (browsers refuse it otherwise)"
            )
        cookie_name = self.cookie_name
        if cookie_name is not None and (not cookie_name or any(c in cookie_name for c in " ;=,\t\"'")):
            raise ConfigurationError(f"cookie_name= is not a valid cookie name: {cookie_name!r}")
        redirect_uri, public_url, callback_path = self.redirect_uri, self.public_url, self.callback_path
        if redirect_uri is not None and public_url is not None:
            raise ConfigurationError("give redirect_uri= or public_url=, not both")
        if public_url is not None:
            base = httpx.URL(_absolute_url("public_url", public_url))
            if base.query or base.fragment:
                raise ConfigurationError(
                    f"public_url= {public_url!r} has a query or fragment: give the app's base URL only, "
                    "such as 'https://app.example.com'"
                )
            if base.path.rstrip("/").endswith(callback_path.rstrip("/")):
                raise ConfigurationError(
                    f"public_url= {public_url!r} is the callback URL: give the app's base URL "
                    f"({public_url.rstrip('/')[: -len(callback_path.rstrip('/'))]!r}); the guard adds "
                    f"callback_path {callback_path!r} itself, or give the full URL as redirect_uri="
                )
            redirect_uri = public_url.rstrip("/") + callback_path
        if redirect_uri is not None:
            _absolute_url("redirect_uri", redirect_uri)
            if not httpx.URL(redirect_uri).path.endswith(callback_path):
                raise ConfigurationError(
                    f"redirect_uri= {redirect_uri!r} does not end with callback_path {callback_path!r}: "
                    "the provider would send users to a URL the guard does not serve"
                )
            if secure is None:
                secure = redirect_uri.startswith("https:")
        cookie_path = self.cookie_path or "/"
        if cookie_name is None:
            cookie_name = default_cookie_name(secure=secure, domain=self.cookie_domain, path=cookie_path)
        else:
            check_cookie_prefix(cookie_name, secure=secure, domain=self.cookie_domain, path=cookie_path)
        post_logout = self.post_logout_redirect
        if not post_logout.startswith("/") or post_logout.startswith("//"):
            raise ConfigurationError("post_logout_redirect= must be a path on this site, such as '/'")
        try:
            trust = ForwardedTrust(trusted_proxies)
        except ValueError as exc:
            raise ConfigurationError(
                f"trusted_proxies= has an entry that is not an IP network: {exc}"
            ) from None
        allowed_origins = _strings("allowed_origins", self.allowed_origins)
        if any(normal_origin(o) is None for o in allowed_origins):
            raise ConfigurationError(
                "allowed_origins= must be a list of origins such as ['https://admin.example.com'] "
                "(a scheme and a host, no path)"
            )
        relogin = self.relogin
        if relogin not in ("auto", "redirect", "page", "json") and not callable(relogin):
            raise ConfigurationError("relogin= must be 'auto', 'redirect', 'page', 'json' or a callable")
        if self.login_params is not None and not isinstance(self.login_params, LoginParams):
            raise ConfigurationError("login_params= must be LoginParams(...) or None")
        if self.on_login is not None and not callable(self.on_login):
            raise ConfigurationError(
                "on_login= must be a function (plain or async) that gets a SignIn and returns "
                "SignInAccepted(...), SignInRefused(...) or None"
            )
        if self.on_login is not None and not _takes_one_argument(self.on_login):
            raise ConfigurationError(
                "on_login= is called with one argument, the SignIn: give a function such as "
                "`async def on_login(sign_in: SignIn) -> SignInAccepted | SignInRefused | None`"
            )
        telemetry = self.telemetry
        if telemetry is not None and not (
            callable(getattr(telemetry, "on_event", None)) and callable(getattr(telemetry, "span", None))
        ):
            raise ConfigurationError(
                "telemetry= must be a telemetry backend such as asgi_oauth_guard.otel.GuardTelemetry() "
                f"(the otel extra), or None; got {type(telemetry).__name__}"
            )
        return {
            "scopes": tuple(scope_list),
            "trusted_proxies": tuple(trusted_proxies),
            "public_paths": tuple(public_paths),
            "api_prefixes": tuple(api_prefixes),
            "require_login": require_login,
            "allowed_origins": tuple(allowed_origins),
            "redirect_uri": redirect_uri,
            "cookie_secure": secure,
            "secret_keys": tuple(keys),
            "configured_providers": tuple(configured),
            "max_age": float(max_age),
            "session_cookie_name": cookie_name,
            "trust": trust,
            "sealing_keys": sealing,
        }


# The one-provider form's settings, as OAuthGuard's signature defaults them: with providers=, none is given.
_ONE_PROVIDER_DEFAULTS: Mapping[str, object] = {
    "client_id": "",
    "client_secret": "",
    "issuer": None,
    "provider": None,
    "client_auth": "client_secret_basic",
    "client_key": None,
    "id_token_signed_response_alg": None,
    "fetch_userinfo": False,
    "authorize_params": None,
    "offline": None,
}


def _providers(
    providers: Sequence[Provider] | None, *, one: Mapping[str, Any], scopes: tuple[str, ...]
) -> list[Provider]:
    """The guard's providers, each complete: from ``providers=``, or built from the one-provider settings."""
    if providers is not None:
        given = [name for name, default in _ONE_PROVIDER_DEFAULTS.items() if one[name] != default]
        if given:
            raise ConfigurationError(
                f"with providers=, give {', '.join(f'{n}=' for n in given)} in each Provider(...) instead"
            )
        if isinstance(providers, (Provider, str)) or not isinstance(providers, Sequence):
            raise ConfigurationError("providers= must be a list of Provider(...)")
        for item in providers:
            if not isinstance(item, Provider):
                raise ConfigurationError(
                    f"providers= must be a list of Provider(...), not {type(item).__name__}"
                )
            if not item.client_id:
                raise ConfigurationError(f"Provider(name={item.name!r}) needs client_id=")
        built = [p if p.scopes is not None else dataclasses.replace(p, scopes=scopes) for p in providers]
    else:
        issuer, provider = one["issuer"], one["provider"]
        if (issuer is None) == (provider is None):
            raise ConfigurationError(
                "give exactly one of issuer= (OIDC discovery) or provider=Provider(...), "
                "or several providers as providers=[...]"
            )
        if issuer is not None:
            _absolute_url("issuer", issuer)
        if not one["client_id"]:
            raise ConfigurationError("client_id= is empty: set it to the client ID your provider gave you")
        if one["client_auth"] not in CLIENT_AUTH_METHODS:
            raise ConfigurationError(
                f"client_auth= must be one of {', '.join(map(repr, CLIENT_AUTH_METHODS))}"
            )
        if not one["client_secret"] and one["client_auth"] in ("client_secret_basic", "client_secret_post"):
            raise ConfigurationError(
                "client_secret= is empty: set it to the client secret your provider gave you"
            )
        authorize_params = one["authorize_params"]
        if authorize_params is not None and not isinstance(authorize_params, Mapping):
            raise ConfigurationError(
                "authorize_params= must be a mapping, such as {'prompt': 'consent'}, "
                f"got {type(authorize_params).__name__}"
            )
        if provider is not None and not isinstance(provider, Provider):
            raise ConfigurationError(f"provider= must be a Provider(...), not {type(provider).__name__}")
        base = provider if provider is not None else Provider(issuer=issuer)
        if base.client_id and base.client_id != one["client_id"]:
            raise ConfigurationError("give client_id= once: in OAuthGuard(...) or in Provider(...)")
        if one["fetch_userinfo"] and base.resolved_discovery == "none" and base.userinfo_endpoint is None:
            raise ConfigurationError("fetch_userinfo= needs Provider(userinfo_endpoint=...)")
        built = [
            dataclasses.replace(
                base,
                client_id=one["client_id"],
                client_secret=one["client_secret"],
                client_auth=one["client_auth"],
                client_key=one["client_key"],
                id_token_signed_response_alg=one["id_token_signed_response_alg"],
                fetch_userinfo=one["fetch_userinfo"],
                scopes=base.scopes if base.scopes is not None else scopes,
                authorize_params={**base.authorize_params, **(authorize_params or {})},
                offline=one["offline"] if one["offline"] is not None else base.offline,
            )
        ]
    return built


def _absolute_url(name: str, value: str) -> str:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"{name}= must be an absolute http(s) URL, got {value!r}")
    return value


def _strings(name: str, value: object, *, suggestion: object = None) -> list[str]:
    """A setting that takes a list of strings; a bare string would be read one character at a time."""
    if isinstance(value, (str, bytes)):
        example = suggestion if suggestion is not None else [value]
        raise ConfigurationError(f"{name}= must be a list, not a string: write {name}={example!r}")
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise ConfigurationError(f"{name}= must be a list of strings, got {type(value).__name__}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"{name}= must be a list of strings; {item!r} is not a string")
    return items


def _takes_one_argument(hook: Callable[..., object]) -> bool:
    """Whether ``hook(x)`` binds, so a hook of the wrong shape fails at startup rather than at each
    sign-in. A callable whose signature Python cannot read is given the benefit of the doubt."""
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(None)
    except TypeError:
        return False
    return True
