"""Section 5: memory per signed-in session, in the MemoryStore (and the guard's caches) and in Redis."""

from __future__ import annotations

import sys
import types
from collections import defaultdict
from typing import Any

from asgi_oauth_guard import MemoryStore, OAuthGuard

from . import _apps
from ._driver import call, http_scope

_OPAQUE = (OAuthGuard, types.ModuleType, types.FunctionType, type)


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of ``obj`` and everything it holds (each object counted once; the guard itself excluded)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, _OPAQUE):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        size += sum(deep_size(item, seen) for item in obj)
    elif hasattr(obj, "__dict__"):
        size += deep_size(vars(obj), seen)
    elif hasattr(obj, "__slots__"):
        size += sum(deep_size(getattr(obj, s), seen) for s in obj.__slots__ if hasattr(obj, s))
    return size


def _kind(key: str) -> str:
    return key.split(":", 1)[0] + ":" if ":" in key else key


async def _sign_in_many(built: _apps.Built, provider: Any, n: int) -> None:
    """``n`` users, each from a new browser, each making two requests then: the guard remembers a session
    cookie's published state from its second sight, so this fills its hot-path cache."""
    for _ in range(n):
        cookie = await _apps.sign_in(built, provider)
        for _ in range(2):
            answer = await call(built.app, http_scope(cookie))
            if answer.status != 200:
                raise RuntimeError(f"{built.name}: a fresh session answered {answer.status}")


async def memory_store(n: int) -> dict[str, Any]:
    provider = _apps.make_provider()
    # Every sign-in is the same test user: keep all n sessions (the default ends a user's oldest beyond 100).
    built = _apps.make("guard-memory", provider, max_sessions_per_user=n + 1)
    try:
        await _sign_in_many(built, provider, n)
        store = built.store
        assert isinstance(store, MemoryStore)
        by_kind: dict[str, int] = defaultdict(int)
        counts: dict[str, int] = defaultdict(int)
        seen: set[int] = set()
        for key, item in store._data.items():
            by_kind[_kind(key)] += deep_size(key, seen) + deep_size(item, seen)
            counts[_kind(key)] += 1
        table = sys.getsizeof(store._data) + deep_size(store._expiries, seen)
        guard = built.app
        assert isinstance(guard, OAuthGuard)
        # Counted after the store, with the same ``seen``: bytes the caches share with it count once.
        caches = {"published states": deep_size(guard._published.by_cookie, seen)}
        caches["total"] = sum(caches.values())
        return {
            "sessions": n,
            "session_bytes": by_kind["s:"] / n,
            "store_bytes_per_login": (sum(by_kind.values()) + table) / n,
            "by_kind_per_login": {k: v / n for k, v in sorted(by_kind.items())},
            "entries_per_login": {k: v / n for k, v in sorted(counts.items())},
            "hot_path_caches_per_session": {k: v / n for k, v in caches.items()},
        }
    finally:
        await built.aclose()


async def redis_store(n: int, redis_url: str) -> dict[str, Any]:
    import redis.asyncio

    provider = _apps.make_provider()
    built = _apps.make("guard-redis", provider, redis_url=redis_url, max_sessions_per_user=n + 1)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.flushdb()
        before = (await client.info("memory"))["used_memory"]
        await _sign_in_many(built, provider, n)
        after = (await client.info("memory"))["used_memory"]
        by_kind: dict[str, int] = defaultdict(int)
        async for key in client.scan_iter(match="bench:*", count=1000):
            usage = await client.memory_usage(key, samples=0)
            by_kind[_kind(key.decode()[len("bench:") :])] += int(usage or 0)
        value_bytes = 0
        async for key in client.scan_iter(match="bench:s:*", count=1000):
            value_bytes += int(await client.strlen(key))
        return {
            "sessions": n,
            "session_bytes": by_kind["s:"] / n,
            "session_value_bytes": value_bytes / n,
            "keys_bytes_per_login": sum(by_kind.values()) / n,
            "by_kind_per_login": {k: v / n for k, v in sorted(by_kind.items())},
            "used_memory_per_login": (after - before) / n,
        }
    finally:
        await client.aclose()
        await built.aclose()
