"""A store in Redis, for many processes and hosts; and picking a store from a URL.

Every call is one round trip: ``add`` and ``acquire`` are ``SET NX PX``, ``replace`` is ``SET XX PX``,
``release`` is a compare-and-delete Lua script run by ``EVALSHA``; an index is a sorted set scored by each
member's expiry (server time, in Lua). Every script touches one key, so each works on a Redis Cluster too.
Redis errors propagate; the guard answers them with a 503.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

import anyio

from ._errors import ConfigurationError
from ._store import MemoryStore, Store

if TYPE_CHECKING:
    from types import TracebackType

    from redis.asyncio import Redis, RedisCluster

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

    Give it a ready client made with ``decode_responses=False``: a ``redis.asyncio.Redis`` (one server),
    a Sentinel-managed one (``redis.asyncio.sentinel.Sentinel(...).master_for(name)``) or a
    ``redis.asyncio.RedisCluster``. Whoever created the client closes it. Keys are ``key_prefix`` + the
    guard's key, so one Redis can serve several apps. No operation of the guard touches two keys at once
    (each Lua script works on one key), so on a Cluster the keys spread over every slot: a ``key_prefix``
    with a hash tag (``{...}``) would put them all on one node, and is refused there.
    For a quick 503 while Redis is down, give the client a short ``socket_connect_timeout`` and few
    retries, as :meth:`from_url` does.

    Replication is asynchronous: a claim or a refresh lock written on a master that dies before its
    replica has it can be taken again on the promoted replica (SECURITY.md, "Failover").
    """

    def __init__(self, redis: Redis | RedisCluster, *, key_prefix: str = "guard:") -> None:
        _redis_asyncio()
        if redis.get_encoder().decode_responses:
            raise ConfigurationError(
                "RedisStore needs a Redis client made with decode_responses=False: the guard stores bytes"
            )
        if _is_cluster(redis) and re.search(r"\{[^}]*\}", key_prefix):
            raise ConfigurationError(
                f"key_prefix {key_prefix!r} has a hash tag: on a Redis Cluster every key would land in one "
                "slot, on one node; use a prefix without braces"
            )
        self.redis = redis
        self.key_prefix = key_prefix
        self._release = redis.register_script(_RELEASE)
        self._index_add = redis.register_script(_INDEX_ADD)
        self._index_members = redis.register_script(_INDEX_MEMBERS)
        self._owned: list[Any] = []
        # redis-py's RedisCluster fails some of many commands sent at once by a client that has not yet
        # loaded the cluster's layout (seen with redis-py 8.1: a request burst on a fresh worker): load it
        # once, first.
        self._initialized = not _is_cluster(redis)
        self._initializing = anyio.Lock()

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
        """A store with its own client for ``url``.

        - ``redis://[user:password@]host:port/db``, ``rediss://``, ``unix://``: one server.
        - ``redis+cluster://host:port`` (``rediss+cluster://``): a Redis Cluster, given any one of its nodes.
        - ``redis+sentinel://host:port[,host:port...]/service_name[/db]``: the master that these Sentinels
          name for ``service_name``; a password in the URL is the data servers' (not the Sentinels').

        This store owns the client: close it with :meth:`aclose` (or ``async with``). By default a
        refused or lost connection is retried once at once (a server restart or a failover leaves stale
        pooled connections), then raised, and a timeout is raised at once; ``options`` go to the client.
        """
        _redis_asyncio()
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        # Not on timeouts: a SET NX whose answer timed out may have been applied, and sent again it
        # would answer "taken" to the caller that took it.
        options.setdefault("retry", Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))
        options.update(socket_connect_timeout=socket_connect_timeout, socket_timeout=socket_timeout)
        scheme = urlsplit(url).scheme.lower()
        owned: list[Any]
        if scheme in ("redis+cluster", "rediss+cluster"):
            client: Any = _cluster_client(url, options)
            owned = [client]
        elif scheme == "redis+sentinel":
            client, sentinel = _sentinel_client(url, options)
            owned = [client, *sentinel.sentinels]
        elif scheme in ("redis", "rediss", "unix"):
            client = _redis_asyncio().Redis.from_url(url, **options)
            owned = [client]
        else:
            raise ConfigurationError(f"not a Redis URL: {_redacted(url)!r}")
        store = cls(client, key_prefix=key_prefix)
        store._owned = owned
        return store

    async def get(self, key: str) -> bytes | None:
        if not self._initialized:
            await self._initialize()
        return cast("bytes | None", await self.redis.get(self.key_prefix + key))

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        if not self._initialized:
            await self._initialize()
        await self.redis.set(self.key_prefix + key, value, px=_milliseconds(ttl))

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        if not self._initialized:
            await self._initialize()
        created = await self.redis.set(self.key_prefix + key, value, px=_milliseconds(ttl), nx=True)
        return bool(created)

    async def replace(self, key: str, value: bytes, *, ttl: float) -> bool:
        if not self._initialized:
            await self._initialize()
        replaced = await self.redis.set(self.key_prefix + key, value, px=_milliseconds(ttl), xx=True)
        return bool(replaced)

    async def delete(self, key: str) -> None:
        if not self._initialized:
            await self._initialize()
        await self.redis.delete(self.key_prefix + key)

    async def acquire(self, key: str, owner: str, *, lease: float) -> bool:
        return await self.add(key, owner.encode(), ttl=lease)

    async def release(self, key: str, owner: str) -> bool:
        if not self._initialized:
            await self._initialize()
        deleted = await self._release(keys=[self.key_prefix + key], args=[owner])
        return bool(deleted)

    async def index_add(self, key: str, member: str, *, ttl: float) -> None:
        if not self._initialized:
            await self._initialize()
        await self._index_add(keys=[self.key_prefix + key], args=[member, _milliseconds(ttl)])

    async def index_members(self, key: str) -> list[str]:
        if not self._initialized:
            await self._initialize()
        members = await self._index_members(keys=[self.key_prefix + key])
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    async def index_discard(self, key: str, member: str) -> None:
        if not self._initialized:
            await self._initialize()
        await self.redis.zrem(self.key_prefix + key, member)

    async def _initialize(self) -> None:
        async with self._initializing:
            if not self._initialized:
                await cast("RedisCluster", self.redis).initialize()
                self._initialized = True

    async def aclose(self) -> None:
        """Close the client if :meth:`from_url` made it; a client given to the constructor is left open."""
        owned, self._owned = self._owned, []
        for client in owned:
            await client.aclose()

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


def _is_cluster(redis: object) -> bool:
    from redis.asyncio.cluster import RedisCluster

    return isinstance(redis, RedisCluster)


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def _cluster_client(url: str, options: dict[str, Any]) -> Any:
    from redis.asyncio.cluster import RedisCluster

    scheme, rest = url.split("://", 1)
    plain = ("rediss" if scheme.lower().startswith("rediss") else "redis") + "://" + rest
    parts = urlsplit(plain)
    if parts.path not in ("", "/", "/0"):
        raise ConfigurationError(f"a Redis Cluster has only database 0: {_redacted(url)!r}")
    if "," in parts.netloc:
        raise ConfigurationError(
            f"give one node of the cluster (the client finds the others): {_redacted(url)!r}"
        )
    return RedisCluster.from_url(plain, **options)


def _sentinel_client(url: str, options: dict[str, Any]) -> tuple[Any, Any]:
    from redis.asyncio.sentinel import Sentinel

    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    addresses: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(
                f"a Sentinel URL is redis+sentinel://host:port[,host:port...]/service_name[/db], "
                f"got {_redacted(url)!r}"
            )
        addresses.append((host.strip("[]"), int(port)))
    path = [segment for segment in parts.path.split("/") if segment]
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigurationError(
            f"a Sentinel URL names the service, then optionally the db: "
            f"redis+sentinel://host:port/service_name[/db], got {_redacted(url)!r}"
        )
    if userinfo:
        user, _, password = userinfo.partition(":")
        options.setdefault("username", unquote(user) or None)
        options.setdefault("password", unquote(password) or None)
    timeouts = {k: options[k] for k in ("socket_connect_timeout", "socket_timeout")}
    sentinel = Sentinel(addresses, sentinel_kwargs=timeouts, **timeouts)  # type: ignore[no-untyped-call]
    db = int(path[1]) if len(path) == 2 else 0
    return sentinel.master_for(path[0], db=db, **options), sentinel


def store_from_url(url: str, *, key_prefix: str = "guard:") -> Store:
    """The store a URL names, as the examples read ``GUARD_STORE``.

    ``memory://`` is a :class:`MemoryStore` (one process). ``redis://host:port/db`` (or ``rediss://``,
    ``unix://``), ``redis+cluster://host:port`` (any node of a Redis Cluster) and
    ``redis+sentinel://host:port[,host:port...]/service_name[/db]`` are a :class:`RedisStore`;
    ``postgresql://user[:password]@host:port/dbname`` is a :class:`PostgresStore`. Those own their
    client: call their ``aclose()`` at shutdown.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        if url.rstrip("/").lower() != "memory:":
            raise ConfigurationError(f"a memory store URL is just 'memory://', got {url!r}")
        return MemoryStore()
    if scheme in _REDIS_SCHEMES:
        return RedisStore.from_url(url, key_prefix=key_prefix)
    if scheme in ("postgresql", "postgres"):
        from ._postgres import PostgresStore

        return PostgresStore.from_url(url)
    raise ConfigurationError(
        f"unknown store URL {_redacted(url)!r}: use 'memory://', 'redis://host:port/db' "
        "(rediss://, unix://), "
        "'redis+cluster://host:port', 'redis+sentinel://host:port[,host:port...]/service_name[/db]' "
        "or 'postgresql://user[:password]@host:port/dbname'"
    )


_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel")
