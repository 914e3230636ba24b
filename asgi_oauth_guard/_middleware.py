"""The ASGI middleware: configuration checked once, then one dictionary lookup to route each request."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import httpx
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from . import _websocket as websocket
from ._backchannel import BackchannelLogout
from ._client_credentials import ClientCredentials
from ._context import SCOPE_KEY, GuardState, Identity, _state
from ._cookies import CookieJar, SameSite
from ._crypto import Keyring
from ._ending import SessionEnder
from ._errors import ConfigurationError, ProviderUnavailable, ReloginRequired, StoreUnavailable
from ._events import EventHook, GuardEvent, emit
from ._flows import Flows
from ._headers import own, private_send
from ._http import BadRequest, find_cookie, request_origin, root_path
from ._index import SessionIndex, SessionInfo
from ._lifetime import Lifetime
from ._login_params import LoginLinks, LoginParams
from ._offline import OfflineAccess, OfflineGrants
from ._on_login import LoginHook, OnLogin
from ._origins import OwnOrigins
from ._pages import PageHook, Pages
from ._paths import PathRules, Prefixes, route_path
from ._published import Published
from ._reasons import Reason
from ._refresh import Refresher
from ._relogin import Relogin, ReloginHandler, ReloginMode, login_url
from ._session import Session
from ._sessions import SESSION_PREFIX, Sessions
from ._settings import GuardSettings
from ._signout import SignOutGate
from ._startup import Startup, setting_warnings
from ._store import CheckedStore, MemoryStore, Store
from ._telemetry import NO_TELEMETRY, Telemetry, with_telemetry
from ._token_manager import TokenManager
from ._worker_advice import WorkerAdvice
from .providers import ClientAuthMethod, Provider
from .providers._client import ProviderClient
from .providers._registry import Providers

logger = logging.getLogger("asgi_oauth_guard")

__all__ = ["OAuthGuard"]


class OAuthGuard:
    """Sign-in with OAuth 2.0 / OpenID Connect for any ASGI app, without ``invalid_grant`` surprises.

    Serves ``login_path``, ``callback_path`` and ``logout_path``; for every other HTTP request, loads the
    session (one store read), refreshes its access token when due (one refresh per session at a time), and
    publishes the user as ``scope["asgi_oauth_guard"]`` and :func:`current_identity`.

    Give one provider as ``issuer=`` (OIDC discovery, fetched once) or ``provider=Provider(...)`` with the
    client settings here, or several as ``providers=[Provider(name=..., client_id=..., ...), ...]``.
    Settings are checked here: a mistake raises :class:`ConfigurationError` saying what to fix.
    docs/configuration.md is generated from this signature and the list below (scripts/gen_config_docs.py).

    Args:
        app: The ASGI app to guard.
        client_id: The client ID the provider gave this app (one-provider form).
        client_secret: The client secret the provider gave this app; sent only to the token, revocation and
            pushed-authorization endpoints, never logged. Not needed with ``client_auth="private_key_jwt"``
            or ``"none"``.
        secret_key: 32 or more random characters that sign the cookies. A list rotates keys: the last one
            signs, all of them verify.
        issuer: The provider's issuer URL; its endpoints come from OIDC discovery, fetched and checked at
            startup (a mistake stops it, naming the fix), or when first needed. Give this or ``provider``.
        provider: The provider's endpoints written out, ``Provider(...)``, for providers without discovery
            (GitHub). Give this or ``issuer``.
        providers: Several providers, each a ``Provider`` with its own name, client settings and endpoints
            (or a preset from ``asgi_oauth_guard.providers``); the login route shows a chooser unless
            ``?provider=NAME`` names one. The first is the default. Instead of ``client_id``, ``issuer``,
            ``provider`` and the client settings above.
        client_auth: How the app authenticates at the token endpoint: ``"client_secret_basic"`` (HTTP Basic),
            ``"client_secret_post"`` (in the form body), ``"private_key_jwt"`` (a JWT signed with
            ``client_key``, RFC 7523), or ``"none"`` for a public client (no secret: it names itself with
            ``client_id``, and PKCE binds each code to the sign-in that asked for it).
        client_key: The app's private key for ``client_auth="private_key_jwt"``: PEM text or a JWK dict; its
            ``kid`` (else its RFC 7638 thumbprint) names it to the provider, which holds the public half.
        id_token_signed_response_alg: The ID-token signing algorithm this client registered at the provider.
            ``None``: any asymmetric algorithm the provider's discovery lists (``RS256`` if none). ``"HS256"``
            (and ``HS384``/``HS512``) is accepted only when set here: those are checked with the client
            secret. ``"none"`` is never accepted.
        fetch_userinfo: Also call the userinfo endpoint at sign-in and add its claims to the identity;
            refused when its ``sub`` is not the ID token's. ``True`` sends the access token in the
            ``Authorization`` header, ``"body"`` in a POST form body (RFC 6750 section 2.2).
        scopes: The scopes to ask for. With ``"openid"``, an ID token is required and validated. Some
            providers want ``"offline_access"`` before they issue a refresh token.
        authorize_params: Extra query parameters for the authorization request, such as Google's
            ``{"access_type": "offline"}`` (the preset ``providers.google(...)`` sets it, and asks for
            ``prompt=consent`` only when no refresh token is held: at every sign-in it would mint a new
            one each time, and Google keeps 100 per user).
        store: Where sessions, sign-ins in flight and refresh locks live. ``None``: a ``MemoryStore``, for one
            process only; give a ``RedisStore`` when several processes or hosts serve the app.
        http_client: The ``httpx.AsyncClient`` for calls to the provider. ``None``: the guard makes one and
            closes it at lifespan shutdown (or ``aclose()``); a client you give is yours to close.
        redirect_uri: The callback URL exactly as registered at the provider; it must end with
            ``callback_path``. Give this or ``public_url``; with neither, each sign-in uses the URL it was
            started from.
        public_url: The app's public base URL, such as ``"https://app.example.com"``; the redirect URI is
            this plus ``callback_path``.
        allowed_origins: More origins (``"https://admin.example.com"``) besides the app's own whose pages may
            open its WebSockets and post its sign-out form. The app's own: that of ``public_url`` or
            ``redirect_uri`` when set, else the request's (its Host, or forwarded headers from
            ``trusted_proxies``).
        trusted_proxies: Addresses or networks (``"10.0.0.0/8"``, or ``"*"`` for any) of reverse proxies
            whose ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` the guard believes when it builds URLs
            (the last value of each: the nearest proxy's). For servers whose own proxy handling is off;
            ``public_url`` needs none of it.
        login_path: The guard's sign-in route; takes ``?next=/path``.
        callback_path: The guard's callback route, where the provider sends the browser back.
        logout_path: The guard's sign-out route: a POST from one of the app's own origins signs out; a GET
            shows a confirm page with the POST form (so another site cannot sign users out).
        backchannel_logout_path: The guard's OpenID Connect back-channel logout route (POST, from the
            provider): register the app's URL of it at the provider as the client's
            ``backchannel_logout_uri`` (docs/providers.md). ``None``: no such route.
        require_login: ``True``: every path needs a signed-in user; a list of path prefixes: those paths do;
            ``False``: none (guard single routes with the integrations instead). Prefixes match whole
            segments (``"/admin"`` covers ``/admin`` and ``/admin/...``, not ``/administrator``) on every
            way the app could route a path (repeated slashes, dot segments, encodings, case).
        public_paths: Path prefixes that never need a signed-in user, even under ``require_login``; whole
            segments, as written. A path that reads as protected in any way stays protected.
        api_prefixes: Path prefixes of API routes, always treated as API calls: a ``401`` JSON rather than a
            redirect or a page (unless ``relogin="redirect"``), and a JSON ``503``. ``"/api/"`` and
            ``"/api"`` are the same prefix: ``/api`` and everything under it.
        relogin: What a request gets when the user must sign in (again): ``"auto"`` (303 to the login path
            for page loads, 401 JSON for API calls), ``"redirect"`` (always 303), ``"page"`` (a 401 sign-in
            page for page loads), ``"json"`` (always 401 JSON), or a callable ``(request, reason)`` that
            returns an ASGI response.
        pages: A callable that gets a :class:`Page` (its ``kind``: ``"sign_in"``, ``"cancelled"``,
            ``"failed"``, ``"misconfigured"``, ``"signed_out"``, ``"logout_confirm"``, ``"unavailable"``,
            ``"chooser"`` or ``"refused"``; the ``reason``, the message, the status and the URLs) and returns
            an ASGI response to show instead of the guard's own page, or ``None`` to keep it. API clients
            get JSON either way.
        page_texts: Texts for the guard's own pages, by message id (``"sign_in.title"``,
            ``"reason.state_expired"``, ``"lang"``...; the full list is ``DEFAULT_PAGE_TEXTS``), to translate
            or reword them. An unknown id is refused.
        cookie_name: The session cookie's name; the sign-in cookie is this name plus ``_tx``. ``None``:
            ``__Host-guard_session`` when the cookies are always ``Secure`` (an https ``public_url`` or
            ``redirect_uri``, or ``cookie_secure=True``), have no ``Domain`` and ``Path=/``, so that no
            other site or subdomain can set or overwrite them; ``__Secure-guard_session`` when they are
            always ``Secure`` but have a ``Domain`` or another ``Path``; else ``guard_session``.
        cookie_secure: The cookies' ``Secure`` flag. ``None``: on when ``redirect_uri`` or ``public_url`` is
            https, else when the request came over https.
        cookie_domain: The cookies' ``Domain``. ``None``: host-only cookies.
        cookie_path: The cookies' ``Path``. ``None``: where the app is mounted (``/app`` under
            ``Mount("/app", ...)`` or ``--root-path /app``), else ``/``.
        cookie_same_site: The cookies' ``SameSite``: ``"lax"``, ``"strict"`` or ``"none"`` (needs ``Secure``).
            Sign-in with a provider on another site needs ``"lax"`` or ``"none"``.
        session_max_age: Seconds a session lasts from sign-in, however often it is used or refreshed
            (12 hours: the re-authentication bound of NIST SP 800-63B AAL2 and OWASP ASVS 3.3.2 level 2).
            The provider can end it sooner (a refused refresh, its ``refresh_expires_in``).
        session_idle_timeout: Seconds without a request after which a session ends (8 hours), counted to
            within a minute; ``None``: no idle timeout. ASVS level 2 asks for 30 minutes (``1800``).
        session_ttl: Deprecated: the old name of ``session_max_age``.
        max_sessions_per_user: Sessions one user may have at once (browsers, devices); a sign-in beyond
            this ends the user's oldest session (100).
        transaction_ttl: Seconds a sign-in may take, from the redirect to the provider to the callback
            (10 minutes); a callback loaded again within this time goes to the same ``next``.
        duplicate_window: Seconds after a sign-in completes during which a duplicate of its callback
            (the same code, from the same browser: a double click, a reload) is handed the same session
            (30). Later replays go to ``next`` with whatever session the browser has.
        max_transactions_per_browser: Sign-ins in flight at once per browser (tabs); the oldest give way.
        code_lifetime: The provider's authorization-code lifetime in seconds; only used to explain a refused
            code: one refused after this long is reported as ``code_expired``.
        refresh_leeway: Refresh the access token this many seconds before it expires (at most half its
            lifetime).
        http_timeout: Seconds for each call to the provider, from start to end. The refresh lock's lease is
            twice this plus 5 seconds.
        max_concurrent_refreshes: Refreshes in flight at once in this process, at most. When every one is
            taken (many sessions due at once, after an outage or a deploy), a session whose access token is
            still valid is served with it and refreshes on a later request; an expired one waits its turn.
        post_logout_redirect: The path the browser goes to after signing out.
        rp_initiated_logout: Also end the user's session at the provider after signing out, when it has an
            ``end_session_endpoint``.
        private_cache_headers: Add ``Cache-Control: private`` and ``Vary: Cookie`` to the app's responses to
            signed-in requests, so no shared cache serves one user's page to another; a ``Cache-Control``
            the app sets is kept, a ``Vary`` it sets gets ``Cookie`` added.
        session_record_format: The format sessions are written in: ``2`` (an array, read in less time), or
            ``1`` (an object, what the guard wrote before format 2) while processes of a version before
            format 2 still share the store: during a rolling deploy onto this version, and until a
            rollback to one before it is ruled out. Both formats are always read.
        offline: Offline access, ``OfflineAccess(...)``: each user's refresh token is kept in an offline
            record (sealed with ``server_keys``) that sessions and the token manager (``guard.tokens()``)
            share, so background jobs get the user's tokens (docs/background-jobs.md). ``None``: off. With
            ``providers=``, give it per provider: ``Provider(offline=...)``.
        server_keys: Keys that seal what the servers keep without a cookie to key it (offline grants,
            client-credentials tokens): 32 or more random characters each; the last encrypts, all decrypt.
            Every process (web and workers) needs the same list. Needed by ``offline`` and
            ``guard.tokens().client_credentials()``.
        on_login: The app's say at sign-in: a function (plain or async) that gets a :class:`SignIn` (the
            provider's name, the claims, the tokens, the request) once per sign-in, after the code
            exchange and the identity checks, and returns ``SignInAccepted(user_id=..., claims=...)`` (the
            app's own user id and up to 4 KiB of JSON claims, kept in the session: ``Identity.user_id``,
            ``Identity.app_claims``), ``SignInRefused("why")`` (the user sees why on a 403 page, API
            clients get JSON; no session) or ``None`` (accepted). If it raises or returns something else,
            the error is logged and the sign-in refused; so is an async hook that takes longer than
            ``http_timeout`` (a plain one runs on the event loop: keep it quick). Duplicate callbacks get
            the recorded outcome: it never runs twice for one code (docs/sign-in.md).
        login_params: What a login link may ask of a provider per request, for providers whose own
            ``Provider(login_params=...)`` is ``None``: ``LoginParams(scopes=..., login_hint=True,
            prompt=..., max_age=True, acr_values=...)``. ``None``: nothing; the login route sends no
            parameter a link carries beyond ``next`` and ``provider``. Build links with
            :meth:`login_url`; a step-up (``max_age``, ``acr_values``) is checked against the returned ID
            token (docs/sign-in.md).
        on_event: A callable (plain or async) that gets a :class:`GuardEvent` for each sign-in, code
            exchange, duplicate callback absorbed, refresh (made or shared), refused refresh, re-login,
            sign-out, ended session and store error; for metrics and alerts. Its errors are logged, not
            raised.
        telemetry: Metrics and traces: ``asgi_oauth_guard.otel.GuardTelemetry()`` (the ``otel`` extra)
            reports to OpenTelemetry. It gets every event before ``on_event``, and spans around the callback,
            the refresh, the wait for the refresh lock and the token request (docs/observability.md).
            ``None``: nothing is reported, and nothing of OpenTelemetry is imported.
        clock: The time in epoch seconds, for token expiry; tests pass a ``FakeClock``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client_id: str = "",
        client_secret: str = "",
        secret_key: str | Sequence[str],
        issuer: str | None = None,
        provider: Provider | None = None,
        providers: Sequence[Provider] | None = None,
        client_auth: ClientAuthMethod = "client_secret_basic",
        client_key: str | Mapping[str, Any] | None = None,
        id_token_signed_response_alg: str | None = None,
        fetch_userinfo: bool | Literal["body"] = False,
        scopes: Sequence[str] = ("openid", "email", "profile"),
        authorize_params: Mapping[str, str] | None = None,
        store: Store | None = None,
        http_client: httpx.AsyncClient | None = None,
        redirect_uri: str | None = None,
        public_url: str | None = None,
        trusted_proxies: Sequence[str] = (),
        allowed_origins: Sequence[str] = (),
        login_path: str = "/auth/login",
        callback_path: str = "/auth/callback",
        logout_path: str = "/auth/logout",
        backchannel_logout_path: str | None = "/auth/backchannel-logout",
        require_login: bool | Sequence[str] = False,
        public_paths: Sequence[str] = (),
        api_prefixes: Sequence[str] = ("/api/",),
        relogin: ReloginMode | ReloginHandler = "auto",
        pages: PageHook | None = None,
        page_texts: Mapping[str, str] | None = None,
        cookie_name: str | None = None,
        cookie_secure: bool | None = None,
        cookie_domain: str | None = None,
        cookie_path: str | None = None,
        cookie_same_site: SameSite = "lax",
        session_max_age: float | None = None,
        session_idle_timeout: float | None = 8 * 3600,
        session_ttl: float | None = None,
        max_sessions_per_user: int = 100,
        transaction_ttl: float = 600,
        duplicate_window: float = 30,
        max_transactions_per_browser: int = 5,
        code_lifetime: float = 60,
        refresh_leeway: float = 60,
        http_timeout: float = 10,
        max_concurrent_refreshes: int = 32,
        post_logout_redirect: str = "/",
        rp_initiated_logout: bool = False,
        private_cache_headers: bool = True,
        session_record_format: Literal[1, 2] = 2,
        offline: OfflineAccess | None = None,
        server_keys: Sequence[str] | None = None,
        on_login: LoginHook | None = None,
        login_params: LoginParams | None = None,
        on_event: EventHook | None = None,
        telemetry: Telemetry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = s = GuardSettings(
            client_id=client_id,
            client_secret=client_secret,
            secret_key=secret_key,
            issuer=issuer,
            provider=provider,
            providers=providers,
            client_auth=client_auth,
            client_key=client_key,
            id_token_signed_response_alg=id_token_signed_response_alg,
            fetch_userinfo=fetch_userinfo,
            scopes=scopes,
            authorize_params=authorize_params,
            store=store,
            http_client=http_client,
            redirect_uri=redirect_uri,
            public_url=public_url,
            trusted_proxies=trusted_proxies,
            allowed_origins=allowed_origins,
            login_path=login_path,
            callback_path=callback_path,
            logout_path=logout_path,
            backchannel_logout_path=backchannel_logout_path,
            require_login=require_login,
            public_paths=public_paths,
            api_prefixes=api_prefixes,
            relogin=relogin,
            pages=pages,
            page_texts=page_texts,
            cookie_name=cookie_name,
            cookie_secure=cookie_secure,
            cookie_domain=cookie_domain,
            cookie_path=cookie_path,
            cookie_same_site=cookie_same_site,
            session_max_age=session_max_age,
            session_idle_timeout=session_idle_timeout,
            session_ttl=session_ttl,
            max_sessions_per_user=max_sessions_per_user,
            transaction_ttl=transaction_ttl,
            duplicate_window=duplicate_window,
            max_transactions_per_browser=max_transactions_per_browser,
            code_lifetime=code_lifetime,
            refresh_leeway=refresh_leeway,
            http_timeout=http_timeout,
            max_concurrent_refreshes=max_concurrent_refreshes,
            post_logout_redirect=post_logout_redirect,
            rp_initiated_logout=rp_initiated_logout,
            private_cache_headers=private_cache_headers,
            session_record_format=session_record_format,
            offline=offline,
            server_keys=server_keys,
            on_login=on_login,
            login_params=login_params,
            on_event=on_event,
            telemetry=telemetry,
            clock=clock,
        )
        self.app = app
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=http_timeout)
        self._clock = clock
        self.store: Store = store if store is not None else MemoryStore()
        on_event = with_telemetry(on_event, telemetry)
        tracing = telemetry if telemetry is not None else NO_TELEMETRY
        checked = CheckedStore(self.store, on_event=on_event)
        self._keyring = Keyring(s.secret_keys)
        self.providers = Providers(
            [
                ProviderClient(p, http=self._http, timeout=http_timeout, clock=clock)
                for p in s.configured_providers
            ]
        )
        """The guard's providers by name (``guard.providers["google"]``), the first the default."""
        self.client = self.providers.default
        """The default provider's client (with one provider, the provider's)."""
        self._index = SessionIndex(checked, self._keyring, clock=clock, max_per_user=max_sessions_per_user)
        self._sessions = Sessions(
            checked,
            lifetime=Lifetime(max_age=s.max_age, idle_timeout=session_idle_timeout),
            clock=clock,
            index=self._index,
            record_format=s.session_record_format,
        )
        self._ender = SessionEnder(sessions=self._sessions, index=self._index, on_event=on_event)
        self._on_event = on_event
        self._private = private_cache_headers
        self._trust = s.trust
        self._host_matters = public_url is None
        self._refresher = Refresher(
            store=checked,
            sessions=self._sessions,
            providers=self.providers,
            clock=clock,
            leeway=refresh_leeway,
            lease=http_timeout * 2 + 5,
            # A waiter outlasts the lease of a holder that died, then the next holder's token request.
            wait=(http_timeout * 2 + 5) + http_timeout + 1,
            max_concurrent=max_concurrent_refreshes,
            on_event=on_event,
            telemetry=tracing,
        )
        self._offline: dict[str, OfflineGrants] = {}
        for client in self.providers:
            if client.provider.offline is not None:
                assert s.sealing_keys is not None
                self._offline[client.name] = OfflineGrants(
                    settings=client.provider.offline,
                    store=checked,
                    keys=s.sealing_keys,
                    refresher=self._refresher,
                    sessions=self._sessions,
                    client=client,
                    provider=client.name,
                    clock=clock,
                    leeway=refresh_leeway,
                    on_event=on_event,
                )
        self._refresher.offline = self._offline
        self._credentials: dict[str, ClientCredentials] = {}
        for each in self.providers if s.sealing_keys is not None else ():
            assert s.sealing_keys is not None
            self._credentials[each.name] = ClientCredentials(
                store=checked,
                keys=s.sealing_keys,
                client=each,
                refresher=self._refresher,
                provider=each.name,
                clock=clock,
                leeway=refresh_leeway,
            )
        self._cookies = CookieJar(
            session_name=s.session_cookie_name,
            path=cookie_path,
            domain=cookie_domain,
            secure=s.cookie_secure,
            same_site=cookie_same_site,
            session_max_age=int(s.max_age),
            binding_max_age=int(transaction_ttl),
            trust=s.trust,
        )
        self.login_path = login_path
        self.redirect_uri = s.redirect_uri
        """The pinned redirect URI (from ``redirect_uri`` or ``public_url``), or ``None``."""
        self._api_prefixes = Prefixes("api_prefixes", s.api_prefixes)
        self._paths = PathRules(
            require_all=s.require_login is True,
            require=() if isinstance(s.require_login, bool) else s.require_login,
            public=s.public_paths,
        )
        self._pages = Pages(hook=pages, texts=page_texts, api_prefixes=self._api_prefixes)
        self._relogin = Relogin(
            mode=relogin, login_path=login_path, api_prefixes=self._api_prefixes, pages=self._pages
        )
        origins = OwnOrigins(public_url=s.redirect_uri, allowed=s.allowed_origins, trust=s.trust)
        self._origins = origins
        # A MemoryStore in one of several worker processes loses sign-ins and sessions: say so.
        self._advice = WorkerAdvice(active=isinstance(self.store, MemoryStore))
        self._flows = Flows(
            providers=self.providers,
            store=checked,
            sessions=self._sessions,
            refresher=self._refresher,
            keyring=self._keyring,
            cookies=self._cookies,
            relogin=self._relogin,
            sign_out=SignOutGate(
                origins=origins, keyring=self._keyring, logout_path=logout_path, pages=self._pages
            ),
            pages=self._pages,
            redirect_uri=s.redirect_uri,
            public_base=public_url.rstrip("/") if public_url is not None else None,
            callback_path=callback_path,
            login_path=login_path,
            trust=s.trust,
            transaction_ttl=transaction_ttl,
            max_transactions=max_transactions_per_browser,
            code_lifetime=code_lifetime,
            duplicate_wait=http_timeout + 5,
            duplicate_window=duplicate_window,
            post_logout_redirect=post_logout_redirect,
            rp_initiated_logout=rp_initiated_logout,
            api_prefixes=self._api_prefixes,
            clock=clock,
            on_event=on_event,
            ender=self._ender,
            advice=self._advice,
            telemetry=tracing,
            offline=self._offline,
            on_login=OnLogin(on_login, timeout=http_timeout),
            login_params=login_params,
        )
        self._links = LoginLinks(
            providers=self.providers,
            login_path=login_path,
            api_prefixes=self._api_prefixes,
            allowed=login_params if login_params is not None else LoginParams(),
            clock=clock,
        )
        self._routes: dict[str, Route] = {
            login_path: _without_body(self._flows.login),
            callback_path: _without_body(self._flows.callback),
            logout_path: self._flows.logout,
        }
        self._callback_route = self._routes[callback_path]
        if backchannel_logout_path is not None:
            self._routes[backchannel_logout_path] = BackchannelLogout(
                providers=self.providers, store=checked, ender=self._ender, clock=clock
            ).serve
        self.scopes: tuple[str, ...] = tuple(s.scopes)
        """The scopes the guard asks for."""
        self._startup = Startup(
            providers=self.providers,
            warnings=setting_warnings(
                redirect_uri=s.redirect_uri, same_site=cookie_same_site, secure=s.cookie_secure
            ),
            aclose=self.aclose if self._owns_http else None,
        )
        self._started = False
        self._anonymous = GuardState(guard=self, identity=None)
        self._published = Published(
            guard=self,
            lifetime=self._sessions.lifetime,
            refresher=self._refresher,
            default_provider=self.providers.default.name,
        )
        self._served = self._published.by_cookie
        self._cookie_prefix = (self._cookies.session_name + "=").encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            if scope["type"] != "lifespan":
                # Fail closed: a protocol the guard does not know could reach the app unguarded.
                raise RuntimeError(f"OAuthGuard serves 'http' and 'websocket' scopes, not {scope['type']!r}")
            self._started = True
            await self._startup.serve(self.app, scope, receive, send)
            return
        if not self._started:  # a server without lifespan: say at the first request what startup says
            self._started = True
            self._startup.announce()
        # The hot path (a signed-in request, nothing due) is written out here, without helper frames:
        # over the wire every Python call costs several times what it does in a tight loop.
        path: str = scope["path"] if not scope.get("root_path") else route_path(scope)
        route = self._routes.get(path)
        if scope["type"] == "websocket":
            refused = self._foreign_websocket(scope, route is not None)
            if refused is not None:
                await refused(scope, receive, send)
                return
        elif route is not None:
            await self._serve_own(route, scope, receive, send)
            return
        state = self._anonymous
        reason: Reason | None = Reason.login_required
        value = find_cookie(scope["headers"], self._cookie_prefix)
        if value:
            served = self._served.get(value)
            try:
                if served is None:
                    state, reason = await self._first_sight(value)
                else:
                    try:  # Sessions.read, written out: one coroutine fewer on the hot path
                        blob = await self._sessions.inner.get(served.store_key)
                    except Exception as exc:
                        raise await self._sessions.failed(exc) from None
                    # What was published for this cookie, when the store holds the very bytes it was built
                    # from, and the clock is before the first moment at which the session would end, want
                    # a refresh or want its use written down: served as it is.
                    if (blob is served.blob or blob == served.blob) and self._clock() < served.until:
                        state, reason = served.state, None
                        served.used = True
                    else:
                        state, reason = await self._signed_in(value, served.sid, served.key, blob)
            except (ReloginRequired, ProviderUnavailable, StoreUnavailable) as exc:
                if scope["type"] == "websocket":
                    answer = await self._websocket_error(scope, exc)
                else:
                    answer = await self.response_for(Request(scope), exc)
                await answer(scope, receive, send)
                return
            except ConfigurationError as exc:
                logger.error("sign-in is misconfigured: %s", exc)
                if scope["type"] == "websocket":  # no page to show a socket: refused as when unavailable
                    answer = await self._websocket_error(
                        scope, ProviderUnavailable("sign-in is misconfigured")
                    )
                else:
                    answer = own(await self._pages.misconfigured(Request(scope)))
                await answer(scope, receive, send)
                return
        if state.identity is not None:
            if self._private:
                send = private_send(send)
        elif self._paths.requires_login(path):
            assert reason is not None
            if scope["type"] == "websocket":
                response = self.websocket_refusal(scope, reason)
            else:
                response = await self.relogin_response(Request(scope), reason)
            await response(scope, receive, send)
            return
        elif reason is not None and reason is not Reason.login_required:
            state = GuardState(guard=self, identity=None, reason=reason)
        scope[SCOPE_KEY] = state
        # Starlette's request.user and request.auth, unless an authentication middleware outside set them.
        if "user" not in scope:
            scope["user"] = state.user
            scope["auth"] = state.auth
        token = _state.set(state)
        try:
            await self.app(scope, receive, send)
        finally:
            _state.reset(token)

    async def _first_sight(self, cookie: bytes) -> tuple[GuardState, Reason | None]:
        """:meth:`_signed_in` for a session cookie nothing is remembered for: verified (one HMAC), then its
        session read."""
        opened = self._keyring.open_session_cookie(cookie)
        if opened is None:
            return self._anonymous, Reason.session_expired
        sid, key = opened
        try:  # Sessions.read, written out (one coroutine fewer)
            blob = await self._sessions.inner.get(SESSION_PREFIX + sid)
        except Exception as exc:
            raise await self._sessions.failed(exc) from None
        return await self._signed_in(cookie, sid, key, blob)

    async def _signed_in(
        self, cookie: bytes, sid: str, key: bytes, blob: bytes | None
    ) -> tuple[GuardState, Reason | None]:
        """The state to publish for the session the store holds as ``blob``, which the hot path could not
        serve as it was: the anonymous state and why, or the session after its lifetime checks (maybe
        refreshed or touched), remembered for ``cookie`` when it is the version the store holds."""
        raw = self._sessions.record(sid, key, blob)
        if raw is not None:
            # A session that needs no check now (the most of them) is published from its record as read.
            quiet = self._published.quiet(raw, (sid, key), self._clock())
            if quiet is not None:
                assert blob is not None
                self._published.remember(cookie, blob, *quiet)
                return quiet[0], None
        session = self._sessions.session_of(raw)
        if session is None:
            self._published.forget(cookie)
            self._sessions.refused(raw)
            self._advice.unknown("session")
            return self._anonymous, Reason.session_expired
        until = self._published.until(session)
        # Before ``until`` the lifetime checks all say no (tests/test_hot_path.py proves each): skipped.
        kept = session if self._clock() < until else await self._keep(session, key)
        if kept.tokens is None:
            self._published.forget(cookie)
            return self._anonymous, Reason.refresh_rejected
        state = self._published.state_of(kept, (sid, key))
        if kept is session:
            assert blob is not None
            self._published.remember(cookie, blob, state, until)
        else:  # a refresh or a touch wrote a new version: the next request reads it and remembers that
            self._published.renewed(cookie)
        return state, None

    async def _keep(self, session: Session, key: bytes) -> Session:
        """The session as this request may use it: ended if it is too old or idle, refreshed if its token
        is due, and its use written down if the last record of it is over a minute old."""
        now = self._clock()
        ended = self._sessions.lifetime.ended(session, now)
        if ended is not None:
            raise await self._refresher.expire(session, ended)
        if session.tokens is not None and self._refresher.due(session):
            return await self._fresh(session, key)  # a refresh writes last_seen too
        if self._sessions.lifetime.touch_due(session, now):
            return await self._refresher.touch(session, key)
        return session

    async def _fresh(self, session: Session, key: bytes) -> Session:
        """Refresh a due token. If the provider is down, keep serving a token that is still valid."""
        try:
            return await self._refresher.refresh(session, key)
        except ProviderUnavailable as exc:
            assert session.tokens is not None
            expires_at = session.tokens.expires_at
            if expires_at is not None and expires_at > self._clock():
                logger.warning("refresh failed (%s); serving the still-valid access token", exc)
                return session
            raise

    async def _serve_own(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        try:
            # Without public_url the guard builds URLs from the Host: one it could not use is refused
            # before the route does anything (no session deleted, no token revoked, no code spent).
            if self._host_matters:
                request_origin(scope, self._trust)
            response = await route(scope, receive)
        except BadRequest as exc:
            sign_in = login_url(root_path(scope), self.login_path, next_path=root_path(scope) + "/")
            # Only the callback carries the provider's response; a login or logout link is the app's own.
            text = "failed.bad_request" if route is self._callback_route else "failed.bad_link"
            response = await self._pages.bad_request(
                request, str(exc), page_message_id=text, sign_in_url=sign_in
            )
        except (ProviderUnavailable, StoreUnavailable) as exc:
            logger.warning("answering 503 on %s: %s", scope["path"], exc)
            response = await self._pages.unavailable(request, "unavailable.provider", retry_after=5)
        except ConfigurationError as exc:
            logger.error("sign-in is misconfigured: %s", exc)
            response = await self._pages.misconfigured(request)
        await own(response)(scope, receive, send)

    def _foreign_websocket(self, scope: Scope, own_route: bool) -> ASGIApp | None:
        """A refusal for a handshake that comes from another site's page (cross-site WebSocket hijacking:
        the browser sends the user's cookies along), or that asks for one of the guard's own routes.

        A handshake without ``Origin`` passes: every browser sends one (RFC 6455 requires it of them), so
        it comes from no browser, which no other site drives; its cookie, if any, is its own."""
        if own_route:
            return websocket.refusal(
                status=404, body={"error": "not_found"}, close_code=websocket.CLOSE_POLICY
            )
        if self._origins.verdict(scope) == "cross":
            logger.warning("refused a WebSocket handshake from another origin on %s", scope["path"])
            return websocket.refusal(
                status=403, body={"error": "forbidden_origin"}, close_code=websocket.CLOSE_POLICY
            )
        return None

    def websocket_refusal(
        self,
        scope: Scope,
        error: Reason | ReloginRequired | ProviderUnavailable | StoreUnavailable = Reason.login_required,
    ) -> ASGIApp:
        """The refusal of a WebSocket handshake, before the app accepts it: for a missing or ended sign-in
        a 401 JSON like an API call's (where the server supports denial responses), else a close with code
        1008 and the reason; for a provider or store outage a 503 with ``Retry-After``, else close code
        1013 (the session is kept). Integrations answer websocket endpoints with this."""
        if isinstance(error, (ProviderUnavailable, StoreUnavailable)):
            return websocket.refusal(
                status=503,
                body={"error": "temporarily_unavailable"},
                close_code=websocket.CLOSE_TRY_AGAIN,
                headers={"Retry-After": "5"},
            )
        reason = error.reason if isinstance(error, ReloginRequired) else error
        url = login_url(root_path(scope), self.login_path, next_path="/", reason=reason)
        body = {"error": "login_required", "reason": reason.value, "login_url": url}
        return websocket.refusal(status=401, body=body, close_code=websocket.CLOSE_POLICY)

    async def _websocket_error(
        self, scope: Scope, error: ReloginRequired | ProviderUnavailable | StoreUnavailable
    ) -> ASGIApp:
        if isinstance(error, ReloginRequired):
            await emit(self._on_event, GuardEvent(kind="relogin", reason=error.reason, detail=error.detail))
        else:
            logger.warning("refusing a WebSocket handshake with 503: %s", error)
        return self.websocket_refusal(scope, error)

    def login_url(
        self,
        *,
        next: str = "/",
        provider: str | None = None,
        scopes: Sequence[str] = (),
        login_hint: str | None = None,
        prompt: Sequence[str] | str | None = None,
        max_age: int | None = None,
        acr_values: Sequence[str] = (),
        root_path: str = "",
    ) -> str:
        """A link to the login route that signs in and comes back to ``next``, asking the provider for
        more ``scopes`` (incremental consent), a ``login_hint``, a ``prompt``, a sign-in no older than
        ``max_age`` seconds or one of ``acr_values`` (step-up; checked in the returned ID token).

        Only what the provider's ``login_params`` (or the guard's) allow: asking for more raises
        :class:`ConfigurationError`, as the login route would not send it. ``provider``: its name (needed
        with several providers when asking for anything; without, the link offers the chooser).
        ``root_path``: where the app is mounted (``request.scope["root_path"]``)."""
        return self._links.url(
            next=next,
            provider=provider,
            root_path=root_path,
            scopes=scopes,
            login_hint=login_hint,
            prompt=prompt,
            max_age=max_age,
            acr_values=acr_values,
        )

    def needs_step_up(
        self, identity: Identity, *, max_age: int | None = None, acr_values: Sequence[str] = ()
    ) -> bool:
        """Whether ``identity`` signed in longer than ``max_age`` seconds ago (its ``auth_time``, with a
        minute for the provider's clock), or with an ``acr`` not among ``acr_values``: then answer
        :meth:`step_up_response`. The integrations do both (``RequireRecentSignIn``)."""
        return self._links.needs_step_up(identity, max_age=max_age, acr_values=acr_values)

    def step_up_response(
        self,
        request: Request,
        identity: Identity,
        *,
        max_age: int | None = None,
        acr_values: Sequence[str] = (),
    ) -> ASGIApp:
        """The answer for a route that demands a fresher or stronger sign-in than ``identity``'s: page
        loads go (303) to a sign-in asking the provider for it, then back; API calls get a 401
        ``insufficient_user_authentication`` (RFC 9470) with the ``login_url``."""
        return own(self._links.response(request, identity, max_age=max_age, acr_values=acr_values))

    async def relogin_response(self, request: Request, reason: Reason = Reason.login_required) -> ASGIApp:
        """The configured re-login response for ``request``: what integrations answer for anonymous users."""
        return own(await self._relogin.response(request, reason))

    async def response_for(
        self, request: Request, error: ReloginRequired | ProviderUnavailable | StoreUnavailable
    ) -> ASGIApp:
        """The answer to a guard error raised while serving ``request``, in the guard or in the app's own
        code (``GuardAuth`` raises them): the re-login response, or a 503 with ``Retry-After`` when the
        provider or the store is down (the session is kept). Integrations answer with this."""
        if isinstance(error, ReloginRequired):
            await emit(self._on_event, GuardEvent(kind="relogin", reason=error.reason, detail=error.detail))
            return own(await self._relogin.response(request, error.reason))
        logger.warning("answering 503: %s", error)
        return own(await self._pages.unavailable(request, "unavailable.session_kept", retry_after=5))

    async def refresh_now(self, state: GuardState, *, rejected_token: str) -> Identity:
        """Refresh this request's session because a resource server refused ``rejected_token``."""
        if state.handle is None:
            raise ReloginRequired(Reason.login_required)
        sid, key = state.handle
        session = await self._sessions.load(sid, key)
        if session is None or session.tokens is None:
            raise ReloginRequired(Reason.session_expired)
        ended = self._sessions.lifetime.ended(session, self._clock())
        if ended is not None:
            raise await self._refresher.expire(session, ended)
        refreshed = await self._refresher.refresh(session, key, rejected_token=rejected_token)
        published = self._published.state_of(refreshed, state.handle).identity
        assert published is not None
        return published

    async def end_sessions(
        self,
        *,
        sub: str | None = None,
        sid: str | None = None,
        provider: str | None = None,
        offline: bool | None = None,
    ) -> int:
        """End sessions, in every worker: all of user ``sub`` (a password change, a closed account, an
        admin's action), or those of the provider's session ``sid`` (the ID token's ``sid`` claim; with
        ``sub`` too, those of both). Returns how many ended. Their cookies get the re-login response;
        the refresh tokens are not revoked at the provider (they are sealed with keys only the cookies hold).

        ``provider``: the name of the provider ``sub`` and ``sid`` belong to (they mean something only
        there); needed when the guard has several.
        ``offline``: also end user ``sub``'s offline grant, revoking it at the provider (``None``: as
        ``OfflineAccess(end_with_sessions=...)`` says). Needs ``sub``.
        """
        client = self._provider_named(provider)
        if sid is not None:
            ended = await self._ender.end_op_session(sid, sub=sub, provider=client, cause="app")
        elif sub is None:
            raise TypeError("end_sessions() needs sub= or sid=")
        else:
            ended = await self._ender.end_user(sub, provider=client, cause="app")
        grants = self._offline.get(client.name)
        if grants is not None and sub is not None:
            if offline if offline is not None else grants.settings.end_with_sessions:
                await grants.end(sub)
        elif offline:
            raise TypeError("end_sessions(offline=True) needs sub= and a provider with offline access")
        return ended

    def tokens(self) -> TokenManager:
        """The token manager, for code outside requests (jobs, workers, cron): ``async with guard.tokens()
        as tm: token = await tm.for_user(sub)``. See :class:`TokenManager` and docs/background-jobs.md."""
        return TokenManager(offline=self._offline, credentials=self._credentials, default=self.client.name)

    async def sessions_of(self, sub: str, *, provider: str | None = None) -> list[SessionInfo]:
        """The user's live sessions, oldest first: when each started, was last used, at which issuer.
        Across workers (read from the store); no token is in them. ``provider`` as in :meth:`end_sessions`."""
        return await self._ender.sessions_of(sub, provider=self._provider_named(provider))

    def _provider_named(self, name: str | None) -> ProviderClient:
        if name is None and len(self.providers) > 1:
            raise TypeError(
                f"name the provider (provider= one of {', '.join(self.providers.names)}): a user's sub "
                "means something only at its provider"
            )
        client = self.providers.get(name)
        if client is None:
            raise KeyError(f"no provider named {name!r}; this guard has {', '.join(self.providers.names)}")
        return client

    async def check(self) -> None:
        """Fetch each provider's discovery document and keys now, and log the startup warnings.

        Lifespan startup does this by itself (a mistake fails startup); on a server without lifespan, call
        it at startup. Raises :class:`ConfigurationError` naming the fix for a mistake that cannot heal
        (a wrong issuer, a 404, an answer that is not JSON) and :class:`ProviderUnavailable` when the
        provider does not answer: requests that need it get a 503 until it does.
        """
        await self._startup.check()

    async def aclose(self) -> None:
        """Close the HTTP client if the guard created it (the app's lifespan shutdown does this too)."""
        if self._owns_http:
            await self._http.aclose()


Route = Callable[[Scope, Receive], Awaitable[ASGIApp]]


def _without_body(route: Callable[[Scope], Awaitable[ASGIApp]]) -> Route:
    async def serve(scope: Scope, receive: Receive) -> ASGIApp:
        return await route(scope)

    return serve
