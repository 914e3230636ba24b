"""Which sessions belong to whom: indexes from a user (``sub``) and from the provider's session (OIDC ``sid``)
to session ids, and a small metadata record per session, so that sessions can be listed and ended by user
or provider session, in every worker, without the per-session keys (which live only in the cookies).

Nothing secret is kept here: index keys are HMAC tags of the issuer and the ``sub``/``sid`` (a store dump
does not name the user), and the metadata record holds times, the issuer and those tags, never a token.
Every entry expires when its session must have ended (its absolute age), and a user has at most
``max_per_user`` sessions: a sign-in beyond that ends the user's oldest ones.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

from . import _json
from ._crypto import Keyring
from ._session import Session, fields_of
from ._store import Store

__all__ = ["SessionIndex", "SessionInfo"]

logger = logging.getLogger("asgi_oauth_guard")

USER_PREFIX = "iu:"
OP_SESSION_PREFIX = "io:"
META_PREFIX = "m:"
MAX_SESSIONS_PER_USER = 100


@dataclasses.dataclass(frozen=True, kw_only=True)
class SessionInfo:
    """One of a user's sessions, as :meth:`OAuthGuard.sessions_of` lists them. Holds no token.

    ``id`` is opaque (it opens nothing without the cookie); ``created_at`` is the sign-in; ``last_used``
    the last sign-in or token refresh of the session (epoch seconds); ``issuer`` the provider's.
    """

    id: str
    created_at: float
    last_used: float
    issuer: str
    auth_time: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Meta:
    created_at: float
    last_used: float
    issuer: str
    auth_time: float | None
    user: str | None  # the index tags this session is filed under, to unfile it when it ends
    op_session: str | None

    def dumps(self) -> bytes:
        return _json.dumps(fields_of(self))

    @classmethod
    def loads(cls, data: bytes) -> _Meta | None:
        try:
            raw = _json.loads(data)
            return cls(**{f.name: raw.get(f.name) for f in dataclasses.fields(cls)})
        except (ValueError, TypeError):
            return None


class SessionIndex:
    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        *,
        clock: Callable[[], float],
        max_per_user: int = MAX_SESSIONS_PER_USER,
    ) -> None:
        self._store = store
        self._keys = keyring
        self._clock = clock
        self._max_per_user = max_per_user

    async def file(self, session: Session, *, ttl: float) -> None:
        """File a new session under its user and provider session, for ``ttl`` seconds."""
        meta = self._meta(session)
        await self._store.set(META_PREFIX + session.sid, meta.dumps(), ttl=ttl)
        if meta.user is not None:
            await self._store.index_add(USER_PREFIX + meta.user, session.sid, ttl=ttl)
        if meta.op_session is not None:
            await self._store.index_add(OP_SESSION_PREFIX + meta.op_session, session.sid, ttl=ttl)

    async def touch(self, session: Session, *, ttl: float) -> None:
        """Note that a session was used (a refresh, a request written down): only while it is filed, so a
        late write after the session ended leaves nothing behind."""
        await self._store.replace(META_PREFIX + session.sid, self._meta(session).dumps(), ttl=ttl)

    def _meta(self, session: Session) -> _Meta:
        issuer = session.issuer or ""
        sub, oidc_sid = session.sub, session.oidc_sid
        return _Meta(
            created_at=session.created_at,
            last_used=self._clock(),
            issuer=issuer,
            auth_time=session.auth_time,
            user=self._keys.tags("index-sub", issuer, sub)[0] if sub else None,
            op_session=self._keys.tags("index-sid", issuer, oidc_sid)[0] if oidc_sid else None,
        )

    async def beyond_cap(self, sub: str, *, issuer: str) -> list[str]:
        """The user's oldest session ids beyond ``max_per_user``, to end (a bound on every index)."""
        sids = await self.sessions_of_sub(sub, issuer=issuer)
        if len(sids) <= self._max_per_user:
            return []
        infos = [info for info in [await self.info(sid) for sid in sids] if info is not None]
        infos.sort(key=lambda info: info.created_at)
        return [info.id for info in infos[: len(infos) - self._max_per_user]]

    async def sessions_of_sub(self, sub: str, *, issuer: str) -> list[str]:
        return await self._members(USER_PREFIX, self._keys.tags("index-sub", issuer, sub))

    async def sessions_of_op_session(self, oidc_sid: str, *, issuer: str) -> list[str]:
        return await self._members(OP_SESSION_PREFIX, self._keys.tags("index-sid", issuer, oidc_sid))

    async def info(self, sid: str) -> SessionInfo | None:
        raw = await self._store.get(META_PREFIX + sid)
        meta = _Meta.loads(raw) if raw is not None else None
        if meta is None:
            return None
        return SessionInfo(
            id=sid,
            created_at=float(meta.created_at),
            last_used=float(meta.last_used),
            issuer=str(meta.issuer),
            auth_time=meta.auth_time,
        )

    async def unfile(self, sid: str) -> None:
        """Forget an ended session: its metadata and its places in the indexes."""
        raw = await self._store.get(META_PREFIX + sid)
        meta = _Meta.loads(raw) if raw is not None else None
        if meta is not None:
            if meta.user:
                await self._store.index_discard(USER_PREFIX + meta.user, sid)
            if meta.op_session:
                await self._store.index_discard(OP_SESSION_PREFIX + meta.op_session, sid)
        await self._store.delete(META_PREFIX + sid)

    async def _members(self, prefix: str, tags: Sequence[str]) -> list[str]:
        # One tag per secret key, newest first: sessions filed before a key rotation are found too.
        found: dict[str, None] = {}
        for tag in tags:
            for sid in await self._store.index_members(prefix + tag):
                found[sid] = None
        return list(found)
