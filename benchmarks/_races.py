"""Sections 3 and 4: what concurrency does to refresh and to the callback, counted at the provider.

The provider rotates refresh tokens and, as real ones do, revokes the whole grant when a refresh token or
a code is used twice. Its token endpoint answers after ``latency`` seconds, like one across a network.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

from . import _apps
from ._driver import Answer, call, http_scope, with_query


class Skew:
    """The wall clock, moved forward on demand. The provider, the guard and Authlib all read this one."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._real = time.time

    def __call__(self) -> float:
        return self._real() + self.offset


@contextlib.contextmanager
def skewed(skew: Skew) -> Iterator[None]:
    # Authlib's OAuth2Token calls time.time(); Starlette's session signer too. Move them all together.
    with mock.patch("time.time", skew):
        yield


async def _all_at_once(app: Any, scope: dict[str, Any], n: int) -> tuple[list[Answer], float]:
    """``n`` requests started together; the answers in the order they finished, and the wall time."""
    finished: list[Answer] = []

    async def one() -> None:
        finished.append(await call(app, scope))

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return finished, time.perf_counter() - started


def _jar_after(cookie: str, name: str, answers: list[Answer]) -> str:
    """The Cookie header a browser holds after these answers: the last Set-Cookie wins."""
    for answer in answers:
        value = answer.set_cookie(name)
        if value is not None:
            cookie = f"{name}={value}"
    return cookie


def _alive(provider: Any, answer: Answer) -> bool:
    if answer.status != 200:
        return False
    return bool(provider.grant_alive(answer.json()["access_token"]))


async def stampede(
    name: str, *, requests: int = 50, latency: float = 0.05, redis_url: str | None = None
) -> dict[str, Any]:
    """``requests`` concurrent requests of one session whose access token expired 5 s ago."""
    skew = Skew()
    with skewed(skew):
        provider = _apps.make_provider(clock=skew)
        settings = {"clock": skew} if name.startswith("guard") else {}
        built = await _apps.build(name, provider, redis_url=redis_url, **settings)
        try:
            skew.offset = 3600 + 5  # the provider's access tokens live an hour
            provider.reset_calls()
            provider.slow_next(2 * requests, latency)
            answers, wall = await _all_at_once(built.app, http_scope(built.cookie), requests)
            ok = [a for a in answers if a.status == 200]
            after = await call(
                built.app, http_scope(_jar_after(built.cookie, _apps.COOKIE_NAMES[name], answers))
            )
            return {
                "variant": name,
                "requests": requests,
                "refresh_calls": provider.count(endpoint="token", grant_type="refresh_token"),
                "invalid_grant": provider.count(endpoint="token", error="invalid_grant"),
                "answered_200": len(ok),
                "answered_401": sum(1 for a in answers if a.status == 401),
                "distinct_tokens": len({a.json()["access_token"] for a in ok}),
                "working_tokens": sum(1 for a in ok if _alive(provider, a)),
                "signed_in_after": _alive(provider, after),
                "wall_ms": wall * 1000,
                "token_latency_ms": latency * 1000,
            }
        finally:
            await built.aclose()


async def duplicate_callbacks(
    name: str, *, tabs: int = 10, latency: float = 0.05, redis_url: str | None = None
) -> dict[str, Any]:
    """The same callback URL loaded by ``tabs`` tabs of one browser at once (double clicks, restored tabs)."""
    provider = _apps.make_provider()
    built = _apps.make(name, provider, redis_url=redis_url)
    try:
        async with _apps.browser(built.app) as client:
            callback = await _apps.start_login(built, client, provider)
            jar = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        provider.reset_calls()
        provider.slow_next(2 * tabs, latency)
        scope = with_query(http_scope(jar, accept=b"text/html"), callback)
        answers, wall = await _all_at_once(built.app, scope, tabs)
        cookie_name = _apps.COOKIE_NAMES[name]
        logged_in = working = 0
        for answer in answers:
            value = answer.set_cookie(cookie_name)
            me = await call(built.app, http_scope(f"{cookie_name}={value}" if value else ""))
            logged_in += me.status == 200
            working += _alive(provider, me)
        return {
            "variant": name,
            "tabs": tabs,
            "exchange_calls": provider.count(endpoint="token", grant_type="authorization_code"),
            "invalid_grant": provider.count(endpoint="token", error="invalid_grant"),
            "redirected": sum(1 for a in answers if a.status in (302, 303, 307)),
            "logged_in": logged_in,
            "working_tokens": working,
            "wall_ms": wall * 1000,
            "token_latency_ms": latency * 1000,
        }
    finally:
        await built.aclose()
