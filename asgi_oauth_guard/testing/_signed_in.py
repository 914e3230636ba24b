"""A test client signed in to an app behind the guard, in one call, with no network."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.types import ASGIApp

from .._middleware import OAuthGuard
from ..providers._client import ProviderClient
from ._provider import OAuthTestProvider

__all__ = ["find_guard", "signed_in"]

_DEFAULT_BASE_URL = "http://testserver"


@contextlib.asynccontextmanager
async def signed_in(
    app: ASGIApp,
    *,
    sub: str = "alice",
    claims: Mapping[str, Any] | None = None,
    provider: OAuthTestProvider | None = None,
    guard: OAuthGuard | None = None,
    base_url: str | None = None,
    next_path: str = "/",
    provider_name: str | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` on ``app`` (through ``httpx.ASGITransport``) whose user ``sub`` has signed
    in through the guard's real login and callback routes.

    The guard is found inside ``app`` (``OAuthGuard(app)``, ``app.add_middleware(OAuthGuard)``, the Flask
    and Django ``wrap``, mounts), or given as ``guard=``. While the client is open, the guard's calls to its
    provider go to ``provider``, the embedded one: by default a fresh ``OAuthTestProvider`` with the
    guard's issuer, client ID, client secret and clock, so the app under test needs no real provider and
    no network. ``claims`` are the user's extra ID-token and userinfo claims (``email`` and ``name`` too).

    ``base_url`` defaults to the origin of the guard's ``public_url`` or ``redirect_uri``, where its
    cookies live. The app's lifespan is not run (as with ``httpx.ASGITransport``). ``provider_name``:
    which of a guard's several providers signs the user in (``?provider=NAME``; only that one's calls
    go to ``provider``, a `Mimic` of it for a preset: ``OAuthTestProvider(mimic=mimics.github(...))``);
    ``None``: the first.
    """
    guard = guard if guard is not None else find_guard(app)
    client = guard.client if provider_name is None else guard.providers[provider_name]
    if provider is None:
        provider = OAuthTestProvider(**_matching_provider(guard, client))
    issuer = client.provider.issuer if client.provider.resolved_discovery != "none" else None
    if issuer is not None and provider.issuer.rstrip("/") != issuer.rstrip("/"):
        raise ValueError(
            f"the provider's issuer {provider.issuer!r} is not the guard's ({issuer!r}): "
            "build the OAuthTestProvider with issuer= the guard's issuer, or leave provider= out"
        )
    extra = dict(claims or {})
    email, name = extra.pop("email", None), extra.pop("name", None)
    if claims is not None or not provider.has_user(sub):
        provider.add_user(sub, email=email, name=name, claims=extra)
    if base_url is None:
        base_url = _origin(guard.redirect_uri) or _DEFAULT_BASE_URL
    async with httpx.AsyncClient(transport=provider.transport()) as to_provider:
        previous = client.reroute(to_provider)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base_url) as browser:
                named = client.name if len(guard.providers) > 1 else None
                await _sign_in(browser, guard, provider, sub, next_path, named)
                yield browser
        finally:
            client.reroute(previous)


async def _sign_in(
    browser: httpx.AsyncClient,
    guard: OAuthGuard,
    provider: OAuthTestProvider,
    sub: str,
    next_path: str,
    name: str | None,
) -> None:
    page = {"accept": "text/html"}  # as a browser navigates
    params = {"next": next_path} if name is None else {"next": next_path, "provider": name}
    response = await browser.get(guard.login_path, params=params, headers=page)
    for _ in range(3):  # the guard may first send the browser to its canonical origin
        location = response.headers.get("location", "")
        if response.status_code not in (302, 303, 307) or not location or _is_provider(location, provider):
            break
        response = await browser.get(location, headers=page)
    location = response.headers.get("location", "")
    if response.status_code not in (302, 303) or not _is_provider(location, provider):
        raise RuntimeError(
            f"signing in: {guard.login_path} answered {response.status_code}, not a redirect to the provider "
            f"at {provider.issuer} ({response.text[:200]!r})"
        )
    callback = await provider.complete_authorization(location, user=sub)
    done = await browser.get(callback, headers=page)
    if done.status_code != 303 or not any(c.name == guard._cookies.session_name for c in browser.cookies.jar):
        raise RuntimeError(
            f"signing in: the callback answered {done.status_code} without a session ({done.text[:200]!r})"
        )


def find_guard(app: object) -> OAuthGuard:
    """The one :class:`~asgi_oauth_guard.OAuthGuard` inside ``app``: wrapping it, added as middleware, or
    in a mounted app. ``LookupError`` when there is none, or more than one."""
    found: list[OAuthGuard] = []
    seen: set[int] = set()
    todo = [app]
    while todo:
        node = todo.pop()
        if id(node) in seen or node is None:
            continue
        seen.add(id(node))
        if isinstance(node, OAuthGuard):
            found.append(node)
        if isinstance(node, Starlette) and node.middleware_stack is None:
            node.middleware_stack = node.build_middleware_stack()  # what its first call does
        todo += [getattr(node, name, None) for name in ("middleware_stack", "app", "default", "wsgi_app")]
        todo += [getattr(route, "app", None) for route in getattr(node, "routes", None) or ()]
    if len(found) != 1:
        what = "no OAuthGuard" if not found else f"{len(found)} OAuthGuards"
        raise LookupError(f"{what} found inside {app!r}: pass the guard as guard=")
    return found[0]


def _matching_provider(guard: OAuthGuard, client: ProviderClient) -> dict[str, Any]:
    # The guard's own settings, read inside the package: a test double must match them exactly.
    if client.provider.resolved_discovery == "none":
        raise ValueError(
            "this guard has explicit endpoints (provider=Provider(...)): pass an OAuthTestProvider whose "
            "issuer and endpoints match them as provider="
        )
    secret = client._secret
    if not secret:
        raise ValueError(
            "this guard authenticates with a private key (private_key_jwt): pass an OAuthTestProvider "
            "built with the client's public keys as provider="
        )
    clock = guard._clock
    return {
        "issuer": client.provider.issuer,
        "client_id": client.client_id,
        "client_secret": secret,
        "clock": clock,
    }


def _is_provider(url: str, provider: OAuthTestProvider) -> bool:
    return url.startswith(provider.issuer.rstrip("/") + "/")


def _origin(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
