"""A store in Redis, for many processes and hosts; and picking a store from a URL.

Every call is one round trip: ``add`` and ``acquire`` are ``SET NX PX``, ``replace`` is ``SET XX PX``,
``release`` is a compare-and-delete Lua script run by ``EVALSHA``; an index is a sorted set scored by each
member's expiry (server time, in Lua). Every script touches one key, so each works on a Redis Cluster too.
Redis errors propagate; the guard answers them with a 503.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from ._errors import ConfigurationError
from ._store import MemoryStore, Store

if TYPE_CHECKING:
    from types import TracebackType

    from redis.asyncio import Redis

__all__ = ["RedisStore", "store_from_url"]

_INSTALL = 'RedisStore needs redis-py: pip install "asgi-oauth-guard[redis]"'

# Delete the lock only while it still holds our owner: a holder whose lease ran out must not free
# the lock that another worker took since.
_RELEASE = """
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
end
return 0
"""


# Members scored by their expiry in milliseconds of the server's clock; the key expires with its last member.
_INDEX_ADD = """
local now = redis.call("TIME")
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
redis.call("ZADD", KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call("ZRANGE", KEYS[1], -1, -1, "WITHSCORES")
redis.call("PEXPIREAT", KEYS[1], last[2])
return 1
"""

_INDEX_MEMBERS = """
local now = redis.call("TIME")
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return redis.call("ZRANGEBYSCORE", KEYS[1], "(" .. now, "+inf")
"""


def _redis_asyncio() -> Any:
    try:
        import redis.asyncio
    except ImportError:
        raise ImportError(_INSTALL) from None
    return redis.asyncio


def _milliseconds(ttl: float) -> int:
    if not ttl > 0:
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    return max(1, math.ceil(round(ttl * 1000, 3)))


class RedisStore:
    """A store in Redis: the one to use when several worker processes or hosts serve one app.

    Give it a ready ``redis.asyncio.Redis`` (with ``decode_responses=False``); whoever created that
    client closes it. Keys are ``key_prefix`` + the guard's key, so one Redis can serve several apps.
    For a quick 503 while Redis is down, give the client a short ``socket_connect_timeout`` and few
    retries, as :meth:`from_url` does.
    """

    def __init__(self, redis: Redis, *, key_prefix: str = "guard:") -> None:
        _redis_asyncio()
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigurationError(
                "RedisStore needs a Redis client made with decode_responses=False: the guard stores bytes"
            )
        self.redis = redis
        self.key_prefix = key_prefix
        self._release = redis.register_script(_RELEASE)
        self._index_add = redis.register_script(_INDEX_ADD)
        self._index_members = redis.register_script(_INDEX_MEMBERS)
        self._owned = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = "guard:",
        socket_connect_timeout: float = 1.0,
        socket_timeout: float = 2.0,
        **options: Any,
    ) -> RedisStore:
        """A store with its own client for ``url`` (``redis://host:port/db``, ``rediss://``, ``unix://``).

        This store owns the client: close it with :meth:`aclose` (or ``async with``). By default a
        refused or lost connection is retried once at once (a server restart leaves stale pooled
        connections), then raised, and a timeout is raised at once; ``options`` go to
        ``redis.asyncio.Redis.from_url``.
        """
        client_module = _redis_asyncio()
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        # Not on timeouts: a SET NX whose answer timed out may have been applied, and sent again it
        # would answer "taken" to the caller that took it.
        options.setdefault("retry", Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))
        client = client_module.Redis.from_url(
            url,
            socket_connect_timeout=socket_connect_timeout,
            socket_timeout=socket_timeout,
            **options,
        )
        store = cls(client, key_prefix=key_prefix)
        store._owned = True
        return store

    async def get(self, key: str) -> bytes | None:
        return cast("bytes | None", await self.redis.get(self.key_prefix + key))

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        await self.redis.set(self.key_prefix + key, value, px=_milliseconds(ttl))

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        created = await self.redis.set(self.key_prefix + key, value, px=_milliseconds(ttl), nx=True)
        return bool(created)

    async def replace(self, key: str, value: bytes, *, ttl: float) -> bool:
        replaced = await self.redis.set(self.key_prefix + key, value, px=_milliseconds(ttl), xx=True)
        return bool(replaced)

    async def delete(self, key: str) -> None:
        await self.redis.delete(self.key_prefix + key)

    async def acquire(self, key: str, owner: str, *, lease: float) -> bool:
        return await self.add(key, owner.encode(), ttl=lease)

    async def release(self, key: str, owner: str) -> bool:
        deleted = await self._release(keys=[self.key_prefix + key], args=[owner])
        return bool(deleted)

    async def index_add(self, key: str, member: str, *, ttl: float) -> None:
        await self._index_add(keys=[self.key_prefix + key], args=[member, _milliseconds(ttl)])

    async def index_members(self, key: str) -> list[str]:
        members = await self._index_members(keys=[self.key_prefix + key])
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    async def index_discard(self, key: str, member: str) -> None:
        await self.redis.zrem(self.key_prefix + key, member)

    async def aclose(self) -> None:
        """Close the client if :meth:`from_url` made it; a client given to the constructor is left open."""
        if self._owned:
            await self.redis.aclose()

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<RedisStore key_prefix={self.key_prefix!r}>"


def store_from_url(url: str, *, key_prefix: str = "guard:") -> Store:
    """The store a URL names, as the examples read ``GUARD_STORE``.

    ``memory://`` is a :class:`MemoryStore` (one process); ``redis://host:port/db`` (or ``rediss://``,
    ``unix://``) is a :class:`RedisStore` that owns its client: call its ``aclose()`` at shutdown.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        if url.rstrip("/").lower() != "memory:":
            raise ConfigurationError(f"a memory store URL is just 'memory://', got {url!r}")
        return MemoryStore()
    if scheme in ("redis", "rediss", "unix"):
        return RedisStore.from_url(url, key_prefix=key_prefix)
    raise ConfigurationError(
        f"unknown store URL {url!r}: use 'memory://' or 'redis://host:port/db' (rediss://, unix:// too)"
    )
