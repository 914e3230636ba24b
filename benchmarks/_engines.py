"""The guard on each shared engine: Redis, a Redis Cluster, a Sentinel-managed Redis, PostgreSQL.

    .venv/bin/python -m benchmarks.engines [--sessions 1000000] [--requests 2000] [--batches 20]

Per engine, with the servers of ``tests/engines.py`` (Debian's binaries, loopback):

- **hot path**: one authenticated GET with a fresh token, the guard around the benchmark's app, against a
  bare app whose endpoint makes one read of the same engine through the same client (alternating
  batches); "guard over one read" is what the guard adds beyond the round trip any app pays.
- **round trips**: store calls per hot-path request (each call is one command or one statement), and per
  refresh (the request that finds the token due, less its read).
- **bytes per session**: the sealed session value, and what the engine reports for its key or row
  (Redis ``MEMORY USAGE``; PostgreSQL ``pg_column_size`` of the row).
- **with N sessions stored** (default 1,000,000 filler entries of 64 bytes under ``s:``): the hot path
  again, and its ratio to the hot path before: the session is one key lookup, so it stays 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asgi_oauth_guard import PostgresStore, RedisStore, Store, store_from_url
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from . import _apps
from ._driver import http_scope, timed
from ._inprocess import paired

ENGINES = ("redis", "redis-cluster", "redis-sentinel", "postgres")
FILLER_BYTES = 64


class Counting:
    """A store that counts the calls made through it (each one a round trip on these engines)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        if not callable(method) or name.startswith("_"):
            return method

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await method(*args, **kwargs)

        return counted


def one_read_app(store: Store) -> Starlette:
    """The bare app, plus one read of the engine in its endpoint, through the same client as the guard."""

    async def me(request: Request) -> Response:
        await store.get("probe")
        return JSONResponse(_apps.answer(*_apps.BARE_USER))

    return Starlette(routes=[Route(_apps.PATH, me)])


async def engine_bytes(engine: str, store: Store, key: str) -> int | None:
    if isinstance(store, RedisStore):
        used = await store.redis.memory_usage(store.key_prefix + key)
        return int(used) if used is not None else None
    if isinstance(store, PostgresStore):
        async with store.pool.connection() as conn:  # type: ignore[union-attr]
            row = await (
                await conn.execute(
                    f"SELECT pg_column_size(t.*) FROM {store.table} AS t WHERE key = %s",
                    (key.encode(),),
                )
            ).fetchone()
        return int(row[0]) if row else None
    return None


async def fill(store: Store, n: int) -> float:
    """``n`` filler sessions (``s:filler-<i>``, 64 random-looking bytes each); seconds it took."""
    started = time.monotonic()
    value = os.urandom(FILLER_BYTES)
    if isinstance(store, PostgresStore):
        async with store.pool.connection() as conn:  # type: ignore[union-attr]
            await conn.execute(
                f"INSERT INTO {store.table} SELECT ('s:filler-' || i)::bytea, %s, "
                "now() + interval '1 day' FROM generate_series(1, %s) AS i ON CONFLICT DO NOTHING",
                (value, n),
            )
    else:
        assert isinstance(store, RedisStore)
        chunk = 5000
        for start in range(0, n, chunk):
            pipe = store.redis.pipeline(transaction=False)
            for i in range(start, min(n, start + chunk)):
                pipe.set(f"{store.key_prefix}s:filler-{i}", value, ex=86400)
            await pipe.execute()
    return time.monotonic() - started


async def measure(engine: str, url: str, *, sessions: int, requests: int, batches: int) -> dict[str, Any]:
    prefix = f"bench{os.urandom(3).hex()}"
    store: Store
    if engine == "postgres":
        store = PostgresStore.from_url(url, table=prefix)
    else:
        store = store_from_url(url, key_prefix=prefix + ":")
    counting = Counting(store)
    clock = FakeClock(start=time.time())
    provider = OAuthTestProvider(
        issuer=_apps.ISSUER, client_id=_apps.CLIENT_ID, client_secret=_apps.CLIENT_SECRET, clock=clock
    )
    import httpx

    http = httpx.AsyncClient(transport=provider.transport())
    try:
        guard = _apps.guard(provider, counting, http, clock=clock)  # type: ignore[arg-type]
        built = _apps.Built("guard-memory", guard, "")  # signs in like the other guard variants
        built.cookie = await _apps.sign_in(built, provider)
        await store.set("probe", b"x" * 1200, ttl=3600)
        scope = http_scope(built.cookie)
        bare = (one_read_app(store), http_scope(""))
        batch = max(1, requests // batches)
        await timed(guard, scope, 50)
        guard_us, read_us = await paired((guard, scope), bare, batches=batches, batch=batch)

        before = counting.calls
        await timed(guard, scope, requests)
        per_request = (counting.calls - before) / requests

        clock.advance(3600)  # the token is due: the next request refreshes it
        before = counting.calls
        await timed(guard, scope, 1)
        per_refresh = counting.calls - before - per_request

        opened = guard._keyring.open_session_cookie(built.cookie.partition("=")[2])
        assert opened is not None
        session_key = "s:" + opened[0]
        value = await store.get(session_key)

        filled_s = await fill(store, sessions)
        guard_full_us, read_full_us = await paired((guard, scope), bare, batches=batches, batch=batch)
        return {
            "engine": engine,
            "guard_us": guard_us,
            "one_read_us": read_us,
            "guard_over_one_read_us": guard_us - read_us,
            "round_trips_per_request": per_request,
            "round_trips_per_refresh": per_refresh,
            "session_value_bytes": len(value or b""),
            "session_engine_bytes": await engine_bytes(engine, store, session_key),
            "sessions_stored": sessions,
            "fill_seconds": filled_s,
            "guard_us_full": guard_full_us,
            "one_read_us_full": read_full_us,
            "full_over_empty": guard_full_us / guard_us,
        }
    finally:
        await http.aclose()
        await store.aclose()  # type: ignore[attr-defined]


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| engine | guard µs | one read µs | guard over one read µs | round trips / request | "
        "round trips / refresh | session bytes (value / engine) | with N stored: guard µs (x empty) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['guard_us']:.0f} | {r['one_read_us']:.0f} | "
            f"{r['guard_over_one_read_us']:.0f} | {r['round_trips_per_request']:.2f} | "
            f"{r['round_trips_per_refresh']:.0f} | "
            f"{r['session_value_bytes']} / {r['session_engine_bytes']} | "
            f"{r['guard_us_full']:.0f} (x {r['full_over_empty']:.2f}, N = {r['sessions_stored']:,}) |"
        )
    return "\n".join(lines)


async def run(urls: dict[str, str], *, sessions: int, requests: int, batches: int) -> list[dict[str, Any]]:
    rows = []
    for engine in ENGINES:
        print(f".. {engine}", file=sys.stderr)
        rows.append(
            await measure(engine, urls[engine], sessions=sessions, requests=requests, batches=batches)
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engines", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sessions", type=int, default=1_000_000, help="filler sessions stored (1,000,000)")
    parser.add_argument("--requests", type=int, default=2000, help="hot-path requests per measure (2000)")
    parser.add_argument("--batches", type=int, default=20, help="alternating batches (20)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo))
    from tests.engines import Engines
    from tests.redis_server import RedisServer

    engines = Engines(Path(tempfile.mkdtemp(prefix="bench-engines-")))
    single = RedisServer(Path(tempfile.mkdtemp(prefix="bench-redis-")))
    engines.start()
    single.start()
    try:
        urls = {
            "redis": single.url,
            "redis-cluster": engines.cluster.url,
            "redis-sentinel": engines.sentinel.url,
            "postgres": engines.postgres.url,
        }
        rows = asyncio.run(run(urls, sessions=args.sessions, requests=args.requests, batches=args.batches))
    finally:
        single.stop()
        engines.stop()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0
