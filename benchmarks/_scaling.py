"""Section 6: what the guard costs as the work grows, in-process, as ratios to bare in the same rounds.

- **stored sessions** (10^3 to 10^6, MemoryStore and Redis): requests from 100 signed-in users while N
  other sessions are stored (filler entries under ``s:``; the hot path is one key lookup, so N should not
  matter).
- **cold path**: 100,000 stored sessions, each request from a random one of them, so that the guard's
  in-process cache of published states (10,000 cookies) mostly misses: the cookie is verified, the session
  decrypted and parsed, the identity built. Against the warm path (100 users, all cached) in the same rounds.
- **cookie header size**: the app's other cookies from 0.1 to 4 KB, guard and bare alike.
- **sign-ins per second per core**: login, the provider's authorize step, callback (code exchange, ID token
  check, session saved), discovery and keys cached; the provider's own CPU time taken out.
- **refresh**: a request whose access token is due, with the provider's CPU time taken out.

The provider runs in this process; its time is measured around its httpx transport (the network in a
deployment), so "own" figures are the guard's and httpx's client side only.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import httpx
from starlette.types import ASGIApp

import asgi_oauth_guard
import asgi_oauth_guard._crypto
from asgi_oauth_guard import Store
from asgi_oauth_guard._sessions import SESSION_PREFIX
from asgi_oauth_guard.testing import FakeClock

from . import _apps, _inprocess
from ._driver import call, discard, http_scope, receive_request, timed, with_query

FILLER = b"f" * 64
REFRESH_TTL = 120.0  # the access token's lifetime in the refresh table: many refreshes within max age


def _say(message: str) -> None:
    print(f".. {message}", file=sys.stderr, flush=True)


class TimedTransport(httpx.AsyncBaseTransport):
    """The provider's transport, adding up the CPU time spent inside it (the provider and the "network")."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.seconds = 0.0
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.process_time()
        try:
            response = await self._inner.handle_async_request(request)
            await response.aread()
            return response
        finally:
            self.seconds += time.process_time() - started
            self.calls += 1

    async def aclose(self) -> None:
        await self._inner.aclose()


async def timed_rotating(app: ASGIApp, scopes: Sequence[dict[str, Any]], n: int) -> float:
    """CPU seconds for ``n`` requests, the i-th with ``scopes[i % len(scopes)]``."""
    receive, send = receive_request, discard
    count = len(scopes)
    started = time.process_time()
    for i in range(n):
        await app(scopes[i % count].copy(), receive, send)
    return time.process_time() - started


async def timed_fresh(app: ASGIApp, sessions: Sequence[bytes], n: int) -> float:
    """CPU seconds for ``n`` requests, the i-th with the session cookie ``sessions[i % len(sessions)]``
    among the app's other cookies, its scope and headers built per request as a server builds them (so a
    request's own bytes are fresh in the CPU's caches, as they are after a server parsed them, however
    many users there are: what stays cold is the guard's state and the store's)."""
    template = http_scope("")
    headers = template["headers"]
    at = next(i for i, (k, _) in enumerate(headers) if k == b"cookie")
    others = headers[at][1].split(b"; ")
    half = (len(others) + 1) // 2
    before, after = b"; ".join(others[:half]) + b"; ", b"; " + b"; ".join(others[half:])
    receive, send = receive_request, discard
    count = len(sessions)
    started = time.process_time()
    for i in range(n):
        scope = template.copy()
        fresh = headers.copy()
        fresh[at] = (b"cookie", before + sessions[i % count] + after)
        scope["headers"] = fresh
        await app(scope, receive, send)
    return time.process_time() - started


async def timed_random(app: ASGIApp, sessions: Sequence[bytes], picker: random.Random, n: int) -> float:
    """:func:`timed_fresh` with each request's session picked at random (before the clock starts)."""
    return await timed_fresh(app, picker.choices(sessions, k=n), n)


Runner = Callable[[int], Awaitable[float]]


class GcClock:
    """CPU time the garbage collector took while entered (``gc.callbacks``): the cold path's caches keep
    every session's objects alive until evicted, and the collections of them are charged to whatever code
    allocates next, the app's included."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def gc_counted(runner: Runner, samples: list[float]) -> Runner:
    """``runner``, appending the µs per request its garbage collections took to ``samples``."""

    async def run(n: int) -> float:
        with GcClock() as clock:
            seconds = await runner(n)
        samples.append(clock.seconds / n * 1e6)
        return seconds

    return run


async def interleaved(
    runners: dict[str, Runner], *, rounds: int, requests: int, collect: bool = True
) -> dict[str, Any]:
    """µs per request of each runner, rounds in rotating order; ratios to ``"bare"`` per round. ``collect``:
    a full collection before each round (``False``: the collector runs as it goes, as in a server that
    has been up for a while)."""
    names = list(runners)
    for name in names:
        await runners[name](max(20, requests // 10))
    per_round: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if collect:
                gc.collect()
            per_round[name].append(await runners[name](requests) / requests * 1e6)
    out: dict[str, Any] = {}
    for name, us in per_round.items():
        row: dict[str, Any] = {"us_median": statistics.median(us), "us_range": [min(us), max(us)]}
        for base in ("bare", "warm"):
            if base in per_round and name != base:
                ratios = [v / b for v, b in zip(us, per_round[base], strict=True)]
                row[f"vs_{base}"] = statistics.median(ratios)
                row[f"vs_{base}_range"] = [min(ratios), max(ratios)]
        out[name] = row
    return out


class Bench:
    """A guard (MemoryStore or Redis) with one user signed in through its own flow, and helpers to mint
    many more sessions of the same shape straight into its store."""

    def __init__(
        self, kind: str, *, redis_url: str | None, access_token_ttl: float = 3600, before: bool = False
    ) -> None:
        self.kind = kind
        self.package: Any = _apps.baseline() if before else asgi_oauth_guard
        # A clock that moves only when told: no token falls due and no session needs its use written
        # down while a table is measured, unless the table is about that.
        self.clock = FakeClock(start=time.time())
        self.provider = _apps.make_provider(clock=self.clock, access_token_ttl=access_token_ttl)
        self.transport = TimedTransport(self.provider.transport())
        self.http = httpx.AsyncClient(transport=self.transport)
        self.closers: list[Callable[[], Awaitable[Any]]] = [self.http.aclose]
        self.redis: Any = None
        store: Store
        if kind == "redis":
            assert redis_url is not None
            store, close = _apps.redis_store(redis_url, key_prefix=f"bench{random.randrange(10**6)}:")
            self.redis = store.redis  # type: ignore[attr-defined]
            self.closers.append(close)
        else:
            store = self.package.MemoryStore(max_entries=3_000_000, max_bytes=8 * 1024**3)
        self.store = store
        self.guard: Any
        if before:
            self.guard = _apps.before_guard(self.provider, http=self.http, store=store, clock=self.clock)
        else:
            self.guard = _apps.guard(self.provider, store, self.http, clock=self.clock)
        self.cookie = ""
        self.filled = 0
        self.session_cookies: list[bytes] = []  # each minted session's ``name=value``
        self.probe = f"bench-probe-{random.randrange(10**6)}"

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            await close()

    def opened(self) -> tuple[str, bytes]:
        """The signed-in user's ``(sid, key)``, from their cookie."""
        opened = self.guard._keyring.open_session_cookie(self.cookie.partition("=")[2])
        assert opened is not None
        return opened  # type: ignore[no-any-return]

    async def session(self) -> Any:
        """The signed-in user's session, as the store holds it."""
        return await self.guard._sessions.load(*self.opened())

    def bare(self) -> tuple[ASGIApp, dict[str, Any]]:
        """The app to compare with: bare Starlette, or with Redis, bare Starlette making one GET of a value
        the size of a session."""
        if self.redis is None:
            return _apps.bare_app(), http_scope("")
        return _inprocess.redis_get_app(self.redis, self.probe), http_scope("")

    async def start(self) -> Bench:
        built = _apps.Built("guard-" + self.kind, self.guard, "")
        self.cookie = await _apps.sign_in(built, self.provider)
        if self.redis is not None:
            size = len(await self.store.get(SESSION_PREFIX + self.opened()[0]) or b"")
            await self.redis.set(self.probe, b"x" * size, ex=3600)
        return self

    async def mint(self, n: int) -> list[dict[str, Any]]:
        """``n`` more signed-in sessions like the first one: a scope (browser request) for each."""
        template = await self.session()
        ttl = 3600.0
        scopes = []
        name = self.guard._cookies.session_name
        pipe = self.redis.pipeline(transaction=False) if self.redis is not None else None
        for i in range(n):
            sid, key, value = self.guard._keyring.new_session_cookie()
            claims = {**template.claims, "sub": f"user-{i}"}
            session = dataclasses.replace(template, sid=sid, claims=claims)
            blob = self.package._crypto.seal(key, sid.encode(), session.dumps())
            if pipe is not None:
                pipe.set(f"{self.store.key_prefix}{SESSION_PREFIX}{sid}", blob, ex=int(ttl))  # type: ignore[attr-defined]
                if len(pipe) >= 2000:
                    await pipe.execute()
            else:
                await self.store.set(SESSION_PREFIX + sid, blob, ttl=ttl)
            scopes.append(http_scope(f"{name}={value}"))
            self.session_cookies.append(f"{name}={value}".encode("latin-1"))
        if pipe is not None:
            await pipe.execute()
        return scopes

    async def fill(self, total: int) -> None:
        """Filler entries under ``s:`` until ``total`` are stored (sessions nobody requests)."""
        if total <= self.filled:
            return
        if self.redis is not None:
            prefix = f"{self.store.key_prefix}{SESSION_PREFIX}fill"  # type: ignore[attr-defined]
            for start in range(self.filled, total, 10_000):
                pipe = self.redis.pipeline(transaction=False)
                for i in range(start, min(total, start + 10_000)):
                    pipe.set(f"{prefix}{i}", FILLER, ex=86400)
                await pipe.execute()
        else:
            for i in range(self.filled, total):
                await self.store.set(f"{SESSION_PREFIX}fill{i}", FILLER, ttl=86400)
        self.filled = total


async def stored_sessions(
    *, counts: Sequence[int], kinds: Sequence[str], redis_url: str | None, rounds: int, requests: int
) -> list[dict[str, Any]]:
    rows = []
    for kind in kinds:
        bench = await Bench(kind, redis_url=redis_url).start()
        bare_app, bare_scope = bench.bare()
        try:
            users = await bench.mint(100)
            for count in counts:
                _say(f"stored sessions: {kind}, {count:,}")
                await bench.fill(count)
                got = await interleaved(
                    {
                        "bare": partial(timed, bare_app, bare_scope),
                        "guard": partial(timed_rotating, bench.guard, users),
                    },
                    rounds=rounds,
                    requests=requests,
                )
                rows.append({"store": kind, "stored": count, **_row(got["guard"], "bare")})
        finally:
            await bench.aclose()
    return rows


async def cold_path(
    *, stored: int, kinds: Sequence[str], redis_url: str | None, rounds: int, requests: int
) -> list[dict[str, Any]]:
    rows = []
    for kind in kinds:
        _say(f"cold path: {kind}, {stored:,} sessions")
        before = kind == "memory-before"
        bench = await Bench("memory" if before else kind, redis_url=redis_url, before=before).start()
        bare_app, bare_scope = bench.bare()
        try:
            await bench.mint(stored)
            everyone = bench.session_cookies
            # As a server that has served these users for a while: its caches full (a cookie is remembered
            # from its second sight, so this takes a few times more requests than the cache has room for).
            await timed_random(bench.guard, everyone, random.Random(7), min(2 * stored, 200_000))
            gc_warm: list[float] = []
            gc_cold: list[float] = []
            got = await interleaved(
                {
                    "bare": partial(timed, bare_app, bare_scope),
                    "warm": gc_counted(partial(timed_fresh, bench.guard, everyone[:100]), gc_warm),
                    "cold": gc_counted(
                        partial(timed_random, bench.guard, everyone, random.Random(21)), gc_cold
                    ),
                },
                rounds=rounds,
                requests=requests,
                collect=False,  # the collections of what the caches keep alive are the cold path's cost
            )
            rows.append(
                {
                    "store": kind,
                    "stored": stored,
                    "warm_us": got["warm"]["us_median"],
                    "warm_vs_bare": got["warm"]["vs_bare"],
                    "cold_us": got["cold"]["us_median"],
                    "cold_vs_bare": got["cold"]["vs_bare"],
                    "cold_vs_warm": got["cold"]["vs_warm"],
                    "cold_vs_warm_range": got["cold"]["vs_warm_range"],
                    # Means, not medians: a collection of the oldest generation comes every few thousand
                    # requests, in some rounds and not others. The first sample is the short warm-up's.
                    "warm_gc_us": statistics.fmean(gc_warm[1:] or gc_warm),
                    "cold_gc_us": statistics.fmean(gc_cold[1:] or gc_cold),
                }
            )
        finally:
            await bench.aclose()
    return rows


async def cookie_sizes(*, sizes: Sequence[int], rounds: int, requests: int) -> list[dict[str, Any]]:
    rows = []
    bench = await Bench("memory", redis_url=None).start()
    bare = _apps.bare_app()
    try:
        for size in sizes:
            _say(f"cookie header: {size} bytes of other cookies")
            guard_scope = http_scope(bench.cookie, others=size)
            bare_scope = http_scope("", others=size)
            got = await interleaved(
                {
                    "bare": partial(timed, bare, bare_scope),
                    "guard": partial(timed, bench.guard, guard_scope),
                },
                rounds=rounds,
                requests=requests,
            )
            header = next(v for k, v in guard_scope["headers"] if k == b"cookie")
            rows.append({"others": size, "cookie_bytes": len(header), **_row(got["guard"], "bare")})
    finally:
        await bench.aclose()
    return rows


async def sign_ins(*, n: int, rounds: int) -> dict[str, Any]:
    """Sign-ins through the raw driver (login, authorize at the provider, callback), each from a new
    browser; the provider's CPU time (its transport and its authorize step) taken out."""
    bench = await Bench("memory", redis_url=None).start()  # discovery and keys fetched and cached
    try:
        per: list[float] = []
        provider_per: list[float] = []
        for _ in range(rounds):
            gc.collect()
            total = provider = 0.0
            for _ in range(n):
                before = bench.transport.seconds
                started = time.process_time()
                login = await call(bench.guard, http_scope("", path="/auth/login", accept=b"text/html"))
                jar = login.set_cookie(bench.guard._cookies.binding_name)
                at = time.process_time()
                callback = await bench.provider.complete_authorization(login.header(b"location")[0])
                authorize = time.process_time() - at
                scope = http_scope(f"{bench.guard._cookies.binding_name}={jar}", accept=b"text/html")
                answer = await call(bench.guard, with_query(scope, callback))
                total += time.process_time() - started
                provider += authorize + bench.transport.seconds - before
                if answer.set_cookie(bench.guard._cookies.session_name) is None:
                    raise RuntimeError(f"sign-in failed: {answer.status} {answer.body[:200]!r}")
            per.append((total - provider) / n * 1e6)
            provider_per.append(provider / n * 1e6)
        own = statistics.median(per)
        return {
            "sign_ins": n * rounds,
            "guard_us": own,
            "guard_us_range": [min(per), max(per)],
            "provider_us": statistics.median(provider_per),
            "per_second_per_core": 1e6 / own,
        }
    finally:
        await bench.aclose()


async def refreshes(
    *, kinds: Sequence[str], redis_url: str | None, n: int, rounds: int
) -> list[dict[str, Any]]:
    """Requests whose access token is due (the clock moved past it each time): one refresh each, single
    flight, the lock, the spent-token record; the provider's CPU time taken out."""
    rows = []
    for kind in kinds:
        _say(f"refresh: {kind}")
        bench = await Bench(kind, redis_url=redis_url, access_token_ttl=REFRESH_TTL).start()
        clock = bench.clock
        try:
            scope = http_scope(bench.cookie)
            calls_before = bench.provider.count(endpoint="token", grant_type="refresh_token")
            own: list[float] = []
            provider: list[float] = []
            warm: list[float] = []
            for _ in range(rounds):
                gc.collect()
                total = inside = 0.0
                for _ in range(n):
                    clock.advance(REFRESH_TTL)  # past the token's expiry: due
                    before = bench.transport.seconds
                    started = time.process_time()
                    await bench.guard(scope.copy(), receive_request, discard)
                    total += time.process_time() - started
                    inside += bench.transport.seconds - before
                own.append((total - inside) / n * 1e6)
                provider.append(inside / n * 1e6)
                warm.append(await timed(bench.guard, scope, n) / n * 1e6)
            refreshed = bench.provider.count(endpoint="token", grant_type="refresh_token") - calls_before
            rows.append(
                {
                    "store": kind,
                    "refreshes": refreshed,
                    "requests": n * rounds,
                    "own_us": statistics.median(own),
                    "own_us_range": [min(own), max(own)],
                    "provider_us": statistics.median(provider),
                    "warm_us": statistics.median(warm),
                }
            )
        finally:
            await bench.aclose()
    return rows


def _row(got: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "guard_us": got["us_median"],
        "vs_bare": got[f"vs_{base}"],
        "vs_bare_range": got[f"vs_{base}_range"],
    }


async def run(
    *,
    smoke: bool,
    redis_url: str | None,
    rounds: int,
    requests: int,
    stored: int,
    counts: Sequence[int],
    before: bool = False,
) -> dict[str, Any]:
    kinds = ["memory"] + (["redis"] if redis_url else [])
    return {
        "stored_sessions": await stored_sessions(
            counts=counts, kinds=kinds, redis_url=redis_url, rounds=rounds, requests=requests
        ),
        "cold_path": await cold_path(
            stored=stored,
            kinds=kinds + (["memory-before"] if before else []),
            redis_url=redis_url,
            rounds=rounds,
            requests=requests,
        ),
        "cookie_sizes": await cookie_sizes(
            sizes=(100, 500, 1000, 2000, 4000), rounds=rounds, requests=requests
        ),
        "sign_ins": await sign_ins(n=5 if smoke else 100, rounds=rounds),
        "refresh": await refreshes(kinds=kinds, redis_url=redis_url, n=3 if smoke else 50, rounds=rounds),
    }
