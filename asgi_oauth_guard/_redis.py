"""A store in Redis, for many processes and hosts; and picking a store from a URL.

Every call is one round trip: ``add`` and ``acquire`` are ``SET NX PX``, ``replace`` is ``SET XX PX``,
``release`` is a compare-and-delete Lua script run by ``EVALSHA``; an index is a sorted set scored by each
member's expiry (server time, in Lua). Every script touches one key, so each works on a Redis Cluster too.
Redis errors propagate; the guard answers them with a 503.

With ``wait_replicas`` the writes that must survive a failover are each followed by ``WAIT`` on the same
connection (one non-transactional pipeline, still one round trip): the guard answers only once a replica
has them. Reads, the hot path, never wait.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import anyio

from ._errors import ConfigurationError
from ._store import ClosesOnExit, MemoryStore, Store

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

__all__ = ["RedisStore", "store_from_url"]

logger = logging.getLogger("asgi_oauth_guard")

_NO_CLUSTER_WAIT = (
    "wait_replicas is not supported on a Redis Cluster (WAIT must reach the node that owns each key); "
    "use it with a Sentinel-managed master or a single master with replicas"
)

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


class RedisStore(ClosesOnExit):
    """A store in Redis: the one to use when several worker processes or hosts serve one app.

    Give it a ready client made with ``decode_responses=False``: a ``redis.asyncio.Redis`` (one server),
    a Sentinel-managed one (``redis.asyncio.sentinel.Sentinel(...).master_for(name)``) or a
    ``redis.asyncio.RedisCluster``. Whoever created the client closes it. Keys are ``key_prefix`` + the
    guard's key, so one Redis can serve several apps. No operation of the guard touches two keys at once
    (each Lua script works on one key), so on a Cluster the keys spread over every slot: a ``key_prefix``
    with a hash tag (``{...}``) would put them all on one node, and is refused there.
    For a quick 503 while Redis is down, give the client a short ``socket_connect_timeout`` and few
    retries, as :meth:`from_url` does.

    Replication is asynchronous: a write on a master that dies before its replica has it is lost with the
    master (SECURITY.md, "Failover"). With a Sentinel (or any master with replicas), ``wait_replicas=1``
    makes the writes that must survive one (a sign-in's claim and code mark, a session saved, a refresh
    token's claim and the rotated tokens) wait, up to ``wait_timeout`` seconds, until that many replicas
    have them (Redis ``WAIT``): what the guard answered on is on a replica too when the master dies.
    The refresh lock does not wait (the claim backs it up), nor do reads. If fewer replicas answer in
    time, the write stands on the master alone: counted in ``unreplicated_writes`` and logged once at
    WARNING, never failed, since failing it would turn a lagging replica into an outage. Not on a Redis
    Cluster (refused): ``WAIT`` there would have to reach the node that owns each key.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        key_prefix: str = "guard:",
        wait_replicas: int = 0,
        wait_timeout: float = 0.5,
    ) -> None:
        _redis_asyncio()
        if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int) or wait_replicas < 0:
            raise ConfigurationError(f"wait_replicas must be a whole number >= 0, got {wait_replicas!r}")
        if not wait_timeout > 0:
            raise ConfigurationError(f"wait_timeout must be positive seconds, got {wait_timeout!r}")
        if wait_replicas and _is_cluster(redis):
            raise ConfigurationError(_NO_CLUSTER_WAIT)
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
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self._wait_ms = max(1, math.ceil(wait_timeout * 1000))
        self.unreplicated_writes = 0
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

        Any of them takes ``?wait_replicas=N&wait_timeout=S`` (the constructor's settings; a Cluster
        refuses ``wait_replicas``); other query options go to redis-py.

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
        url, durability = _durability_options(url)
        scheme = urlsplit(url).scheme.lower()
        owned: list[Any]
        if scheme in ("redis+cluster", "rediss+cluster"):
            if durability.get("wait_replicas"):
                raise ConfigurationError(_NO_CLUSTER_WAIT)
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
        store = cls(client, key_prefix=key_prefix, **durability)
        store._owned = owned
        return store

    async def get(self, key: str) -> bytes | None:
        if not self._initialized:
            await self._initialize()
        return cast("bytes | None", await self.redis.get(self.key_prefix + key))

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        await self._set(key, value, ttl=ttl)

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        return bool(await self._set(key, value, ttl=ttl, nx=True))

    async def replace(self, key: str, value: bytes, *, ttl: float) -> bool:
        return bool(await self._set(key, value, ttl=ttl, xx=True))

    async def delete(self, key: str) -> None:
        if not self._initialized:
            await self._initialize()
        if not self.wait_replicas:
            await self.redis.delete(self.key_prefix + key)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.key_prefix + key)
            pipe.wait(self.wait_replicas, self._wait_ms)
            _, acked = await pipe.execute()
        self._replicated(acked)

    async def acquire(self, key: str, owner: str, *, lease: float) -> bool:
        # Never waits: a lock lost in a failover is backed by the refresh token's claim, which does.
        return bool(await self._set(key, owner.encode(), ttl=lease, nx=True, durable=False))

    async def _set(
        self, key: str, value: bytes, *, ttl: float, nx: bool = False, xx: bool = False, durable: bool = True
    ) -> object:
        if not self._initialized:
            await self._initialize()
        if not (durable and self.wait_replicas):
            return await self.redis.set(self.key_prefix + key, value, px=_milliseconds(ttl), nx=nx, xx=xx)
        # WAIT counts the replicas that have every write this connection made: it must follow the SET
        # on the same connection, which a pipeline guarantees (and the pair costs one round trip).
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key_prefix + key, value, px=_milliseconds(ttl), nx=nx, xx=xx)
            pipe.wait(self.wait_replicas, self._wait_ms)
            written, acked = await pipe.execute()
        self._replicated(acked)
        return written

    def _replicated(self, acked: object) -> None:
        if isinstance(acked, int) and acked >= self.wait_replicas:
            return
        self.unreplicated_writes += 1
        if self.unreplicated_writes == 1:
            logger.warning(
                "a Redis write reached %s of the %d replicas asked for within %.2f s: it stands on the "
                "master alone and a failover now could lose it (is a replica down or lagging?). Logged "
                "once; RedisStore.unreplicated_writes counts them",
                acked,
                self.wait_replicas,
                self.wait_timeout,
            )

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

    def __repr__(self) -> str:
        return f"<RedisStore key_prefix={self.key_prefix!r}>"


def _durability_options(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without ``wait_replicas``/``wait_timeout`` in its query, and those as settings."""
    parts = urlsplit(url)
    kept: list[tuple[str, str]] = []
    found: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        try:
            if name == "wait_replicas":
                found["wait_replicas"] = int(value)
            elif name == "wait_timeout":
                found["wait_timeout"] = float(value)
            else:
                kept.append((name, value))
        except ValueError:
            raise ConfigurationError(f"{name} must be a number, got {value!r}") from None
    return parts._replace(query=urlencode(kept)).geturl(), found


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
