"""A store in PostgreSQL, for apps that run several processes or hosts and no Redis.

Two tables: values (key, value, expiry) and index members (key, member, expiry). Every call is one
statement, so one round trip on an autocommit connection. Expiry is decided by the database's clock
(``now()``), the same for every host. ``add`` (and so ``acquire``) is an insert that takes over an expired
row (``ON CONFLICT ... DO UPDATE ... WHERE expired``): concurrent inserts of one key queue on its row,
and the second one finds it live and gets no row back. Expired rows are ignored by every read and removed
in bounded batches (``sweep``), at most every ``sweep_interval`` seconds on a write, or by your own job.

Built on psycopg 3 (async): it speaks libpq like the PostgreSQL tools (``sslmode``, service files,
``PG*`` variables and pgbouncer work as people configure them), Django's PostgreSQL backend already
uses it, and its pool (psycopg_pool) is maintained with it. asyncpg is faster on benchmarks but has
its own protocol and connection options, and the guard makes one short statement per request.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any, cast

import anyio

from ._errors import ConfigurationError
from ._store import ClosesOnExit

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

__all__ = ["PostgresStore"]

logger = logging.getLogger("asgi_oauth_guard")

_INSTALL = 'PostgresStore needs psycopg 3: pip install "asgi-oauth-guard[postgres]"'
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,40}")

SCHEMA = """\
CREATE TABLE IF NOT EXISTS {table} (
    key bytea PRIMARY KEY,
    value bytea NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS {table}_expires_at ON {table} (expires_at);
CREATE TABLE IF NOT EXISTS {table}_index (
    key bytea NOT NULL,
    member bytea NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (key, member)
);
CREATE INDEX IF NOT EXISTS {table}_index_expires_at ON {table}_index (expires_at);
"""


_STATEMENTS = {
    "get": "SELECT value FROM {t} WHERE key = %(key)s AND expires_at > now()",
    "set": "INSERT INTO {t} AS old (key, value, expires_at) VALUES (%(key)s, %(value)s, "
    "now() + make_interval(secs => %(ttl)s)) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
    "add": "INSERT INTO {t} AS old (key, value, expires_at) VALUES (%(key)s, %(value)s, "
    "now() + make_interval(secs => %(ttl)s)) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at "
    "WHERE old.expires_at <= now() RETURNING true",
    "replace": "UPDATE {t} SET value = %(value)s, expires_at = now() + make_interval(secs => %(ttl)s) "
    "WHERE key = %(key)s AND expires_at > now() RETURNING true",
    "delete": "WITH gone AS (DELETE FROM {t} WHERE key = %(key)s) DELETE FROM {i} WHERE key = %(key)s",
    "release": "DELETE FROM {t} WHERE key = %(key)s AND value = %(value)s AND expires_at > now() "
    "RETURNING true",
    "index_add": "INSERT INTO {i} AS old (key, member, expires_at) VALUES (%(key)s, %(member)s, "
    "now() + make_interval(secs => %(ttl)s)) "
    "ON CONFLICT (key, member) DO UPDATE SET expires_at = excluded.expires_at",
    "index_members": "SELECT member FROM {i} WHERE key = %(key)s AND expires_at > now() ORDER BY member",
    "index_discard": "DELETE FROM {i} WHERE key = %(key)s AND member = %(member)s",
    # SKIP LOCKED: two workers sweeping at once take different rows. The DELETE checks the expiry again on
    # the row's latest version, so a row that an `add` took over meanwhile stays.
    "sweep": "WITH doomed AS (SELECT key FROM {t} WHERE expires_at <= now() "
    "ORDER BY expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED), "
    "values_gone AS (DELETE FROM {t} AS v USING doomed WHERE v.key = doomed.key "
    "AND v.expires_at <= now() RETURNING 1), "
    "members AS (SELECT key, member FROM {i} WHERE expires_at <= now() "
    "ORDER BY expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED), "
    "members_gone AS (DELETE FROM {i} AS m USING members WHERE m.key = members.key "
    "AND m.member = members.member AND m.expires_at <= now() RETURNING 1) "
    "SELECT (SELECT count(*) FROM values_gone), (SELECT count(*) FROM members_gone)",
}


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ImportError(_INSTALL) from None
    return psycopg


def _seconds(ttl: float) -> float:
    if not ttl > 0:
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    return float(ttl)


class PostgresStore(ClosesOnExit):
    """A store in PostgreSQL: for several worker processes or hosts where PostgreSQL is already run.

    Give it a ready ``psycopg_pool.AsyncConnectionPool`` (opened, its connections in autocommit mode for
    one round trip per call: ``kwargs={"autocommit": True}``) or one ``psycopg.AsyncConnection`` in
    autocommit mode; whoever created it closes it. Or use :meth:`from_url`.

    The tables are ``table`` and ``table_index``; with ``create_tables`` they are created on first use
    (``CREATE TABLE IF NOT EXISTS``, under an advisory lock so that workers starting at once do not
    collide); else create them beforehand with the SQL of :meth:`schema` (a migration). Every
    ``sweep_interval`` seconds at most, a write also deletes up to ``sweep_batch`` expired rows.
    Sessions are kept in ordinary (logged) tables, so they survive a restart and reach standbys.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any] | AsyncConnection[Any],
        *,
        table: str = "asgi_oauth_guard",
        create_tables: bool = True,
        sweep_interval: float = 60.0,
        sweep_batch: int = 1000,
    ) -> None:
        _psycopg()
        if not _NAME.fullmatch(table):
            raise ConfigurationError(
                f"PostgresStore(table={table!r}): use a lower-case SQL name (letters, digits, _), "
                "at most 41 characters"
            )
        if sweep_batch < 1 or not sweep_interval > 0:
            raise ConfigurationError("PostgresStore: sweep_batch must be at least 1, sweep_interval positive")
        self.pool = pool
        # A pool lends a connection per call; one connection serves the calls in turn.
        self._pool = cast("AsyncConnectionPool[Any] | None", pool if hasattr(pool, "getconn") else None)
        self._connection = None if self._pool is not None else cast("AsyncConnection[Any]", pool)
        self.table = table
        self._create = create_tables
        self._ready = not create_tables
        self._sweep_interval = sweep_interval
        self._sweep_batch = sweep_batch
        self._next_sweep = time.monotonic() + sweep_interval
        self._owned = False
        self._opened = True
        self._preparing = anyio.Lock()
        sql = _psycopg().sql
        names = {"t": sql.Identifier(table), "i": sql.Identifier(table + "_index")}
        self._sql = {name: sql.SQL(text).format(**names) for name, text in _STATEMENTS.items()}

    @staticmethod
    def schema(table: str = "asgi_oauth_guard") -> str:
        """The SQL that creates the store's tables and indexes: run it as a migration, then give
        ``create_tables=False`` so that the app's database user needs no CREATE privilege."""
        if not _NAME.fullmatch(table):
            raise ConfigurationError(f"not a usable table name: {table!r}")
        return SCHEMA.format(table=table)  # a checked plain name: nothing to quote

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        table: str = "asgi_oauth_guard",
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 2.0,
        pool_timeout: float = 2.0,
        **options: Any,
    ) -> PostgresStore:
        """A store with its own connection pool for ``url`` (``postgresql://user[:password]@host:port/dbname``,
        libpq's URL and its query parameters such as ``sslmode``).

        The pool opens on first use, so this can run before an event loop does; the store owns it:
        close it with :meth:`aclose` (or ``async with``). A request that cannot get a connection within
        ``pool_timeout`` seconds fails (the guard answers 503). ``options`` go to
        ``psycopg_pool.AsyncConnectionPool``.
        """
        _psycopg()
        try:
            from psycopg_pool import AsyncConnectionPool
        except ImportError:
            raise ImportError(_INSTALL) from None
        kwargs = {"autocommit": True, "connect_timeout": max(1, round(connect_timeout))}
        kwargs.update(options.pop("kwargs", {}))
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=pool_timeout,
            kwargs=kwargs,
            open=False,
            name="asgi-oauth-guard",
            **options,
        )
        store = cls(pool, table=table)
        store._owned = True
        store._opened = False
        return store

    async def _run(self, name: str, params: dict[str, Any]) -> Any:
        """Run one statement; the cursor after it (its rows fetched by the caller)."""
        if not self._ready:
            await self._prepare()
        if self._pool is not None:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(self._sql[name], params)
                return await cursor.fetchall() if cursor.description else cursor.rowcount
        assert self._connection is not None
        cursor = await self._connection.execute(self._sql[name], params)
        return await cursor.fetchall() if cursor.description else cursor.rowcount

    async def _prepare(self) -> None:
        async with self._preparing:
            if not self._ready:
                await self._open_and_create()

    async def _open_and_create(self) -> None:
        if not self._opened:
            assert self._pool is not None
            await self._pool.open(wait=False)
            self._opened = True
        if self._create:
            statements = [s for s in self.schema(self.table).split(";\n") if s.strip()]
            if self._pool is not None:
                async with self._pool.connection() as conn:
                    await self._create_tables(conn, statements)
            else:
                assert self._connection is not None
                await self._create_tables(self._connection, statements)
        self._ready = True

    async def _create_tables(self, conn: AsyncConnection[Any], statements: list[str]) -> None:
        async with conn.transaction():
            # Workers starting together would race on the catalog: one at a time.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
            for statement in statements:
                await conn.execute(statement)

    async def _after_write(self) -> None:
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + self._sweep_interval
        try:
            swept = await self.sweep()
        except Exception as exc:
            logger.warning(
                "PostgresStore: removing expired rows failed (%s); will try again", type(exc).__name__
            )
            return
        if swept >= self._sweep_batch:
            self._next_sweep = time.monotonic() + 1.0  # more to do: soon, still one batch at a time

    async def sweep(self) -> int:
        """Delete up to ``sweep_batch`` expired values and as many expired index members; how many went.
        Writes call this every ``sweep_interval`` seconds at most; a cron job may call it too."""
        rows = await self._run("sweep", {"limit": self._sweep_batch})
        return int(rows[0][0]) + int(rows[0][1])

    async def get(self, key: str) -> bytes | None:
        rows = await self._run("get", {"key": key.encode()})
        return bytes(rows[0][0]) if rows else None

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        await self._run("set", {"key": key.encode(), "value": value, "ttl": _seconds(ttl)})
        await self._after_write()

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        rows = await self._run("add", {"key": key.encode(), "value": value, "ttl": _seconds(ttl)})
        await self._after_write()
        return bool(rows)

    async def replace(self, key: str, value: bytes, *, ttl: float) -> bool:
        rows = await self._run("replace", {"key": key.encode(), "value": value, "ttl": _seconds(ttl)})
        return bool(rows)

    async def delete(self, key: str) -> None:
        await self._run("delete", {"key": key.encode()})

    async def acquire(self, key: str, owner: str, *, lease: float) -> bool:
        return await self.add(key, owner.encode(), ttl=lease)

    async def release(self, key: str, owner: str) -> bool:
        rows = await self._run("release", {"key": key.encode(), "value": owner.encode()})
        return bool(rows)

    async def index_add(self, key: str, member: str, *, ttl: float) -> None:
        await self._run("index_add", {"key": key.encode(), "member": member.encode(), "ttl": _seconds(ttl)})
        await self._after_write()

    async def index_members(self, key: str) -> list[str]:
        rows = await self._run("index_members", {"key": key.encode()})
        return [bytes(row[0]).decode() for row in rows]

    async def index_discard(self, key: str, member: str) -> None:
        await self._run("index_discard", {"key": key.encode(), "member": member.encode()})

    async def aclose(self) -> None:
        """Close the pool if :meth:`from_url` made it; a pool or connection given to the constructor is
        left open."""
        if self._owned:
            self._owned = False
            assert self._pool is not None
            await self._pool.close()

    def __repr__(self) -> str:
        return f"<PostgresStore table={self.table!r}>"
