"""Section 1: the hot path in-process, microseconds per authenticated request, interleaved rounds."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_oauth_guard import MemoryStore, OAuthGuard, current_identity
from asgi_oauth_guard.testing import OAuthTestProvider

from . import _apps
from ._driver import call, discard, http_scope, receive_request, timed


async def floor_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The least an ASGI app can do: what the driver alone costs."""
    start: Message = {"type": "http.response.start", "status": 200, "headers": []}
    await send(start)
    await send({"type": "http.response.body", "body": b"{}"})


async def identity_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A minimal app behind the guard: answers whether it sees a signed-in user, and nothing more."""
    identity = current_identity()
    await send({"type": "http.response.start", "status": 200 if identity else 401, "headers": []})
    await send({"type": "http.response.body", "body": b'{"user":"alice"}' if identity else b"{}"})


async def guard_alone(provider: OAuthTestProvider) -> _apps.Built:
    """The guard (MemoryStore) around :func:`identity_app`: the guard's own cost, without Starlette's."""
    http = httpx.AsyncClient(transport=provider.transport())
    app = _apps.guard(provider, MemoryStore(), http, app=identity_app)
    built = _apps.Built("guard-noop", app, "", [http.aclose])
    built.cookie = await _apps.sign_in(built, provider)
    return built


async def check(built: _apps.Built) -> None:
    """One request through the raw driver: it must be a 200 for alice, or the numbers mean nothing."""
    answer = await call(built.app, http_scope(built.cookie))
    if answer.status != 200 or answer.json().get("user") != "alice":
        raise RuntimeError(
            f"{built.name}: expected a 200 for alice, got {answer.status} {answer.body[:200]!r}"
        )


def redis_get_app(client: Any, key: str) -> ASGIApp:
    """The bare app, making one redis-py GET in its endpoint: what any app pays for one Redis round trip."""

    async def me(request: Request) -> Response:
        await client.get(key)
        return JSONResponse(_apps.answer(*_apps.BARE_USER))

    return Starlette(routes=[Route(_apps.PATH, me)])


async def paired(
    first: tuple[ASGIApp, dict[str, Any]], second: tuple[ASGIApp, dict[str, Any]], *, batches: int, batch: int
) -> tuple[float, float]:
    """Microseconds per request of two apps, alternating small batches so that drift hits both alike."""
    totals = [0.0, 0.0]
    for _ in range(batches):
        for i, (app, scope) in enumerate((first, second)):
            totals[i] += await timed(app, scope, batch)
    return totals[0] / (batches * batch) * 1e6, totals[1] / (batches * batch) * 1e6


async def calls_per_request(app: ASGIApp, scope: dict[str, Any], n: int = 1000) -> float:
    """Python function calls (and coroutine resumptions) per request, counted by cProfile: noise-free work."""
    import cProfile
    import pstats

    await timed(app, scope, 50)
    profiler = cProfile.Profile()
    profiler.enable()
    await timed(app, scope, n)
    profiler.disable()
    return float(pstats.Stats(profiler).total_calls) / n  # type: ignore[attr-defined]


async def redis_commands_per_request(built: _apps.Built, client: Any, n: int) -> float:
    """Commands Redis executed per hot-path request (INFO's own count taken out)."""
    scope = http_scope(built.cookie)
    before = (await client.info("stats"))["total_commands_processed"]
    await timed(built.app, scope, n)
    after = (await client.info("stats"))["total_commands_processed"]
    return float(after - before - 1) / n


async def redis_costs(
    builts: dict[str, _apps.Built],
    bare_get: ASGIApp,
    client: Any,
    *,
    batches: int,
    batch: int,
    requests: int,
) -> dict[str, Any]:
    """What Redis adds: commands per request, and the guard with Redis against a bare app making the same
    GET (and the guard with memory against the bare app), in alternating batches; calls per request."""
    names = ("guard-redis", "guard-memory", "bare")
    pairs = {name: (builts[name].app, http_scope(builts[name].cookie)) for name in names}
    pairs["bare-redis-get"] = bare_get, http_scope("")
    guard_redis, bare_redis = await paired(
        pairs["guard-redis"], pairs["bare-redis-get"], batches=batches, batch=batch
    )
    guard_memory, bare = await paired(pairs["guard-memory"], pairs["bare"], batches=batches, batch=batch)
    return {
        "commands_per_request": await redis_commands_per_request(builts["guard-redis"], client, requests),
        "paired_us": {
            "guard-redis": guard_redis,
            "bare-redis-get": bare_redis,
            "guard-memory": guard_memory,
            "bare": bare,
        },
        "calls_per_request": {
            name: await calls_per_request(*pair, n=min(requests, 1000)) for name, pair in pairs.items()
        },
        "guard_over_bare_get_us": guard_redis - bare_redis,
        "guard_over_bare_us": guard_memory - bare,
        "get_us": bare_redis - bare,
        "bare_get_us": bare_redis,
    }


async def measure(
    builts: list[_apps.Built],
    *,
    rounds: int,
    requests: int,
    warmup: int,
    extras: dict[str, ASGIApp] | None = None,
) -> dict[str, Any]:
    """Per round, every variant runs ``requests`` requests (the order rotates); medians over rounds.

    ``ratio`` is the median over rounds of (variant / bare in the same round): pairs measured seconds
    apart, so the noise of a shared machine mostly cancels.
    """
    scopes = {b.name: http_scope(b.cookie) for b in builts}
    apps = {b.name: b.app for b in builts}
    apps["driver"] = floor_app
    scopes["driver"] = http_scope("")
    for name, app in (extras or {}).items():
        apps[name] = app
        scopes[name] = http_scope("")
    names = list(apps)
    for name in names:
        await timed(apps[name], scopes[name], warmup)
    per_round: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            seconds = await timed(apps[name], scopes[name], requests)
            per_round[name].append(seconds / requests * 1e6)
    bare = per_round.get("bare")
    results: dict[str, Any] = {}
    for name in names:
        us = per_round[name]
        row: dict[str, Any] = {
            "us_median": statistics.median(us),
            "us_min": min(us),
            "us_rounds": [round(x, 2) for x in us],
        }
        if bare is not None:
            row["ratio"] = statistics.median(v / b for v, b in zip(us, bare, strict=True))
        results[name] = row
    return results


async def profile(built: _apps.Built, n: int, *, top: int = 30) -> str:
    """cProfile over ``n`` hot-path requests through the raw driver: the functions by own time."""
    import cProfile
    import io
    import pstats

    scope = http_scope(built.cookie)
    await timed(built.app, scope, 200)
    profiler = cProfile.Profile()
    profiler.enable()
    await timed(built.app, scope, n)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


async def breakdown(built: _apps.Built, *, n: int = 20_000, rounds: int = 5) -> dict[str, float]:
    """Nanoseconds per step of the guard's hot path, each step timed alone (medians of ``rounds``).

    Reaches into the guard's private parts on purpose: it names where the time goes, so it follows them.
    """
    from asgi_oauth_guard._context import _state
    from asgi_oauth_guard._http import cookie

    guard = built.app
    assert isinstance(guard, OAuthGuard)
    scope = http_scope(built.cookie)
    name = guard._cookies.session_name
    value = cookie(scope, name)
    assert value is not None
    opened = guard._keyring.open_session_cookie(value)
    assert opened is not None
    session = await guard._sessions.load(*opened)
    assert session is not None
    state = guard._published.state_of(session, opened)
    store_key = "s:" + opened[0]
    await guard(scope.copy(), receive_request, discard)  # publishes the state for this cookie
    served = guard._published.by_cookie

    def context_var() -> None:
        _state.reset(_state.set(state))

    sync_steps: dict[str, Callable[[], object]] = {
        "read the Cookie header": lambda: cookie(scope, name),
        "find the published state (a dict lookup)": lambda: served.get(value),
        "verify the signed cookie (a cookie not served lately)": lambda: guard._keyring.open_session_cookie(
            value
        ),
        "refresh due?": lambda: guard._refresher.due(session),
        "build the published state (a session not served lately)": lambda: guard._published.state_of(
            session, opened
        ),
        "ContextVar set + reset": context_var,
    }
    async_steps: dict[str, Callable[[], Awaitable[object]]] = {
        "store read (MemoryStore.get)": lambda: guard.store.get(store_key),
        "load the session (store read, decrypt, parse)": lambda: guard._sessions.load(*opened),
        "the minimal app alone": lambda: identity_app(scope.copy(), receive_request, discard),
        "guard + minimal app": lambda: guard(scope.copy(), receive_request, discard),
    }
    times: dict[str, list[float]] = {k: [] for k in [*sync_steps, *async_steps]}
    for _ in range(rounds):
        for label, step in sync_steps.items():
            started = time.process_time()
            for _ in range(n):
                step()
            times[label].append((time.process_time() - started) / n * 1e9)
        for label, astep in async_steps.items():
            started = time.process_time()
            for _ in range(n):
                await astep()
            times[label].append((time.process_time() - started) / n * 1e9)
    result = {label: statistics.median(values) for label, values in times.items()}
    result["guard alone (guard + minimal app - minimal app)"] = (
        result["guard + minimal app"] - result["the minimal app alone"]
    )
    return result
