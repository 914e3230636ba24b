"""One refresh per session at a time: in-process single-flight, then a store lock across processes.

A rotating refresh token presented twice makes real providers revoke the whole grant, so the guard never
sends one twice: concurrent requests share one refresh; after taking the lock the session is read again and
the refresh is skipped when another worker already did it; each refresh token is claimed before it is sent
(``_refresh_results``), so a worker that lost the lock or read a stale session reuses the result instead;
the new refresh token is saved before anyone answers (retried while the claim holds the others off, if the
store fails right then: a failover). The token request and the save run shielded from
cancellation: a client that goes away mid-refresh must not lose a rotated refresh token the provider already
issued.

The lock's lease (``2 * http_timeout + 5``) outlasts the token request: discovery and the token call are each
bounded by ``http_timeout`` as a whole (``ProviderClient``). Should the lock be lost anyway (a store failover,
an eviction), the claim on the refresh token, a key of its own, still stops a second sending.

The session's end is fenced here too: sign-out takes the same lock (``end``), every write of an existing
session is a ``replace`` that cannot re-create it, and a refresh that finds its session gone revokes the
tokens it got. Only the user's grant refused (``invalid_grant``) drops a session's tokens; the provider
refusing this client (``invalid_client``...) keeps every session and pauses refreshes (``ClientBreaker``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import anyio

from ._breaker import ClientBreaker
from ._errors import GuardError, ProviderUnavailable, ReloginRequired, StoreUnavailable, TokenEndpointError
from ._events import EventHook, GuardEvent, emit
from ._lifetime import refresh_token_expired
from ._limiter import RefreshLimiter
from ._protocol import TokenSet, grant_refused, misconfiguration_fix, refresh_due, refresh_due_from
from ._reasons import Reason
from ._refresh_results import RefreshResults
from ._session import Session
from ._sessions import Sessions
from ._store import Store
from ._telemetry import NO_TELEMETRY, Telemetry
from .providers._client import ProviderClient
from .providers._quirks import error_reason
from .providers._registry import Providers

if TYPE_CHECKING:
    from ._offline import OfflineGrants

logger = logging.getLogger("asgi_oauth_guard")

LOCK_PREFIX = "lock:refresh:"
# Refreshed sessions kept in memory while the store cannot take them (an outage), at most.
MAX_UNSAVED = 10_000
# After the provider refuses this client, no refresh for this long; then one probe.
CLIENT_REFUSAL_COOLDOWN = 30.0
# Rotated tokens the store failed to take are tried again for this share of the lock's lease (which the
# refresh token's claim shares): a quarter of it stays between the last try and another worker's turn.
SAVE_WITHIN = 0.75
# A refresh for a resource (RFC 8707) the grant does not cover: the caller's mistake alone.
TARGET_ERRORS = frozenset({"invalid_target", "invalid_scope"})
# A refresh token whose claimant gave up is claimed again, a few times at most.
MAX_CLAIM_TAKEOVERS = 3


class ClientRefused(ProviderUnavailable):
    """The provider refused this client (not the user): answered as an outage, with the error code."""

    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__(f"the provider refused this client: {error}")


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
        providers: Providers,
        clock: Callable[[], float],
        leeway: float,
        lease: float,
        wait: float,
        max_concurrent: int = 32,
        on_event: EventHook | None = None,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._telemetry = telemetry
        self._store = store
        self._sessions = sessions
        self._providers = providers
        self._clock = clock
        self._leeway = leeway
        self._lease = lease
        self._wait = wait
        self._on_event = on_event
        self._flights: dict[str, _Flight] = {}
        self.limiter = RefreshLimiter(max_concurrent)
        self._unsaved: dict[str, Session] = {}
        self._results = RefreshResults(store, claim_ttl=lease, ttl=2 * lease)
        # One per provider: a provider refusing this app's client says nothing about the others.
        self._breakers = {
            client.name: ClientBreaker(cooldown=CLIENT_REFUSAL_COOLDOWN, clock=clock) for client in providers
        }
        self.breaker = self._breakers[providers.default.name]
        self.lease = lease
        self.wait = wait
        # Sessions signed in with offline access hold no refresh token of their own: their grant's is in
        # its offline record, and they refresh through it (``_offline``), so one grant has one refresh token.
        self.offline: Mapping[str, OfflineGrants] = {}  # by provider name

    def due(self, session: Session) -> bool:
        return session.tokens is not None and refresh_due(session.tokens, self._clock(), self._leeway)

    def due_from(self, session: Session) -> float:
        """The time from which :meth:`due` says yes for ``session`` (``inf``: never)."""
        return math.inf if session.tokens is None else refresh_due_from(session.tokens, self._leeway)

    @property
    def leeway(self) -> float:
        """How long before its expiry an access token is refreshed (at most half its lifetime)."""
        return self._leeway

    # -- the session's end -------------------------------------------------------------------------

    async def end(self, sid: str, key: bytes) -> Session | None:
        """End a session now (sign-out): the newest version of it, to revoke its tokens, or ``None``.

        Taken under the session's refresh lock, so a refresh in flight finishes first and its new refresh
        token is the one revoked. The wait is half a lease (``http_timeout + 2.5`` s), as long as a live
        token request can take: waiting longer would only outwait a holder that died. Without the lock the
        session ends all the same: a refresh finishing later finds it gone and revokes what it got.
        """
        owner = os.urandom(12).hex()
        locked = False
        with anyio.move_on_after(self._lease / 2):
            flight = self._flights.get(sid)
            if flight is not None:
                await flight.done.wait()
            locked = await self._take_lock(sid, owner)
        try:
            session = await self._sessions.load(sid, key)
            await self._sessions.delete(sid)
            self._unsaved.pop(sid, None)
        finally:
            if locked:
                await self._release(sid, owner)
        return session

    async def expire(self, session: Session, detail: str) -> ReloginRequired:
        """End a session that passed a time limit; the error to answer with."""
        await self._sessions.delete(session.sid)
        ended = GuardEvent(
            kind="session_ended", sub=_sub(session), detail=detail, provider=self._name(session)
        )
        await emit(self._on_event, ended)
        return ReloginRequired(Reason.session_expired, detail)

    async def touch(self, session: Session, key: bytes) -> Session:
        """Write down that the session was used now (for the idle timeout); at most once a minute.

        Under the refresh lock, so a touch never writes back tokens that a refresh replaced meanwhile;
        when the lock is taken, a refresh holds it and writes ``last_seen`` itself. Best effort: a store
        that fails here costs the request nothing."""
        if session.sid in self._flights:
            return session
        owner = os.urandom(12).hex()
        try:
            if not await self._store.acquire(LOCK_PREFIX + session.sid, owner, lease=self._lease):
                return session
        except StoreUnavailable:
            return session
        try:
            current = await self._sessions.load(session.sid, key)
            if current is None:
                raise ReloginRequired(Reason.session_expired, "session_gone")
            if not self._sessions.lifetime.touch_due(current, self._clock()):
                return current
            touched = dataclasses.replace(current, last_seen=self._clock())
            if not await self._sessions.replace(touched, key):
                raise ReloginRequired(Reason.session_expired, "session_gone")
            return touched
        except StoreUnavailable:
            return session
        finally:
            await self._release(session.sid, owner)

    # -- refresh -----------------------------------------------------------------------------------

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
            shared = GuardEvent(
                kind="refresh_shared", sub=_sub(session), detail="in_process", provider=self._name(session)
            )
            await emit(self._on_event, shared)
            return flight.result
        if self.limiter.full and rejected_token is None and self._still_valid(session):
            # Every refresh slot is taken: this token is only due, not expired, so serve it now and
            # refresh on a later request rather than queue behind the others.
            self.limiter.served_while_full += 1
            return session
        name = self._name(session)
        with self._telemetry.span("refresh", {"provider": name} if name is not None else {}):
            return await self._lead(session, key, rejected_token)

    def _name(self, session: Session) -> str | None:
        """The name of the session's provider, for events and spans."""
        client = self._providers.for_record(session.provider)
        return client.name if client is not None else session.provider

    async def _lead(self, session: Session, key: bytes, rejected_token: str | None) -> Session:
        """The refresh this process makes for the session; requests that come meanwhile wait for it."""
        flight = _Flight(done=anyio.Event())
        self._flights[session.sid] = flight
        failure: ProviderUnavailable | ReloginRequired | None = None
        try:
            try:
                grants = self.offline.get(self.client_of(session).name) if session.offline else None
                if grants is not None:
                    # The grant's refresh takes the limiter's slot itself (a grant shared by sessions
                    # and jobs): taking one here too could leave every slot waiting for another.
                    with anyio.CancelScope(shield=True):
                        result, refreshed = await grants.refresh_session(session, key, rejected_token)
                else:
                    async with self.limiter.slot(within=self._wait):
                        with anyio.CancelScope(shield=True):
                            result, refreshed = await self._refresh_locked(session, key, rejected_token)
            except TimeoutError:
                raise ProviderUnavailable("too many refreshes in flight in this process") from None
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
        sub, name = _sub(session), self._name(session)
        if failure is not None:
            if isinstance(failure, ReloginRequired):
                reason, detail = failure.reason, failure.detail
            elif isinstance(failure, ClientRefused):
                reason, detail = None, failure.error
            else:
                reason, detail = None, "provider_unavailable"
            failed = GuardEvent(kind="refresh_failed", sub=sub, reason=reason, detail=detail, provider=name)
            await emit(self._on_event, failed)
            raise failure
        if refreshed:
            await emit(self._on_event, GuardEvent(kind="refresh", sub=sub, provider=name))
        else:
            shared = GuardEvent(kind="refresh_shared", sub=sub, detail="other_worker", provider=name)
            await emit(self._on_event, shared)
        return result

    def _still_valid(self, session: Session) -> bool:
        tokens = session.tokens
        return tokens is not None and tokens.expires_at is not None and tokens.expires_at > self._clock()

    def _still_needed(self, current: Session, seen: Session, rejected_token: str | None) -> bool:
        if current.tokens is None:
            raise ReloginRequired(Reason.refresh_rejected, "tokens_dropped")
        assert seen.tokens is not None
        if current.tokens.access_token != seen.tokens.access_token:
            return False  # someone else refreshed meanwhile
        if rejected_token is not None:
            return current.tokens.access_token == rejected_token
        return self.due(current)

    async def _take_lock(
        self,
        sid: str,
        owner: str,
        done: Callable[[], Awaitable[bool]] | None = None,
        *,
        within: float | None = None,
    ) -> bool:
        """Take the session's refresh lock, polling while another process holds it. ``done`` is called
        between polls and ends the wait (``False``) when it returns true; ``within`` bounds it (raising
        ``TimeoutError``); without it the caller bounds the wait."""
        deadline = None if within is None else time.monotonic() + within
        pause = 0.01
        while not await self._store.acquire(LOCK_PREFIX + sid, owner, lease=self._lease):
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.25)
            if done is not None and await done():
                return False
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError
        return True

    async def _release(self, sid: str, owner: str) -> None:
        try:
            await self._store.release(LOCK_PREFIX + sid, owner)
        except StoreUnavailable:
            logger.warning("could not release a refresh lock; its lease will expire")

    async def _refresh_locked(
        self, seen: Session, key: bytes, rejected_token: str | None
    ) -> tuple[Session, bool]:
        """The session with a fresh token, and whether this call got it from the provider."""
        owner = os.urandom(12).hex()
        found: list[Session] = []

        async def done_elsewhere() -> bool:
            # Another process holds the lock: wait for its result rather than refreshing beside it.
            current = await self._sessions.load(seen.sid, key)
            if current is None:
                raise ReloginRequired(Reason.session_expired, "session_gone")
            if not self._still_needed(current, seen, rejected_token):
                found.append(current)
                return True
            return False

        try:
            with self._telemetry.span("refresh_lock", {}):
                locked = await self._take_lock(seen.sid, owner, done_elsewhere, within=self._wait)
            if not locked:
                return found[0], False
        except TimeoutError:
            raise ProviderUnavailable("another worker holds this session's refresh lock") from None
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
            if refresh_token_expired(current, self._clock()):
                raise await self.expire(current, "refresh_token_expired")
            # The claim on the refresh token (taken in spend, after this) and the lock hold every other
            # worker off for one lease: the rotated tokens must be saved well within it.
            save_by = time.monotonic() + self._lease * SAVE_WITHIN
            try:
                assert current.tokens is not None
                tokens, fresh = await self.spend(
                    current.tokens, client=self.client_of(current), sid=seen.sid, key=key
                )
            except TokenEndpointError as exc:
                await self._sessions.drop_tokens(current, key)
                quirks = self.client_of(current).provider.quirks
                reason = error_reason(quirks, exc, during="refresh") or Reason.refresh_rejected
                raise ReloginRequired(reason, exc.error) from None
            updated = dataclasses.replace(
                current, tokens=tokens, refreshes=current.refreshes + 1, last_seen=self._clock()
            )
            await self._save_refreshed(updated, key, retry_until=save_by)
            return updated, fresh
        finally:
            await self._release(seen.sid, owner)

    async def take_lock(
        self, name: str, owner: str, done: Callable[[], Awaitable[bool]] | None = None, *, within: float
    ) -> bool:
        """The refresh lock of another record than a session (an offline grant): see ``_take_lock``."""
        return await self._take_lock(name, owner, done, within=within)

    async def release(self, name: str, owner: str) -> None:
        await self._release(name, owner)

    async def spend(
        self,
        current: TokenSet,
        *,
        client: ProviderClient,
        sid: str,
        key: bytes,
        resource: str | None = None,
    ) -> tuple[TokenSet, bool]:
        """Present a refresh token, once: new tokens, or the result of whoever spent it, and whether they
        are new (from the provider, not another worker's result). ``sid`` and
        ``key`` name and seal the result record (a session's, or an offline grant's); ``resource``:
        RFC 8707, the API the new access token is for."""
        assert current.refresh_token is not None
        spent = current.refresh_token
        breaker = self._breakers[client.name]
        for _ in range(MAX_CLAIM_TAKEOVERS):
            if await self._results.claim(spent):
                break
            # Claimed already: this session was read from before a refresh, or a worker lost the lock.
            result = await self._results.wait(spent, sid, key, within=self._wait)
            if isinstance(result, TokenSet):
                logger.info("reused the result of a refresh another worker made with the same refresh token")
                return result, False
            if result is not None:
                raise ProviderUnavailable("another worker is spending this session's refresh token")
            # The claim ended with no result: its claimant died or gave up before the provider took the
            # token (a claimant that got an answer records it first). Claim it again.
        else:
            raise ProviderUnavailable("this session's refresh token keeps being claimed and given up")
        if not await breaker.allow():
            await self._unclaim(spent)
            raise ClientRefused("paused")
        try:
            with self._telemetry.span(
                "token_request", {"grant_type": "refresh_token", "provider": client.name}
            ):
                tokens = await client.refresh(current, resource=resource)
        except TokenEndpointError as exc:
            await self._unclaim(spent)
            if resource is not None and exc.error in TARGET_ERRORS:
                # A resource (RFC 8707) this grant does not cover: the caller asked for the wrong thing;
                # the grant and this client are fine.
                breaker.answered()
                raise
            raise self._refused(exc, spent, breaker) from None
        except BaseException:
            breaker.inconclusive()
            await self._unclaim(spent)
            raise
        breaker.answered()
        # If the store fails here, the save below fails too, and keeps the tokens in this process.
        with contextlib.suppress(StoreUnavailable):
            await self._results.record(spent, sid, key, tokens)
        return tokens, True

    def _refused(
        self, exc: TokenEndpointError, spent: str, breaker: ClientBreaker
    ) -> TokenEndpointError | ClientRefused:
        """What a refusal means: the user's grant (``invalid_grant``: their session's tokens go), or this
        client (every session is kept, refreshes pause, and the log says what to fix)."""
        if grant_refused(exc):
            breaker.answered()
            logger.warning("the provider refused a refresh: %s", exc.describe(spent))
            return exc
        breaker.refused()
        logger.error(
            "the provider refused a refresh with %s: %s. Every session is kept; refreshes pause for "
            "%.0f s, then one is tried at a time until one succeeds",
            exc.describe(spent),
            misconfiguration_fix(exc.error),
            CLIENT_REFUSAL_COOLDOWN,
        )
        return ClientRefused(exc.error)

    async def _unclaim(self, refresh_token: str) -> None:
        try:
            await self._results.unclaim(refresh_token)
        except StoreUnavailable:
            logger.warning("could not release a refresh token's claim; refreshes wait for its expiry")

    async def _save_refreshed(
        self, session: Session, key: bytes, *, retry_until: float | None = None
    ) -> None:
        """Save a refreshed session; if the store fails, keep it in this process until it can be saved.
        If the session ended meanwhile (signed out), never re-create it: revoke what the refresh got.

        ``retry_until`` (monotonic): a store that fails right after the provider rotated the refresh token
        (its master died, a failover is under way) is tried again until then. The new refresh token exists
        only in this process; once the claim and the lock expire, another worker that gets this session
        first would present the old one, and the provider would revoke the grant (seen in the Sentinel
        failover soak). Saving it before they expire closes that."""
        pause = 0.05
        tries = 0
        while True:
            try:
                saved = await self._sessions.replace(session, key)
                break
            except StoreUnavailable:
                tries += 1
                if retry_until is not None and time.monotonic() + pause < retry_until:
                    await anyio.sleep(pause)  # the store is another process: poll it, bounded
                    pause = min(pause * 2, 0.5)
                    continue
                if session.sid not in self._unsaved and len(self._unsaved) >= MAX_UNSAVED:
                    self._unsaved.pop(next(iter(self._unsaved)))
                self._unsaved[session.sid] = session
                raise
        if tries:
            logger.warning("saved a refreshed session after %d failed tries (the store failed over?)", tries)
        if not saved:
            assert session.tokens is not None
            await revoke(self.client_of(session), session.tokens)
            raise ReloginRequired(Reason.session_expired, "ended_during_refresh")

    def client_of(self, session: Session) -> ProviderClient:
        """The provider the session signed in with; a session of a provider this guard no longer has
        cannot be refreshed (nor its grant revoked): it must sign in again."""
        client = self._providers.for_record(session.provider)
        if client is None:
            raise ReloginRequired(Reason.session_expired, "provider_removed")
        return client


def _sub(session: Session) -> str | None:
    return str(session.claims.get("sub") or "") or None


async def revoke(client: ProviderClient, tokens: TokenSet) -> None:
    """Revoke a session's grant at the provider (RFC 7009), best effort: the refresh token when there is
    one (which ends the grant at most providers), else the access token."""
    try:
        if tokens.refresh_token is not None and client.revokes_refresh_tokens:
            await client.revoke(tokens.refresh_token, "refresh_token")
        else:
            await client.revoke(tokens.access_token, "access_token")
    except (ProviderUnavailable, TokenEndpointError) as exc:
        logger.warning("token revocation failed: %s", type(exc).__name__)
