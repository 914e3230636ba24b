"""One refresh per session at a time: in-process single-flight, then a store lock across processes.

A rotating refresh token presented twice makes real providers revoke the whole grant, so the guard never
sends one twice: concurrent requests share one refresh; after taking the lock the session is read again and
the refresh is skipped when another worker already did it; the new refresh token is saved before anyone
answers. The token request and the save run shielded from cancellation: a client that goes away mid-refresh
must not lose a rotated refresh token the provider already issued.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable

import anyio

from ._client import OAuthClient
from ._errors import GuardError, ProviderUnavailable, ReloginRequired, StoreUnavailable, TokenEndpointError
from ._events import EventHook, GuardEvent, emit
from ._protocol import refresh_due
from ._reasons import Reason
from ._session import Session
from ._sessions import Sessions
from ._store import Store

logger = logging.getLogger("asgi_oauth_guard")

LOCK_PREFIX = "lock:refresh:"
# Refreshed sessions kept in memory while the store cannot take them (an outage), at most.
MAX_UNSAVED = 10_000


@dataclasses.dataclass
class _Flight:
    done: anyio.Event
    result: Session | None = None
    error: BaseException | None = None


class Refresher:
    def __init__(
        self,
        *,
        store: Store,
        sessions: Sessions,
        client: OAuthClient,
        clock: Callable[[], float],
        leeway: float,
        lease: float,
        wait: float,
        on_event: EventHook | None = None,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._client = client
        self._clock = clock
        self._leeway = leeway
        self._lease = lease
        self._wait = wait
        self._on_event = on_event
        self._flights: dict[str, _Flight] = {}
        self._unsaved: dict[str, Session] = {}

    def due(self, session: Session) -> bool:
        return session.tokens is not None and refresh_due(session.tokens, self._clock(), self._leeway)

    async def refresh(self, session: Session, key: bytes, *, rejected_token: str | None = None) -> Session:
        """A session with a fresh access token. ``rejected_token``: the resource server refused this
        access token (401 invalid_token), so refresh even if it does not look due, unless already replaced."""
        flight = self._flights.get(session.sid)
        if flight is not None:
            await flight.done.wait()
            if flight.error is not None:
                if isinstance(flight.error, GuardError):
                    raise flight.error
                raise ProviderUnavailable("the refresh failed")
            assert flight.result is not None
            return flight.result
        flight = _Flight(done=anyio.Event())
        self._flights[session.sid] = flight
        failure: ProviderUnavailable | ReloginRequired | None = None
        try:
            with anyio.CancelScope(shield=True):
                result, refreshed = await self._refresh_locked(session, key, rejected_token)
            flight.result = result
        except (ProviderUnavailable, ReloginRequired) as exc:
            flight.error = failure = exc
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            del self._flights[session.sid]
            flight.done.set()
        # Events once per refresh, here in the task that tried it: not once per request that shared its
        # result (waiters in this process, or workers that found it done after waiting for the lock).
        sub = str(session.claims.get("sub") or "") or None
        if failure is not None:
            if isinstance(failure, ReloginRequired):
                event = GuardEvent(
                    kind="refresh_failed", sub=sub, reason=failure.reason, detail=failure.detail
                )
            else:
                event = GuardEvent(kind="refresh_failed", sub=sub, detail="provider_unavailable")
            await emit(self._on_event, event)
            raise failure
        if refreshed:
            await emit(self._on_event, GuardEvent(kind="refresh", sub=sub))
        return result

    def _still_needed(self, current: Session, seen: Session, rejected_token: str | None) -> bool:
        if current.tokens is None:
            raise ReloginRequired(Reason.refresh_rejected, "tokens_dropped")
        assert seen.tokens is not None
        if current.tokens.access_token != seen.tokens.access_token:
            return False  # someone else refreshed meanwhile
        if rejected_token is not None:
            return current.tokens.access_token == rejected_token
        return self.due(current)

    async def _refresh_locked(
        self, seen: Session, key: bytes, rejected_token: str | None
    ) -> tuple[Session, bool]:
        """The session with a fresh token, and whether this call got it from the provider."""
        lock = LOCK_PREFIX + seen.sid
        owner = os.urandom(12).hex()
        deadline = time.monotonic() + self._wait
        pause = 0.01
        while not await self._store.acquire(lock, owner, lease=self._lease):
            # Another process holds the lock: wait for its result rather than refreshing beside it.
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.25)
            current = await self._sessions.load(seen.sid, key)
            if current is None:
                raise ReloginRequired(Reason.session_expired, "session_gone")
            if not self._still_needed(current, seen, rejected_token):
                return current, False
            if time.monotonic() > deadline:
                raise ProviderUnavailable("another worker holds this session's refresh lock")
        try:
            current = await self._sessions.load(seen.sid, key)
            unsaved = self._unsaved.pop(seen.sid, None)
            if current is None:
                raise ReloginRequired(Reason.session_expired, "session_gone")
            if unsaved is not None:
                # An earlier refresh got rotated tokens the store could not take: save those now. Refreshing
                # again would present the old refresh token, and the provider would revoke the grant.
                await self._save_refreshed(unsaved, key)
                return unsaved, True
            if not self._still_needed(current, seen, rejected_token):
                return current, False
            assert current.tokens is not None
            if current.tokens.refresh_token is None:
                raise ReloginRequired(Reason.session_expired, "no_refresh_token")
            try:
                tokens = await self._client.refresh(current.tokens)
            except TokenEndpointError as exc:
                logger.warning(
                    "the provider refused a refresh: %s", exc.describe(current.tokens.refresh_token)
                )
                await self._sessions.drop_tokens(current, key)
                raise ReloginRequired(Reason.refresh_rejected, exc.error) from None
            updated = dataclasses.replace(current, tokens=tokens, refreshes=current.refreshes + 1)
            await self._save_refreshed(updated, key)
            return updated, True
        finally:
            try:
                await self._store.release(lock, owner)
            except Exception:
                logger.warning("could not release a refresh lock; its lease will expire")

    async def _save_refreshed(self, session: Session, key: bytes) -> None:
        """Save a refreshed session; if the store fails, keep it in this process until it can be saved."""
        try:
            await self._sessions.save(session, key)
        except StoreUnavailable:
            if session.sid not in self._unsaved and len(self._unsaved) >= MAX_UNSAVED:
                self._unsaved.pop(next(iter(self._unsaved)))
            self._unsaved[session.sid] = session
            raise
