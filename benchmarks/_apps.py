"""The five apps under test, each with the same JSON endpoint ``/api/me``, and how a user signs in to each.

- ``bare``: Starlette, no session, no login; answers a constant of the same shape.
- ``session``: Starlette's ``SessionMiddleware`` (a signed cookie) holding the user.
- ``authlib``: the usual Authlib recipe: ``SessionMiddleware``, Authlib's Starlette client
  (``authlib.integrations.starlette_client.OAuth``) for login, the token kept in the session, and a
  refresh through that client when the token is (nearly) expired.
- ``guard-memory`` / ``guard-redis``: ``OAuthGuard`` with a ``MemoryStore`` / ``RedisStore``.

Every app talks to an in-process :class:`~asgi_oauth_guard.testing.OAuthTestProvider` through httpx.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Lifespan

from asgi_oauth_guard import MemoryStore, OAuthGuard, RedisStore, Store, current_identity
from asgi_oauth_guard.testing import OAuthTestProvider

with warnings.catch_warnings():
    # Authlib 1.9 warns about its httpx fallback and authlib.jose on import: expected here, not an error.
    warnings.simplefilter("ignore")
    from authlib.integrations.starlette_client import OAuth, OAuthError
    from authlib.oauth2.rfc6749 import OAuth2Token

ISSUER = "https://idp.bench.test"
CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-client-secret-0123456789"
SECRET_KEY = "bench-secret-key-that-is-long-enough-0123456789"
APP_URL = "http://app.bench.test"
PATH = "/api/me"

VARIANTS = ("bare", "session", "authlib", "guard-memory", "guard-redis")
LABELS = {
    "bare": "bare Starlette",
    "session": "Starlette + SessionMiddleware",
    "authlib": "Authlib recipe (session + refresh)",
    "guard-memory": "guard, MemoryStore",
    "guard-redis": "guard, RedisStore",
    "guard-before": "guard, MemoryStore, before (--baseline)",
}
# ``--baseline REV``: that commit's package, exported as ``asgi_oauth_guard_before`` into this directory
# (its imports are relative, so it runs beside the current one, in this process and in the servers).
BASELINE_DIR = "BENCH_BASELINE_DIR"
COOKIE_NAMES = {
    "guard-before": "guard_session",
    "session": "session",
    "authlib": "session",
    "guard-memory": "guard_session",
    "guard-redis": "guard_session",
    "guard-noop": "guard_session",
}


def answer(user: str, access_token: str, expires_at: float | None) -> dict[str, Any]:
    """The endpoint's JSON, about 1 KB as an API's answer usually is: the user, a token, a page of items."""
    return {
        "user": user,
        "access_token": access_token,
        "expires_at": expires_at,
        "profile": {"name": "Alice Example", "email": "alice@example.com", "locale": "en-US", "tz": "UTC"},
        "items": [
            {"id": i, "title": f"Quarterly report {i}", "status": "open", "updated": 1_733_000_000 + i}
            for i in range(12)
        ],
    }


# What the bare app answers: built per request like the others' answers, of the same shape and size. The
# expiry is a float of the form the guard's identity holds (a clock reading plus ``expires_in``): writing
# one as JSON costs about 6,800 instructions (CPython's float repr), an integer's a tenth of that, and with
# an integer here the bare app did less work than the apps it is compared with (before 2026-12-02).
EXPIRES_AT = 1_800_000_000.3187912
BARE_USER = ("alice", "x" * 43, EXPIRES_AT)


def make_provider(**settings: Any) -> OAuthTestProvider:
    return OAuthTestProvider(issuer=ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **settings)


# -- the apps ------------------------------------------------------------------------------------------


def bare_app(lifespan: Lifespan[Any] | None = None) -> Starlette:
    async def me(request: Request) -> Response:
        return JSONResponse(answer(*BARE_USER))

    return Starlette(routes=[Route(PATH, me)], lifespan=lifespan)


def session_app(lifespan: Lifespan[Any] | None = None) -> Starlette:
    async def me(request: Request) -> Response:
        user = request.session.get("user")
        if user is None:
            return JSONResponse({"error": "login_required"}, status_code=401)
        return JSONResponse(answer(user, "x" * 43, EXPIRES_AT))

    async def login(request: Request) -> Response:
        request.session["user"] = "alice"
        return RedirectResponse("/", status_code=303)

    return Starlette(
        routes=[Route(PATH, me), Route("/login", login)],
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET_KEY)],
        lifespan=lifespan,
    )


def authlib_app(
    provider: OAuthTestProvider, *, leeway: int = 60, lifespan: Lifespan[Any] | None = None
) -> Starlette:
    """What Authlib's Starlette docs show, plus the refresh they leave to the app.

    Login and callback are the documented ``authorize_redirect`` / ``authorize_access_token`` with the
    state in Starlette's session. The token goes into the session; ``/api/me`` reads it from there and,
    when Authlib's own ``OAuth2Token.is_expired(leeway=60)`` says so, refreshes it through the registered
    client (a new ``AsyncOAuth2Client`` per call, as Authlib's registry makes them), keeping the old refresh
    token when the answer has none, and writes the new token back into the session.
    """
    oauth = OAuth()
    oauth.register(
        "idp",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        server_metadata_url=ISSUER + "/.well-known/openid-configuration",
        client_kwargs={
            "scope": "openid email profile",
            "code_challenge_method": "S256",
            "transport": provider.transport(),
        },
    )
    idp = oauth.create_client("idp")

    async def me(request: Request) -> Response:
        token = request.session.get("token")
        if token is None:
            return JSONResponse({"error": "login_required"}, status_code=401)
        if OAuth2Token.from_dict(token).is_expired(leeway=leeway):
            try:
                fresh = await idp.fetch_access_token(
                    grant_type="refresh_token", refresh_token=token["refresh_token"]
                )
            except OAuthError as exc:
                request.session.pop("token", None)
                return JSONResponse({"error": "login_required", "reason": exc.error}, status_code=401)
            fresh.setdefault("refresh_token", token["refresh_token"])
            token = request.session["token"] = dict(fresh)
        return JSONResponse(
            answer(request.session["user"]["sub"], token["access_token"], token["expires_at"])
        )

    async def login(request: Request) -> Response:
        response: Response = await idp.authorize_redirect(request, str(request.url_for("auth")))
        return response

    async def auth(request: Request) -> Response:
        try:
            token = await idp.authorize_access_token(request)
        except OAuthError as exc:
            return RedirectResponse(f"/?error={exc.error}", status_code=303)
        request.session["user"] = dict(token.pop("userinfo"))
        request.session["token"] = dict(token)
        return RedirectResponse("/", status_code=303)

    return Starlette(
        routes=[Route(PATH, me), Route("/login", login), Route("/auth", auth, name="auth")],
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET_KEY)],
        lifespan=lifespan,
    )


def guarded_app(lifespan: Lifespan[Any] | None = None) -> Starlette:
    async def me(request: Request) -> Response:
        identity = current_identity()
        assert identity is not None  # /api/ requires login
        return JSONResponse(answer(identity.sub, identity.access_token, identity.expires_at))

    return Starlette(routes=[Route(PATH, me)], lifespan=lifespan)


def guard(
    provider: OAuthTestProvider,
    store: Store,
    http: httpx.AsyncClient,
    *,
    app: ASGIApp | None = None,
    lifespan: Lifespan[Any] | None = None,
    **settings: Any,
) -> OAuthGuard:
    return OAuthGuard(
        app or guarded_app(lifespan),
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        secret_key=SECRET_KEY,
        http_client=http,
        store=store,
        require_login=["/api/"],
        **settings,
    )


# -- building one, signed in ---------------------------------------------------------------------------


@dataclasses.dataclass
class Built:
    """An app, the Cookie header of a signed-in user ("" for the bare app), and what to close."""

    name: str
    app: ASGIApp
    cookie: str
    closers: list[Callable[[], Awaitable[Any]]] = dataclasses.field(default_factory=list)
    store: Store | None = None

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            await close()


def redis_store(
    redis_url: str, *, key_prefix: str = "bench:"
) -> tuple[RedisStore, Callable[[], Awaitable[Any]]]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    return RedisStore(client, key_prefix=key_prefix), client.aclose


def make(
    name: str,
    provider: OAuthTestProvider,
    *,
    redis_url: str | None = None,
    lifespan: Lifespan[Any] | None = None,
    **guard_settings: Any,
) -> Built:
    """The app ``name``, not signed in yet (see :func:`sign_in`)."""
    if name == "bare":
        return Built(name, bare_app(lifespan), "")
    if name == "session":
        return Built(name, session_app(lifespan), "")
    if name == "authlib":
        return Built(name, authlib_app(provider, lifespan=lifespan), "")
    if name == "guard-before":
        return _before(provider, lifespan=lifespan, **guard_settings)
    if name not in ("guard-memory", "guard-redis"):
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    http = httpx.AsyncClient(transport=provider.transport())
    closers: list[Callable[[], Awaitable[Any]]] = [http.aclose]
    store: Store
    if name == "guard-redis":
        if redis_url is None:
            raise ValueError("guard-redis needs a redis_url")
        store, close_redis = redis_store(redis_url)
        closers.append(close_redis)
    else:
        store = MemoryStore()
    app = guard(provider, store, http, lifespan=lifespan, **guard_settings)
    return Built(name, app, "", closers, store)


def baseline() -> Any:
    """The ``--baseline`` commit's package (``asgi_oauth_guard_before``)."""
    import importlib
    import os
    import sys

    directory = os.environ.get(BASELINE_DIR)
    if not directory:
        raise ValueError("guard-before needs --baseline REV")
    if directory not in sys.path:
        sys.path.insert(0, directory)
    return importlib.import_module("asgi_oauth_guard_before")


def before_guard(
    provider: OAuthTestProvider,
    *,
    http: httpx.AsyncClient,
    lifespan: Lifespan[Any] | None = None,
    **settings: Any,
) -> ASGIApp:
    """The guard of the ``--baseline`` commit around the same app (reading its identity); MemoryStore
    unless ``store=`` says otherwise."""
    before = baseline()

    async def me(request: Request) -> Response:
        identity = before.current_identity()
        assert identity is not None
        return JSONResponse(answer(identity.sub, identity.access_token, identity.expires_at))

    settings.setdefault("store", before.MemoryStore())
    app: ASGIApp = before.OAuthGuard(
        Starlette(routes=[Route(PATH, me)], lifespan=lifespan),
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        secret_key=SECRET_KEY,
        http_client=http,
        require_login=["/api/"],
        **settings,
    )
    return app


def _before(provider: OAuthTestProvider, *, lifespan: Lifespan[Any] | None, **settings: Any) -> Built:
    http = httpx.AsyncClient(transport=provider.transport())
    app = before_guard(provider, http=http, lifespan=lifespan, **settings)
    return Built("guard-before", app, "", [http.aclose])


async def build(
    name: str, provider: OAuthTestProvider, *, redis_url: str | None = None, **guard_settings: Any
) -> Built:
    """The app ``name`` with "alice" signed in: ``cookie`` replays her session ("" for the bare app)."""
    built = make(name, provider, redis_url=redis_url, **guard_settings)
    if name != "bare":
        built.cookie = await sign_in(built, provider)
    return built


def browser(app: ASGIApp) -> httpx.AsyncClient:
    """An httpx client that calls ``app`` in-process: for signing in only, it is too slow to measure with."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url=APP_URL, headers={"accept": "text/html"}
    )


async def start_login(built: Built, client: httpx.AsyncClient, provider: OAuthTestProvider) -> str:
    """Run the app's login route and the provider's authorize step: the callback URL to load."""
    path = "/auth/login?next=" + PATH if built.name.startswith("guard") else "/login"
    response = await client.get(path)
    if response.status_code not in (302, 303, 307):
        raise RuntimeError(f"{built.name}: login answered {response.status_code}: {response.text[:200]}")
    return await provider.complete_authorization(response.headers["location"])


async def sign_in(built: Built, provider: OAuthTestProvider) -> str:
    """Sign "alice" in through the app's own login flow; the Cookie header that replays her session."""
    async with browser(built.app) as client:
        if built.name == "session":
            await client.get("/login")
        else:
            callback = await start_login(built, client, provider)
            response = await client.get(callback)
            if response.status_code not in (302, 303, 307):
                raise RuntimeError(f"{built.name}: callback answered {response.status_code}")
        name = COOKIE_NAMES[built.name]
        value = client.cookies.get(name)
        if not value:
            raise RuntimeError(f"{built.name}: signing in set no {name} cookie")
        return f"{name}={value}"
