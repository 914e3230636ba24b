"""Storage: one small async protocol, and the in-process default.

Every key the guard writes has a TTL; nothing lives forever. Values are opaque bytes:
the guard encrypts what is secret before it reaches a store.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ._errors import StoreUnavailable

__all__ = ["MemoryStore", "Store"]


@runtime_checkable
class Store(Protocol):
    """What the guard needs from a store. Every method is atomic on its own.

    - ``get``/``set``/``delete``: plain values with a TTL in seconds.
    - ``add``: set only if absent; ``True`` for the one caller that created it. The callback's claim.
    - ``replace``: set only if present (and not expired); ``True`` when it was set. Saves of an existing
      session use it, so a refresh that finishes after the session ended never brings it back.
    - ``acquire``/``release``: a lock with a lease. ``acquire`` is ``add`` of an owner token;
      ``release`` deletes the key only while it still holds that owner (compare-and-delete),
      so a holder whose lease ran out cannot free somebody else's lock.
    - ``index_add``/``index_members``/``index_discard``: a set of short strings under one key, each member
      with its own expiry; the set lives as long as its longest-lived member. Indexes from a user or an
      OpenID ``sid`` to session ids (back-channel logout, ending a user's sessions); callers bound its size.
    """

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, *, ttl: float) -> None: ...

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool: ...

    async def replace(self, key: str, value: bytes, *, ttl: float) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def acquire(self, key: str, owner: str, *, lease: float) -> bool: ...

    async def release(self, key: str, owner: str) -> bool: ...

    async def index_add(self, key: str, member: str, *, ttl: float) -> None: ...

    async def index_members(self, key: str) -> list[str]: ...

    async def index_discard(self, key: str, member: str) -> None: ...


class MemoryStore:
    """A store in this process's memory: the embedded default, for one worker process.

    Expired entries are evicted as they are met and in batches on writes; ``max_entries``
    bounds the memory (when full, the entries closest to expiry go first).
    Use :class:`~asgi_oauth_guard.RedisStore` when several processes or hosts serve one app.
    """

    def __init__(self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("MemoryStore(max_entries=...) must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._data: dict[str, tuple[bytes, float]] = {}
        self._expiries: list[tuple[float, str]] = []
        self._indexes: dict[str, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self._data) + len(self._indexes)

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._data[key]
            return None
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
        self._data.pop(key, None)
        self._indexes.pop(key, None)

    async def acquire(self, key: str, owner: str, *, lease: float) -> bool:
        return await self.add(key, owner.encode(), ttl=lease)

    async def release(self, key: str, owner: str) -> bool:
        if await self.get(key) == owner.encode():
            del self._data[key]
            return True
        return False

    async def index_add(self, key: str, member: str, *, ttl: float) -> None:
        _check_ttl(ttl)
        members = self._live_members(key)
        if members is None:
            if len(self) >= self._max_entries:
                self._evict()
            members = self._indexes[key] = {}
        expires = self._clock() + ttl
        members[member] = expires
        heapq.heappush(self._expiries, (expires, key))
        if len(self._expiries) > 2 * self._max_entries + 64:
            self._compact()

    async def index_members(self, key: str) -> list[str]:
        members = self._live_members(key)
        return list(members) if members else []

    async def index_discard(self, key: str, member: str) -> None:
        members = self._live_members(key)
        if members is not None:
            members.pop(member, None)
            if not members:
                del self._indexes[key]

    def _live_members(self, key: str) -> dict[str, float] | None:
        """The index at ``key`` with its expired members dropped; ``None`` when nothing is left."""
        members = self._indexes.get(key)
        if members is None:
            return None
        now = self._clock()
        for member in [m for m, expires in members.items() if expires <= now]:
            del members[member]
        if not members:
            del self._indexes[key]
            return None
        return members

    def _put(self, key: str, value: bytes, ttl: float) -> None:
        _check_ttl(ttl)
        expires = self._clock() + ttl
        if key not in self._data and len(self) >= self._max_entries:
            self._evict()
        self._data[key] = (value, expires)
        heapq.heappush(self._expiries, (expires, key))
        if len(self._expiries) > 2 * self._max_entries + 64:
            self._compact()

    def _evict(self) -> None:
        """Drop expired entries and indexes; if still full, drop the entries that expire soonest."""
        now = self._clock()
        while self._expiries and (self._expiries[0][0] <= now or len(self) >= self._max_entries):
            expires, key = heapq.heappop(self._expiries)
            item = self._data.get(key)
            if item is not None and item[1] == expires:
                del self._data[key]
            members = self._indexes.get(key)
            if members is not None and max(members.values()) == expires:
                del self._indexes[key]  # its longest-lived member's time has come: the whole index goes

    def _compact(self) -> None:
        self._expiries = [(exp, key) for key, (_, exp) in self._data.items()]
        self._expiries += [(max(members.values()), key) for key, members in self._indexes.items()]
        heapq.heapify(self._expiries)


class CheckedStore:
    """Wraps the app's store so that whatever its backend raises (a connection refused, a timeout)
    surfaces as :class:`StoreUnavailable`, which the guard answers with a 503 and no lost session.
    The guard builds one around the store it is given; its flows then use the store plainly."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, key: str) -> bytes | None:
        try:
            return await self._store.get(key)
        except Exception as exc:
            raise _unavailable("read", exc) from None

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        try:
            await self._store.set(key, value, ttl=ttl)
        except Exception as exc:
            raise _unavailable("write", exc) from None

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        try:
            return await self._store.add(key, value, ttl=ttl)
        except Exception as exc:
            raise _unavailable("claim", exc) from None

    async def replace(self, key: str, value: bytes, *, ttl: float) -> bool:
        try:
            return await self._store.replace(key, value, ttl=ttl)
        except Exception as exc:
            raise _unavailable("write", exc) from None

    async def delete(self, key: str) -> None:
        try:
            await self._store.delete(key)
        except Exception as exc:
            raise _unavailable("delete", exc) from None

    async def acquire(self, key: str, owner: str, *, lease: float) -> bool:
        try:
            return await self._store.acquire(key, owner, lease=lease)
        except Exception as exc:
            raise _unavailable("lock", exc) from None

    async def release(self, key: str, owner: str) -> bool:
        try:
            return await self._store.release(key, owner)
        except Exception as exc:
            raise _unavailable("unlock", exc) from None

    async def index_add(self, key: str, member: str, *, ttl: float) -> None:
        try:
            await self._store.index_add(key, member, ttl=ttl)
        except Exception as exc:
            raise _unavailable("index write", exc) from None

    async def index_members(self, key: str) -> list[str]:
        try:
            return await self._store.index_members(key)
        except Exception as exc:
            raise _unavailable("index read", exc) from None

    async def index_discard(self, key: str, member: str) -> None:
        try:
            await self._store.index_discard(key, member)
        except Exception as exc:
            raise _unavailable("index write", exc) from None


def _check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError(f"ttl must be positive, got {ttl!r}")


def _unavailable(operation: str, exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"the store failed on {operation}: {type(exc).__name__}")
