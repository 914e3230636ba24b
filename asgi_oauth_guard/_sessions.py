"""Sessions in the store: sealed with the per-session key from the cookie, one store read per load.

Nothing is cached here: every load decrypts what the store returned. The hot path does not load; it
serves what it published for the same store bytes before (``_published``), and comes here only for a
session it has not seen in that version.

A new session is written with ``create``; every later write is a ``replace`` (set only if it still
exists), so a refresh or a touch that finishes after the session ended (signed out, expired) never
brings it back.

With an index (``_index.SessionIndex``), a sign-in files the session under its user and provider session
until its absolute age ends, each later write notes when it was last used, and a delete unfiles it, so
sessions can be listed and ended by user.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from . import _json
from ._crypto import seal, unseal_view
from ._index import SessionIndex
from ._lifetime import TOUCH_INTERVAL, Lifetime
from ._session import RECORD_FORMAT, Session
from ._store import CheckedStore, Store

logger = logging.getLogger("asgi_oauth_guard")

SESSION_PREFIX = "s:"
_LATER_FORMAT_EVERY = 60.0  # seconds between two warnings of records of a later format


class Sessions:
    def __init__(
        self,
        store: Store,
        *,
        lifetime: Lifetime,
        clock: Callable[[], float],
        index: SessionIndex | None = None,
        record_format: int = RECORD_FORMAT,
    ) -> None:
        self._store = store
        self._format = record_format
        self._later_warned: float | None = None  # when a record of a later format was last warned of
        checked = store if isinstance(store, CheckedStore) else None
        self._checked = checked
        self.inner: Store = checked.inner if checked is not None else store
        """The store itself, without the CheckedStore layer (one coroutine fewer): :meth:`load` and the hot
        path read sessions with its ``get`` (looked up per call), failures translated by :meth:`failed`."""
        self.index = index
        self.lifetime = lifetime
        self._clock = clock

    async def load(self, sid: str, key: bytes) -> Session | None:
        return self.opened(sid, key, await self.read(sid))

    async def read(self, sid: str) -> bytes | None:
        """The stored bytes of session ``sid``, or ``None``: one store read."""
        try:
            return await self.inner.get(SESSION_PREFIX + sid)
        except Exception as exc:
            raise await self.failed(exc) from None

    async def failed(self, exc: Exception) -> Exception:
        """What a failed read raises: the CheckedStore's ``StoreUnavailable``, or ``exc`` itself."""
        return exc if self._checked is None else await self._checked.failed("read", exc)

    def opened(self, sid: str, key: bytes, blob: bytes | None) -> Session | None:
        """The session in ``blob`` (read from the store for ``sid``), or ``None`` when there is none, or
        it is not sealed with ``key`` for ``sid``, or it is not a session record."""
        return self.session_of(self.record(sid, key, blob))

    def record(self, sid: str, key: bytes, blob: bytes | None) -> list[Any] | dict[str, Any] | None:
        """The parsed record in ``blob`` (read from the store for ``sid``): a JSON array (format 2) or object
        (format 1), not yet checked to be a session; ``None`` when there is none, or it is not sealed with
        ``key`` for ``sid``."""
        if blob is None:
            return None
        plain = unseal_view(key, sid.encode(), blob)  # parsed at once: the view is this thread's buffer
        if plain is None:
            return None
        try:
            raw = _json.loads(plain)
        except ValueError:  # json.JSONDecodeError and orjson's are ValueErrors
            return None
        return raw if type(raw) is list or type(raw) is dict else None

    @staticmethod
    def session_of(raw: list[Any] | dict[str, Any] | None) -> Session | None:
        """The session of a parsed record (:meth:`record`, consumed), or ``None`` if it is not one."""
        if raw is None:
            return None
        try:
            return Session.from_record(raw)
        except (TypeError, KeyError):
            return None

    def refused(self, raw: list[Any] | dict[str, Any] | None) -> None:
        """A parsed record (:meth:`record`) that is not a session this version reads: if it is one of a
        later format, a later version shares the store (a rolling deploy, a rollback), and its users are
        asked to sign in again. Said in a WARNING, at most once a minute, naming the format, never a value."""
        if type(raw) is not list or not raw or type(raw[0]) is not int or raw[0] <= RECORD_FORMAT:
            return
        now = self._clock()
        if self._later_warned is not None and now - self._later_warned < _LATER_FORMAT_EVERY:
            return
        self._later_warned = now
        logger.warning(
            "a session record of format %d, which a later version of asgi-oauth-guard wrote: this version "
            "reads formats up to %d, so its user is asked to sign in again. A later version shares the "
            "store (a rolling deploy, or a rollback): run one version everywhere, or have the later one "
            "write a format this one reads while both run (its session_record_format=). This warning "
            "repeats at most every 60 s.",
            raw[0],
            RECORD_FORMAT,
        )

    async def save(self, session: Session, key: bytes) -> None:
        """Write a new session (a sign-in)."""
        blob = seal(key, session.sid.encode(), session.dumps(self._format))
        ttl = self.lifetime.ttl(session, self._clock())
        await self._store.set(SESSION_PREFIX + session.sid, blob, ttl=ttl)
        if self.index is not None:
            await self.index.file(session, ttl=self._index_ttl(session))

    async def replace(self, session: Session, key: bytes) -> bool:
        """Write an existing session; ``False`` (and nothing written) when it has ended meanwhile."""
        blob = seal(key, session.sid.encode(), session.dumps(self._format))
        ttl = self.lifetime.ttl(session, self._clock())
        if not await self._store.replace(SESSION_PREFIX + session.sid, blob, ttl=ttl):
            return False
        if self.index is not None:
            await self.index.touch(session, ttl=self._index_ttl(session))
        return True

    async def drop_tokens(self, session: Session, key: bytes) -> Session:
        """Forget the tokens the provider refused; the session stays so later answers say why."""
        emptied = dataclasses.replace(session, tokens=None)
        await self.replace(emptied, key)
        return emptied

    async def exists(self, sid: str) -> bool:
        """Whether the session is still stored (readable or not: its key is only in its cookie)."""
        return await self._store.get(SESSION_PREFIX + sid) is not None

    async def delete(self, sid: str) -> None:
        await self._store.delete(SESSION_PREFIX + sid)
        if self.index is not None:
            await self.index.unfile(sid)

    def _index_ttl(self, session: Session) -> float:
        # The index entries outlive nothing: no session lives past its absolute age (and a minute).
        return max(1.0, session.created_at + self.lifetime.max_age - self._clock() + TOUCH_INTERVAL)
