"""What the examples share: settings from the environment, and the embedded provider of the demo.

Environment (the example apps contract, examples/README.md):

- ``OAUTH_ISSUER``: the provider's issuer; its endpoints come from OIDC discovery. Or give them yourself:
  ``OAUTH_AUTHORIZATION_ENDPOINT`` and ``OAUTH_TOKEN_ENDPOINT`` (and optionally ``OAUTH_JWKS_URI``,
  ``OAUTH_USERINFO_ENDPOINT``, ``OAUTH_REVOCATION_ENDPOINT``, ``OAUTH_END_SESSION_ENDPOINT``); then
  ``OAUTH_ISSUER`` is only the expected ``iss`` of ID tokens.
- ``OAUTH_CLIENT_ID``, ``OAUTH_CLIENT_SECRET``, ``OAUTH_SCOPES`` (default ``openid email profile``).
- ``OAUTH_REDIRECT_URI``, else ``PUBLIC_URL`` (the callback is ``PUBLIC_URL/auth/callback``), else the URL
  of each login request.
- ``GUARD_SECRET_KEY`` (32+ characters), ``GUARD_STORE``: ``memory://``, ``redis://host:port/db``,
  ``redis+cluster://host:port`` (any node), ``redis+sentinel://host:port[,host:port...]/service_name[/db]``
  or ``postgresql://user[:password]@host:port/dbname`` (``store_from_url``).

With neither ``OAUTH_ISSUER`` nor endpoints, an app runs against the embedded test provider mounted at
``/idp`` in the same app (the demo): the guard reaches it in-process, so it works offline. Then
``DEMO_AUTO_APPROVE=1`` skips its sign-in page and ``DEMO_TOKEN_LIFETIME`` sets the access tokens'
lifetime in seconds (default 30, so refreshes happen while you watch).

``GUARD_METRICS=1`` reports the guard's OpenTelemetry metrics on ``/metrics`` for Prometheus
(``examples/_metrics.py``; needs ``opentelemetry-sdk`` and ``opentelemetry-exporter-prometheus``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_oauth_guard import (
    ConfigurationError,
    GuardAuth,
    Provider,
    ReloginRequired,
    Store,
    store_from_url,
)
from asgi_oauth_guard.testing import OAuthTestProvider

from ._demo import Demo, DemoClock, Journal

if TYPE_CHECKING:
    from ._metrics import Prometheus

__all__ = ["Settings", "Setup", "setup"]

logger = logging.getLogger("asgi_oauth_guard.examples")

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-client-secret-not-for-production"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
DEFAULT_SCOPES = ("openid", "email", "profile")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    issuer: str | None = None
    provider: Provider | None = None
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    redirect_uri: str | None = None
    public_url: str | None = None
    secret_key: str
    store_url: str = "memory://"
    demo_auto_approve: bool = False
    demo_token_lifetime: float = 30.0
    metrics: bool = False

    @property
    def embedded(self) -> bool:
        """No provider configured: run against the embedded test provider (the demo)."""
        return self.issuer is None and self.provider is None

    @property
    def embedded_issuer(self) -> str:
        base = self.public_url or _origin(self.redirect_uri) or DEFAULT_PUBLIC_URL
        return base.rstrip("/") + "/idp"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            return env.get(name, "").strip() or None

        def need(name: str) -> str:
            value = get(name)
            if value is None:
                raise ConfigurationError(f"set {name} (see examples/_settings.py)")
            return value

        issuer = get("OAUTH_ISSUER")
        provider = None
        authorization, token = get("OAUTH_AUTHORIZATION_ENDPOINT"), get("OAUTH_TOKEN_ENDPOINT")
        if authorization or token:
            provider = Provider(
                issuer=issuer or _origin(need("OAUTH_AUTHORIZATION_ENDPOINT")) or "",
                authorization_endpoint=need("OAUTH_AUTHORIZATION_ENDPOINT"),
                token_endpoint=need("OAUTH_TOKEN_ENDPOINT"),
                jwks_uri=get("OAUTH_JWKS_URI"),
                userinfo_endpoint=get("OAUTH_USERINFO_ENDPOINT"),
                revocation_endpoint=get("OAUTH_REVOCATION_ENDPOINT"),
                end_session_endpoint=get("OAUTH_END_SESSION_ENDPOINT"),
            )
            issuer = None
        embedded = issuer is None and provider is None

        def pick(name: str, demo: str) -> str:
            return (get(name) or demo) if embedded else need(name)

        redirect_uri = get("OAUTH_REDIRECT_URI")
        scopes = get("OAUTH_SCOPES")
        lifetime = get("DEMO_TOKEN_LIFETIME")
        return cls(
            issuer=issuer,
            provider=provider,
            client_id=pick("OAUTH_CLIENT_ID", DEMO_CLIENT_ID),
            client_secret=pick("OAUTH_CLIENT_SECRET", DEMO_CLIENT_SECRET),
            scopes=tuple(re.split(r"[\s,]+", scopes)) if scopes else DEFAULT_SCOPES,
            redirect_uri=redirect_uri,
            public_url=None if redirect_uri else get("PUBLIC_URL"),
            # The embedded provider forgets everything on restart, so a fresh key per process loses nothing.
            secret_key=pick("GUARD_SECRET_KEY", secrets.token_urlsafe(32)),
            store_url=get("GUARD_STORE") or "memory://",
            demo_auto_approve=get("DEMO_AUTO_APPROVE") in ("1", "true", "yes"),
            demo_token_lifetime=float(lifetime) if lifetime else 30.0,
            metrics=get("GUARD_METRICS") in ("1", "true", "yes"),
        )


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


@dataclasses.dataclass(kw_only=True)
class Setup:
    """One example app's resources: the HTTP client and store it creates (and closes), and the embedded
    provider when there is one."""

    settings: Settings
    idp: OAuthTestProvider | None
    http: httpx.AsyncClient
    store: Store
    clock: Callable[[], float]
    prometheus: Prometheus | None = None  # with GUARD_METRICS=1
    demo: Demo | None = None  # with the embedded provider: the event timeline and the experiments

    def guard_options(self) -> dict[str, Any]:
        """The keyword settings of :class:`~asgi_oauth_guard.OAuthGuard` for this app."""
        s = self.settings
        options: dict[str, Any] = {
            "client_id": s.client_id,
            "client_secret": s.client_secret,
            "secret_key": s.secret_key,
            "scopes": s.scopes,
            "store": self.store,
            "http_client": self.http,
            "redirect_uri": s.redirect_uri,
            "public_url": s.public_url,
            "clock": self.clock,
        }
        if self.prometheus is not None:
            options["telemetry"] = self.prometheus.telemetry
        if self.demo is not None:
            options["on_event"] = self.demo.journal.record
        if self.idp is not None:
            options["issuer"] = self.idp.issuer
            options["refresh_leeway"] = demo_leeway(s)
        elif s.provider is not None:
            options["provider"] = s.provider
        else:
            options["issuer"] = s.issuer
        return options

    def serve(self, guard: ASGIApp) -> ASGIApp:
        """The app to serve: the guarded app and the embedded provider at ``/idp``.

        The lifespan goes to the guard, so a provider that cannot work stops the server at startup with
        the fix named; this setup closes its client and store at shutdown."""
        routes: list[BaseRoute] = [Mount("/idp", app=self.idp)] if self.idp is not None else []
        if self.prometheus is not None:
            routes.append(Route("/metrics", self.prometheus.endpoint))
        if self.demo is not None:
            self.demo.guard = guard
            routes += [
                Route("/demo/events", self.demo.events),
                Route("/demo/try/{name}", self.demo.run, methods=["POST"]),
            ]
        return _Served(Router(routes=routes, default=guard, redirect_slashes=False), guard, self)

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.prometheus is not None:
            self.prometheus.shutdown()
        aclose = getattr(self.store, "aclose", None)
        if aclose is not None:
            await aclose()

    # The demo's buttons: make the provider drop tokens, then call an API the way an app does.

    async def expire_token(self) -> None:
        """The provider expires the access token; the next API call gets 401 and GuardAuth refreshes it."""
        assert self.idp is not None
        self.idp.expire_access_tokens()
        await self._call_api()

    async def revoke_grant(self, sub: str) -> None:
        """The provider revokes the user's grant (as a password change does); the guard's refresh is refused,
        so the session loses its tokens and the user is asked to sign in again."""
        assert self.idp is not None
        self.idp.revoke_grants(sub)
        with contextlib.suppress(ReloginRequired):
            await self._call_api()

    async def _call_api(self) -> None:
        assert self.idp is not None
        response = await self.http.get(self.idp.issuer + "/userinfo", auth=GuardAuth())
        response.raise_for_status()


class _Served:
    """Requests go to the router (the provider at ``/idp``, the guarded app); the lifespan to the guard."""

    def __init__(self, app: ASGIApp, guard: ASGIApp, setup: Setup) -> None:
        self.app = app
        self._guard = guard
        self._setup = setup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        idp = self._setup.idp

        async def receive_closing() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self._setup.aclose()
            return message

        async def send_started(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and idp is not None:
                logger.warning(
                    "OAUTH_ISSUER is not set: signing in against the embedded test provider at %s "
                    "(a demo: set OAUTH_ISSUER, OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET for a real one)",
                    idp.issuer,
                )
            await send(message)

        await self._guard(scope, receive_closing, send_started)


def setup(
    settings: Settings | None = None,
    *,
    idp: OAuthTestProvider | None = None,
    clock: Callable[[], float] = time.time,
) -> Setup:
    """Read the settings (``Settings.from_env()`` by default) and create what an example app needs.

    Tests pass their own ``idp`` (the embedded provider) and ``clock``.
    """
    settings = settings if settings is not None else Settings.from_env()
    if settings.embedded and clock is time.time:
        clock = DemoClock()  # the experiments move it forward: "the token expired" is a click
    if settings.embedded and idp is None:
        idp = OAuthTestProvider(
            issuer=settings.embedded_issuer,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            clock=clock,
            access_token_ttl=settings.demo_token_lifetime,
            auto_approve=settings.demo_auto_approve,
        )
        idp.add_user("bob", email="bob@example.test", name="Bob")
    elif not settings.embedded:
        idp = None
    http = httpx.AsyncClient(transport=idp.transport()) if idp is not None else httpx.AsyncClient(timeout=10)
    demo = None
    if idp is not None:
        demo = Demo(idp=idp, journal=Journal(clock), clock=clock, leeway=demo_leeway(settings))
    prometheus = None
    if settings.metrics:
        from ._metrics import Prometheus  # the OpenTelemetry SDK, only when asked for

        prometheus = Prometheus.create()
    return Setup(
        settings=settings,
        idp=idp,
        http=http,
        store=store_from_url(settings.store_url),
        clock=clock,
        prometheus=prometheus,
        demo=demo,
    )


def demo_leeway(settings: Settings) -> float:
    """The refresh leeway with the embedded provider's short-lived tokens: a third of their lifetime."""
    return min(60.0, settings.demo_token_lifetime / 3)
