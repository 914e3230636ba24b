"""Storage: one small async protocol, and the in-process default.

Every key the guard writes has a TTL; nothing lives forever. Values are opaque bytes:
the guard encrypts what is secret before it reaches a store.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

from ._errors import StoreUnavailable
from ._events import EventHook, GuardEvent, emit
from ._memory import MemoryStore

__all__ = ["MemoryStore", "Store"]

_Closing = TypeVar("_Closing", bound="ClosesOnExit")


class ClosesOnExit:
    """``async with store:`` closes it on the way out (:meth:`aclose`: what the store opened itself)."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: _Closing) -> _Closing:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


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


class CheckedStore:
    """Wraps the app's store so that whatever its backend raises (a connection refused, a timeout)
    surfaces as :class:`StoreUnavailable`, which the guard answers with a 503 and no lost session.
    The guard builds one around the store it is given; its flows then use the store plainly."""

    def __init__(self, store: Store, *, on_event: EventHook | None = None) -> None:
        self._store = store
        self.inner = store
        """The store wrapped: for the hot path's read, which translates failures itself with ``failed``."""
        self._on_event = on_event

    async def failed(self, operation: str, exc: Exception) -> StoreUnavailable:
        """What the store's own exception on ``operation`` becomes (its message is never kept: it may
        name a key), after the ``store_error`` event."""
        await emit(self._on_event, GuardEvent(kind="store_error", detail=operation))
        return StoreUnavailable(f"the store failed on {operation}: {type(exc).__name__}")

    async def get(self, key: str) -> bytes | None:
        try:
            return await self._store.get(key)
        except Exception as exc:
            raise await self.failed("read", exc) from None

    async def set(self, key: str, value: bytes, *, ttl: float) -> None:
        try:
            await self._store.set(key, value, ttl=ttl)
        except Exception as exc:
            raise await self.failed("write", exc) from None

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        try:
            return await self._store.add(key, value, ttl=ttl)
        except Exception as exc:
            raise await self.failed("claim", exc) from None

    async def replace(self, key: str, value: bytes, *, ttl: float) -> bool:
        try:
            return await self._store.replace(key, value, ttl=ttl)
        except Exception as exc:
            raise await self.failed("write", exc) from None

    async def delete(self, key: str) -> None:
        try:
            await self._store.delete(key)
        except Exception as exc:
            raise await self.failed("delete", exc) from None

    async def acquire(self, key: str, owner: str, *, lease: float) -> bool:
        try:
            return await self._store.acquire(key, owner, lease=lease)
        except Exception as exc:
            raise await self.failed("lock", exc) from None

    async def release(self, key: str, owner: str) -> bool:
        try:
            return await self._store.release(key, owner)
        except Exception as exc:
            raise await self.failed("unlock", exc) from None

    async def index_add(self, key: str, member: str, *, ttl: float) -> None:
        try:
            await self._store.index_add(key, member, ttl=ttl)
        except Exception as exc:
            raise await self.failed("index write", exc) from None

    async def index_members(self, key: str) -> list[str]:
        try:
            return await self._store.index_members(key)
        except Exception as exc:
            raise await self.failed("index read", exc) from None

    async def index_discard(self, key: str, member: str) -> None:
        try:
            await self._store.index_discard(key, member)
        except Exception as exc:
            raise await self.failed("index write", exc) from None
