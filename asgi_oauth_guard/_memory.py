"""The in-process store: bounded by entries and by bytes, and fair between the two kinds of record.

The guard writes two kinds of record. **Sessions** (``s:``, their metadata ``m:`` and indexes ``iu:``,
``io:``) are long-lived, one per signed-in browser. Everything else is **in flight**: sign-ins (``tx:``,
``b:``), claims and outcomes of callbacks (``claim:``, ``out:``, ``code:``), locks, spent-token results,
back-channel ``jti`` marks; short-lived, and needed to finish what a user is doing right now.

When the store is full, a new record pushes out a record of whichever kind holds more than half of the
budget (sessions least-recently-used first, records in flight soonest-to-expire first), else one of its
own kind. So a store full of sessions still takes every new sign-in (the oldest idle sessions give way,
with a WARNING), sessions never push out sign-ins in flight while those hold half the budget or less, and a
flood of sign-ins only pushes out other sign-ins once it holds half.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

__all__ = ["EVICTABLE_PREFIXES", "MemoryStore"]

logger = logging.getLogger("asgi_oauth_guard")

# The guard's session records (see the module docstring); every other key is a record in flight.
EVICTABLE_PREFIXES = ("s:", "m:", "iu:", "io:")
# Bytes counted per entry beside its key and value: what Python spends on the dict slot, tuple and objects.
ENTRY_OVERHEAD = 120
MEMBER_OVERHEAD = 60
WARNING_INTERVAL = 60.0  # seconds between two WARNINGs about evicted sessions (real time)

_IN_FLIGHT, _SESSION = 0, 1


class MemoryStore:
    """A store in this process's memory: the embedded default, for one worker process.

    Bounded by ``max_entries`` and ``max_bytes`` (keys, values and a per-entry overhead). Expired entries
    are dropped as they are met and in batches when the store is full; then, sessions (keys starting with
    one of ``evictable_prefixes``) give way least-recently-used, and never push out sign-ins in flight
    unless those hold more than half the budget. A WARNING (at most once a minute) says when sessions were
    evicted: raise the limits, or use :class:`~asgi_oauth_guard.RedisStore` (several processes or hosts).
    """

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        max_bytes: int = 256 * 1024 * 1024,
        evictable_prefixes: Sequence[str] = EVICTABLE_PREFIXES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("MemoryStore(max_entries=...) must be at least 1")
        if max_bytes < 4096:
            raise ValueError("MemoryStore(max_bytes=...) must be at least 4096")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._evictable = tuple(evictable_prefixes)
        self._clock = clock
        self._data: dict[str, tuple[bytes, float]] = {}
        self._indexes: dict[str, dict[str, float]] = {}
        self._sizes: dict[str, int] = {}
        self._counts = [0, 0]
        self._bytes = [0, 0]
        self._lru: OrderedDict[str, None] = OrderedDict()  # session keys, least recently used first
        # per kind, every entry's expiry (stale ones skipped when met): for sweeps and in-flight eviction
        # (expiry, write order, key): among records that expire together, the older one goes first
        self._expiries: tuple[list[tuple[float, int, str]], list[tuple[float, int, str]]] = ([], [])
        self._writes = itertools.count()
        self.evicted_sessions = 0
        """Sessions pushed out to make room, since this store was made."""
        self._unreported = 0
        self._warned_at: float | None = None

    def __len__(self) -> int:
        return len(self._data) + len(self._indexes)

    @property
    def size(self) -> int:
        """The bytes counted against ``max_bytes``."""
        return self._bytes[0] + self._bytes[1]

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            self._drop(key)
            return None
        # A session's record is in the LRU (``_put``): moved without looking it up first (for a session not
        # read lately, each lookup is a few cache misses).
        if key.startswith(self._evictable):
            self._lru.move_to_end(key)
        return item[0]

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        self._put(key, value, ttl)

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        if await self.get(key) is not None:
            return False
        self._put(key, value, ttl)
        return True

    async def replace(self, key: str, value: bytes, *, ttl: float) -> bool:
        if await self.get(key) is None:
            _check_ttl(ttl)
            return False
        self._put(key, value, ttl)
        return True

    async def delete(self, key: str) -> None:
        self._drop(key)

    async def acquire(self, key: str, owner: str, *, lease: float) -> bool:
        return await self.add(key, owner.encode(), ttl=lease)

    async def release(self, key: str, owner: str) -> bool:
        if await self.get(key) == owner.encode():
            self._drop(key)
            return True
        return False

    async def index_add(self, key: str, member: str, *, ttl: float) -> None:
        _check_ttl(ttl)
        kind = self._kind(key)
        members = self._live_members(key)
        if members is None:
            self._make_room(kind, ENTRY_OVERHEAD + len(key) + len(member) + MEMBER_OVERHEAD, new=True)
            members = self._indexes[key] = {}
            self._counts[kind] += 1
            self._sizes[key] = 0
        elif member not in members:
            if key in self._lru:
                self._lru.move_to_end(key)  # not the one to push out for its own growth
            self._make_room(kind, len(member) + MEMBER_OVERHEAD, new=False)
            members = self._indexes.get(key)
            if members is None:  # it was the only thing left to push out
                members = self._indexes[key] = {}
                self._counts[kind] += 1
                self._sizes[key] = 0
        expires = self._clock() + ttl
        members[member] = expires
        self._resize(key, kind)
        if kind == _SESSION:
            self._lru[key] = None
            self._lru.move_to_end(key)
        heapq.heappush(self._expiries[kind], (expires, next(self._writes), key))
        self._compact_if_needed(kind)

    async def index_members(self, key: str) -> list[str]:
        members = self._live_members(key)
        if not members:
            return []
        if key in self._lru:
            self._lru.move_to_end(key)
        return list(members)

    async def index_discard(self, key: str, member: str) -> None:
        members = self._live_members(key)
        if members is not None and members.pop(member, None) is not None:
            if members:
                self._resize(key, self._kind(key))
            else:
                self._drop(key)

    # -- bookkeeping ---------------------------------------------------------------------------------

    def _kind(self, key: str) -> int:
        return _SESSION if key.startswith(self._evictable) else _IN_FLIGHT

    def _put(self, key: str, value: bytes, ttl: float) -> None:
        _check_ttl(ttl)
        expires = self._clock() + ttl
        kind = self._kind(key)
        self._drop(key)  # a key written again is replaced: it counts once, and evicts nothing for itself
        size = ENTRY_OVERHEAD + len(key) + len(value)
        self._make_room(kind, size, new=True)
        self._data[key] = (value, expires)
        self._sizes[key] = size
        self._counts[kind] += 1
        self._bytes[kind] += size
        if kind == _SESSION:
            self._lru[key] = None
        heapq.heappush(self._expiries[kind], (expires, next(self._writes), key))
        self._compact_if_needed(kind)

    def _resize(self, key: str, kind: int) -> None:
        members = self._indexes[key]
        size = ENTRY_OVERHEAD + len(key) + sum(len(m) + MEMBER_OVERHEAD for m in members)
        self._bytes[kind] += size - self._sizes[key]
        self._sizes[key] = size

    def _drop(self, key: str) -> None:
        size = self._sizes.pop(key, None)
        if size is None:
            return
        kind = self._kind(key)
        self._data.pop(key, None)
        self._indexes.pop(key, None)
        self._lru.pop(key, None)
        self._counts[kind] -= 1
        self._bytes[kind] -= size

    def _live_members(self, key: str) -> dict[str, float] | None:
        """The index at ``key`` with its expired members dropped; ``None`` when nothing is left."""
        members = self._indexes.get(key)
        if members is None:
            return None
        now = self._clock()
        expired = [m for m, expires in members.items() if expires <= now]
        if expired:
            for member in expired:
                del members[member]
            if not members:
                self._drop(key)
                return None
            self._resize(key, self._kind(key))
        return members

    def _fits(self, size: int, *, new: bool) -> bool:
        count = self._counts[0] + self._counts[1] + (1 if new else 0)
        return count <= self._max_entries and self.size + size <= self._max_bytes

    def _make_room(self, kind: int, size: int, *, new: bool) -> None:
        if self._fits(size, new=new):
            return
        self._sweep()
        evicted = 0
        while not self._fits(size, new=new) and len(self) > 0:
            victim = self._victim_kind(kind, size, new=new)
            key = self._oldest(victim) or self._oldest(1 - victim)
            if key is None:
                break
            self._drop(key)
            evicted += self._kind(key) == _SESSION
        if evicted:
            self._report(evicted)

    def _victim_kind(self, kind: int, size: int, *, new: bool) -> int:
        """Of whichever kind holds more than its half of the exhausted budget, else of the newcomer's."""
        count = self._counts[0] + self._counts[1] + (1 if new else 0)
        if count > self._max_entries:
            shares, half = self._counts, self._max_entries / 2
        else:
            shares, half = self._bytes, self._max_bytes / 2
        other = 1 - kind
        return other if shares[other] > half else kind

    def _oldest(self, kind: int) -> str | None:
        if kind == _SESSION:
            return next(iter(self._lru), None)
        heap = self._expiries[_IN_FLIGHT]
        while heap:
            expires, _, key = heap[0]
            if self._expiry(key) == expires:
                return key
            heapq.heappop(heap)  # stale: the key is gone or was written again
        return None

    def _expiry(self, key: str) -> float | None:
        item = self._data.get(key)
        if item is not None:
            return item[1]
        members = self._indexes.get(key)
        return max(members.values()) if members else None

    def _sweep(self) -> None:
        """Drop every expired entry (and index whose last member has expired)."""
        now = self._clock()
        for heap in self._expiries:
            while heap and heap[0][0] <= now:
                expires, _, key = heapq.heappop(heap)
                if self._expiry(key) == expires:
                    self._drop(key)

    def _compact_if_needed(self, kind: int) -> None:
        heap = self._expiries[kind]
        if len(heap) > 2 * self._counts[kind] + 64:
            heap[:] = [
                (exp, next(self._writes), k)
                for k in self._sizes
                if self._kind(k) == kind and (exp := self._expiry(k)) is not None
            ]
            heapq.heapify(heap)

    def _report(self, evicted: int) -> None:
        self.evicted_sessions += evicted
        self._unreported += evicted
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < WARNING_INTERVAL:
            return
        logger.warning(
            "MemoryStore is full (max_entries=%d, max_bytes=%d): %d least-recently-used session(s) "
            "signed out to make room; raise the limits, or use RedisStore",
            self._max_entries,
            self._max_bytes,
            self._unreported,
        )
        self._warned_at = now
        self._unreported = 0


def _check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError(f"ttl must be positive, got {ttl!r}")
