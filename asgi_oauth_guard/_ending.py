"""Ending sessions on purpose: by user (the app's ``end_sessions``), by the provider's session (back-channel
logout), and the oldest of a user beyond the cap. Works in every worker: the store is the truth, and a
deleted session is gone for each worker's next request (its next read of the session finds nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from ._events import EventHook, GuardEvent, emit
from ._index import SessionIndex, SessionInfo
from ._sessions import Sessions
from .providers._client import ProviderClient

__all__ = ["Cause", "SessionEnder"]

Cause = Literal["backchannel", "app", "user_limit"]


class SessionEnder:
    """Each call names the provider: a ``sub`` or ``sid`` means something only at its issuer."""

    def __init__(self, *, sessions: Sessions, index: SessionIndex, on_event: EventHook | None) -> None:
        self._sessions = sessions
        self._index = index
        self._on_event = on_event

    @staticmethod
    async def issuer(provider: ProviderClient) -> str:
        return (await provider.endpoints()).issuer

    async def end_user(self, sub: str, *, provider: ProviderClient, cause: Cause) -> int:
        sids = await self._index.sessions_of_sub(sub, issuer=await self.issuer(provider))
        return await self.end(sids, cause=cause, sub=sub, provider=provider.name)

    async def end_op_session(
        self, oidc_sid: str, *, sub: str | None, provider: ProviderClient, cause: Cause
    ) -> int:
        """The sessions of the provider's session ``oidc_sid`` (and of ``sub`` when given: both match)."""
        issuer = await self.issuer(provider)
        sids = await self._index.sessions_of_op_session(oidc_sid, issuer=issuer)
        if sub is not None and sids:
            of_user = set(await self._index.sessions_of_sub(sub, issuer=issuer))
            sids = [sid for sid in sids if sid in of_user]
        return await self.end(sids, cause=cause, sub=sub, provider=provider.name)

    async def end(
        self, sids: Iterable[str], *, cause: Cause, sub: str | None, provider: str | None = None
    ) -> int:
        """End these sessions (of ``provider``, when the caller knows it); how many were still there."""
        ended = 0
        for sid in sids:
            existed = await self._sessions.exists(sid)
            await self._sessions.delete(sid)  # unfiles it too, even when only its index entries were left
            if existed:
                ended += 1
                ended_one = GuardEvent(kind="session_ended", sub=sub, detail=cause, provider=provider)
                await emit(self._on_event, ended_one)
        return ended

    async def after_sign_in(self, sub: str | None, *, issuer: str) -> None:
        """Keep the user within the cap: their oldest sessions beyond it end."""
        if sub is None:
            return
        oldest = await self._index.beyond_cap(sub, issuer=issuer)
        if oldest:
            await self.end(oldest, cause="user_limit", sub=sub)

    async def sessions_of(self, sub: str, *, provider: ProviderClient) -> list[SessionInfo]:
        issuer = await self.issuer(provider)
        infos = []
        for sid in await self._index.sessions_of_sub(sub, issuer=issuer):
            info = await self._index.info(sid)
            if info is not None and await self._sessions.exists(sid):
                infos.append(info)
        infos.sort(key=lambda info: info.created_at)
        return infos
