"""Offline grants: a user's refresh token kept for code that runs without them (jobs, workers, cron).

One grant has one current refresh token. With rotation, the provider honours only the newest; presenting an
older one revokes the grant. So when a provider has offline access on, a sign-in moves the grant's refresh
token out of the session into one *offline record* per (provider, ``sub``), sealed with the server key
ring (``_server_keys``), and the session keeps only its access and ID tokens (``Session.offline``). Every
holder of tokens of that grant, the user's sessions in any browser and the token manager in any process,
gets its access tokens *from* the record: a session whose token is due asks the record (``refresh_session``),
which serves the access token the record holds when it is fresh (a job may have refreshed it) and else
refreshes it, under the record's own refresh lock, through the same engine as a session's
(``Refresher.spend``: the claim on the refresh token and its result record, the breaker, the limiter).
Nobody else holds the refresh token, so nobody can present a stale copy of it.

A later sign-in replaces the record's refresh token with its own grant's; the one it replaces is not
revoked (some providers, oidc-provider among them, keep one grant per user and client, and revoking the
old token would revoke the new one with it): it lapses at the provider.

When the provider refuses the refresh token (``invalid_grant``), the record is marked as needing consent,
with the reason; the token manager raises :class:`ConsentRequired`, one ``offline_grant_lost`` event says
so, sessions drawing on it get the re-login response, and the user's next sign-in asks for consent
(``OfflineAccess.consent_params``) and restores the record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import anyio

from ._errors import (
    ConfigurationError,
    ConsentRequired,
    ProviderUnavailable,
    ReloginRequired,
    StoreUnavailable,
    TokenEndpointError,
)
from ._events import EventHook, GuardEvent, emit
from ._offline_access import OfflineAccess
from ._protocol import TokenSet, refresh_due
from ._reasons import Reason
from ._refresh import SAVE_WITHIN, TARGET_ERRORS, revoke
from ._server_keys import ServerKeys
from ._session import Session
from ._single_flight import SingleFlight
from ._store import Store

if TYPE_CHECKING:
    from ._refresh import Refresher
    from ._sessions import Sessions
    from .providers._client import ProviderClient

__all__ = ["OfflineAccess", "OfflineGrant", "OfflineGrants"]

logger = logging.getLogger("asgi_oauth_guard")

GRANT_PREFIX = "og:"
GRANT_INDEX = "og-index"
LOCK_NAME = "og:"  # the refresh lock of a grant: ``lock:refresh:og:<hash>``
# Access tokens for other APIs (RFC 8707 resources) one grant keeps, at most; the least recently
# refreshed gives way.
MAX_RESOURCES = 8
# How long a record outlives the grant it holds, so that a job then learns why it is gone.
KEPT_AFTER = 30 * 24 * 3600.0
# A sealed grant record is at most this big: a provider answering megabyte tokens cannot fill the store.
MAX_RECORD_BYTES = 32 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class OfflineGrant:
    """The offline record of one user at one provider. ``tokens`` holds the grant's one refresh token and
    the access token for the default audience; ``resources`` the access tokens for other APIs (RFC 8707),
    without refresh tokens. ``consent``: why the grant needs the user's consent again, or ``None``."""

    provider: str
    sub: str
    tokens: TokenSet | None
    created_at: float
    updated_at: float
    resources: dict[str, TokenSet] = dataclasses.field(default_factory=dict)
    consent: str | None = None
    refreshes: int = 0

    def token_for(self, resource: str | None) -> TokenSet | None:
        if self.tokens is None:
            return None
        return self.tokens if resource is None else self.resources.get(resource)

    def refreshed(self, tokens: TokenSet, resource: str | None, now: float) -> OfflineGrant:
        """After a refresh: the new refresh token is the grant's (kept when the answer had none); the new
        access token is the one for ``resource``."""
        assert self.tokens is not None
        if resource is None:
            grant_tokens = tokens
            resources = self.resources
        else:
            grant_tokens = dataclasses.replace(
                self.tokens,
                refresh_token=tokens.refresh_token or self.tokens.refresh_token,
                refresh_expires_at=tokens.refresh_expires_at or self.tokens.refresh_expires_at,
            )
            resources = {r: t for r, t in self.resources.items() if r != resource}
            resources[resource] = dataclasses.replace(tokens, refresh_token=None, id_token=None)
            while len(resources) > MAX_RESOURCES:
                resources.pop(next(iter(resources)))
        return dataclasses.replace(
            self, tokens=grant_tokens, resources=resources, updated_at=now, refreshes=self.refreshes + 1
        )

    def dumps(self) -> bytes:
        data = dataclasses.asdict(self)
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def loads(cls, data: bytes) -> OfflineGrant:
        raw = json.loads(data)
        tokens = raw.pop("tokens")
        resources = {r: TokenSet(**t) for r, t in raw.pop("resources", {}).items()}
        return cls(tokens=TokenSet(**tokens) if tokens is not None else None, resources=resources, **raw)


def grant_name(provider: str, sub: str) -> str:
    """The grant's store key: a hash, so that the store's key names no user."""
    digest = hashlib.sha256(f"offline\x00{provider}\x00{sub}".encode()).hexdigest()
    return GRANT_PREFIX + digest[:40]


def lost_reason(grant: OfflineGrant, now: float, max_idle: float) -> str:
    """Why the provider refused this grant's refresh token, from what the guard knows (the provider's
    ``error_description`` rarely says)."""
    tokens = grant.tokens
    if tokens is not None and tokens.refresh_expires_at is not None and now >= tokens.refresh_expires_at:
        return "expired"
    if now - grant.updated_at >= max_idle:
        return "idle"
    return "revoked"


class OfflineGrants:
    """The offline records of one provider: kept at sign-in, refreshed for sessions and jobs, ended."""

    def __init__(
        self,
        *,
        settings: OfflineAccess,
        store: Store,
        keys: ServerKeys,
        refresher: Refresher,
        sessions: Sessions,
        client: ProviderClient,
        provider: str,
        clock: Callable[[], float],
        leeway: float,
        on_event: EventHook | None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._keys = keys
        self._refresher = refresher
        self._sessions = sessions
        self._client = client
        self.provider = provider
        self._clock = clock
        self._leeway = leeway
        self._on_event = on_event
        self._flights: SingleFlight[TokenSet] = SingleFlight()
        # Refresh results of grants are sealed with a key of the ring (the session's key does it for
        # sessions); processes that have rotated differently read each other's as "pending" (a 503).
        self._results_key = keys.derive("offline-refresh-result")

    # -- records -----------------------------------------------------------------------------------

    async def load(self, sub: str) -> OfflineGrant | None:
        return await self._load(grant_name(self.provider, sub))

    async def _load(self, name: str) -> OfflineGrant | None:
        blob = await self._store.get(name)
        if blob is None:
            return None
        plain, _ = self._keys.unseal(name.encode(), blob, what="an offline grant")
        try:
            return OfflineGrant.loads(plain)
        except (ValueError, TypeError, KeyError):
            logger.error("an offline grant record could not be read; it is treated as absent")
            return None

    def _seal(self, name: str, grant: OfflineGrant) -> bytes:
        plain = grant.dumps()
        if len(plain) > MAX_RECORD_BYTES and grant.resources:
            grant = dataclasses.replace(grant, resources={})
            plain = grant.dumps()
        if len(plain) > MAX_RECORD_BYTES:
            raise ProviderUnavailable(
                f"the provider's tokens take {len(plain)} bytes, more than an offline grant may keep"
            )
        return self._keys.seal(name.encode(), plain)

    def _ttl(self, grant: OfflineGrant) -> float:
        # Kept a while past the provider's idle limit or the refresh token's end: a job that comes then
        # learns why (``idle``, ``expired``) instead of finding no grant at all.
        ttl = self.settings.max_idle
        tokens = grant.tokens
        if tokens is not None and tokens.refresh_expires_at is not None:
            ttl = min(ttl, tokens.refresh_expires_at - self._clock())
        if grant.consent is not None:
            ttl = self.settings.max_idle  # kept, to say why, until the user signs in again
        return max(ttl, 0.0) + KEPT_AFTER

    async def _write(self, name: str, grant: OfflineGrant, *, replace: bool) -> bool:
        blob = self._seal(name, grant)
        ttl = self._ttl(grant)
        if replace:
            if not await self._store.replace(name, blob, ttl=ttl):
                return False
        else:
            await self._store.set(name, blob, ttl=ttl)
        await self._store.index_add(GRANT_INDEX, name, ttl=ttl)
        return True

    @contextlib.asynccontextmanager
    async def _holding(self, name: str) -> AsyncIterator[None]:
        """The grant's refresh lock around a write that must not race a refresh (a sign-in's new refresh
        token, the grant's end), waited for half a lease at most, as long as a live token request takes:
        a holder that died is not outwaited, and the write goes ahead without the lock."""
        owner = os.urandom(12).hex()
        locked = False
        with anyio.move_on_after(self._refresher.lease / 2):
            locked = await self._refresher.take_lock(LOCK_NAME + name, owner, within=self._refresher.lease)
        try:
            yield
        finally:
            if locked:
                await self._refresher.release(LOCK_NAME + name, owner)

    # -- sign-in -----------------------------------------------------------------------------------

    async def consent_needed(self, sub: str) -> bool:
        """Whether this user's next sign-in must ask for consent: their grant was lost, or is gone."""
        grant = await self.load(sub)
        return grant is None or grant.consent is not None or grant.tokens is None

    async def adopt(self, sub: str, tokens: TokenSet) -> tuple[TokenSet, bool]:
        """At sign-in: keep the answer's refresh token as the user's offline grant. Returns the tokens the
        session keeps (no refresh token when the grant took it) and whether the session draws on the
        grant (``Session.offline``)."""
        name = grant_name(self.provider, sub)
        if tokens.refresh_token is None:
            # Google issues none when the user consented before: the grant on record goes on, if alive.
            current = await self._load(name)
            alive = current is not None and current.consent is None and current.tokens is not None
            return tokens, alive
        # Under the grant's lock: a job refreshing the old grant right now would save over this one.
        async with self._holding(name):
            previous = await self._load(name)
            now = self._clock()
            grant = OfflineGrant(
                provider=self.provider,
                sub=sub,
                tokens=dataclasses.replace(tokens, id_token=None),
                created_at=now,
                updated_at=now,
            )
            await self._write(name, grant, replace=False)
        if previous is not None and previous.consent is not None:
            await emit(
                self._on_event,
                GuardEvent(
                    kind="offline_grant_restored", sub=sub, provider=self.provider, detail=previous.consent
                ),
            )
        return dataclasses.replace(tokens, refresh_token=None, refresh_expires_at=None), True

    async def end(self, sub: str) -> bool:
        """End the user's offline grant (sign-out, ``end_sessions``): delete it and revoke it at the
        provider. Under its refresh lock, so the refresh token revoked is the newest. ``True`` if there
        was one."""
        name = grant_name(self.provider, sub)
        async with self._holding(name):
            grant = await self._load(name)
            await self._store.delete(name)
            await self._store.index_discard(GRANT_INDEX, name)
        if grant is None:
            return False
        if grant.tokens is not None and grant.consent is None:
            await revoke(self._client, grant.tokens)
        return True

    # -- refresh -----------------------------------------------------------------------------------

    async def refresh_session(
        self, session: Session, key: bytes, rejected_token: str | None
    ) -> tuple[Session, bool]:
        """A session that draws on its user's grant, with a fresh access token from it."""
        assert session.tokens is not None
        sub = session.sub
        if sub is None:
            raise ReloginRequired(Reason.session_expired, "no_refresh_token")
        try:
            tokens = await self.fresh(sub, rejected=rejected_token)
        except ConsentRequired as exc:
            await self._sessions.drop_tokens(session, key)
            raise ReloginRequired(Reason.refresh_rejected, f"offline_{exc.reason}") from None
        if tokens.access_token == session.tokens.access_token:
            return session, False
        updated = dataclasses.replace(
            session,
            tokens=dataclasses.replace(tokens, refresh_token=None, id_token=session.tokens.id_token),
            refreshes=session.refreshes + 1,
            last_seen=self._clock(),
        )
        if not await self._sessions.replace(updated, key):
            raise ReloginRequired(Reason.session_expired, "session_gone")
        return updated, False  # the grant's refresh emitted its event

    def _usable(self, tokens: TokenSet | None, rejected: str | None) -> bool:
        return (
            tokens is not None
            and tokens.access_token != rejected
            and not refresh_due(tokens, self._clock(), self._leeway)
        )

    async def fresh(self, sub: str, *, resource: str | None = None, rejected: str | None = None) -> TokenSet:
        """A fresh access token of the user's grant (for ``resource``, RFC 8707): the one on record when
        it is fresh, else one refresh, one at a time per grant across processes. ``rejected``: an API
        refused this access token, so get another unless it was replaced already."""
        if resource is not None and resource not in self.settings.resources:
            raise ConfigurationError(
                f"resource {resource!r} is not in OfflineAccess(resources=...): add it there, so that "
                "sign-in asks for it (a refresh for an API the grant does not cover can cost the grant)"
            )
        name = grant_name(self.provider, sub)
        grant = await self._load(name)
        self._check(grant, sub)
        assert grant is not None
        current = grant.token_for(resource)
        if self._usable(current, rejected):
            assert current is not None
            return current
        return await self._flights.run(
            f"{name}\x00{resource or ''}", lambda: self._fresh(name, sub, resource, rejected)
        )

    def _check(self, grant: OfflineGrant | None, sub: str) -> None:
        if grant is not None and grant.consent is not None:
            raise ConsentRequired(provider=self.provider, sub=sub, reason=grant.consent)
        if grant is None or grant.tokens is None:
            raise ConsentRequired(provider=self.provider, sub=sub, reason="no_grant")

    async def _fresh(self, name: str, sub: str, resource: str | None, rejected: str | None) -> TokenSet:
        refresher = self._refresher
        try:
            async with refresher.limiter.slot(within=refresher.wait):
                with anyio.CancelScope(shield=True):
                    tokens, refreshed = await self._refresh_locked(name, sub, resource, rejected)
        except TimeoutError:
            raise ProviderUnavailable("too many refreshes in flight in this process") from None
        if refreshed:
            event = GuardEvent(kind="refresh", sub=sub, provider=self.provider, detail="offline")
            await emit(self._on_event, event)
        return tokens

    async def _refresh_locked(
        self, name: str, sub: str, resource: str | None, rejected: str | None
    ) -> tuple[TokenSet, bool]:
        refresher = self._refresher
        owner = os.urandom(12).hex()
        found: list[TokenSet] = []

        async def done_elsewhere() -> bool:
            # Another process holds the grant's lock: take its result rather than refreshing beside it.
            grant = await self._load(name)
            self._check(grant, sub)
            assert grant is not None
            tokens = grant.token_for(resource)
            if self._usable(tokens, rejected):
                assert tokens is not None
                found.append(tokens)
                return True
            return False

        try:
            if not await refresher.take_lock(LOCK_NAME + name, owner, done_elsewhere, within=refresher.wait):
                return found[0], False
        except TimeoutError:
            raise ProviderUnavailable("another worker holds this offline grant's refresh lock") from None
        try:
            grant = await self._load(name)
            self._check(grant, sub)
            assert grant is not None
            assert grant.tokens is not None
            current = grant.token_for(resource)
            if self._usable(current, rejected):
                assert current is not None
                return current, False
            if grant.tokens.refresh_token is None:
                raise await self._lose(name, grant, "no_refresh_token")
            expires = grant.tokens.refresh_expires_at
            if expires is not None and self._clock() >= expires:
                raise await self._lose(name, grant, "expired")  # a dead token is not worth sending
            save_by = time.monotonic() + refresher.lease * SAVE_WITHIN
            try:
                tokens, _ = await refresher.spend(
                    grant.tokens, client=self._client, sid=name, key=self._results_key, resource=resource
                )
            except TokenEndpointError as exc:
                if exc.error in TARGET_ERRORS:
                    raise  # a resource or scopes this grant does not cover: the grant itself is fine
                raise await self._lose(
                    name, grant, lost_reason(grant, self._clock(), self.settings.max_idle)
                ) from None
            updated = grant.refreshed(tokens, resource, self._clock())
            await self._save_refreshed(name, updated, retry_until=save_by)
            fresh = updated.token_for(resource)
            assert fresh is not None
            return fresh, True
        finally:
            await refresher.release(LOCK_NAME + name, owner)

    async def _lose(self, name: str, grant: OfflineGrant, reason: str) -> ConsentRequired:
        """Mark the grant as needing consent (the one caller that learnt it, under its lock), and say so."""
        now = self._clock()
        marked = dataclasses.replace(grant, tokens=None, resources={}, consent=reason, updated_at=now)
        with contextlib.suppress(StoreUnavailable):
            await self._write(name, marked, replace=True)
        lost = GuardEvent(kind="offline_grant_lost", sub=grant.sub, provider=self.provider, detail=reason)
        await emit(self._on_event, lost)
        return ConsentRequired(provider=self.provider, sub=grant.sub, reason=reason)

    async def _save_refreshed(self, name: str, grant: OfflineGrant, *, retry_until: float) -> None:
        """Save the rotated refresh token before anyone else may spend the old one (its claim and this
        lock expire): a failing store is tried again until ``retry_until``. A grant ended meanwhile
        (sign-out) is not re-created: what the refresh got is revoked."""
        pause = 0.05
        while True:
            try:
                saved = await self._write(name, grant, replace=True)
                break
            except StoreUnavailable:
                if time.monotonic() + pause >= retry_until:
                    raise
                await anyio.sleep(pause)  # the store is another process: poll it, bounded
                pause = min(pause * 2, 0.5)
        if not saved:
            assert grant.tokens is not None
            await revoke(self._client, grant.tokens)
            raise ConsentRequired(provider=self.provider, sub=grant.sub, reason="ended")

    # -- key rotation ------------------------------------------------------------------------------

    async def reencrypt(self) -> int:
        """Seal every offline grant with the current server key (after adding one); how many were
        rewritten. Each under its grant's lock, so no refresh saved meanwhile is written over."""
        rewritten = 0
        for name in await self._store.index_members(GRANT_INDEX):
            blob = await self._store.get(name)
            if blob is None:
                await self._store.index_discard(GRANT_INDEX, name)
                continue
            _, current = self._keys.unseal(name.encode(), blob, what="an offline grant")
            if current:
                continue
            owner = os.urandom(12).hex()
            try:
                await self._refresher.take_lock(LOCK_NAME + name, owner, within=self._refresher.wait)
            except TimeoutError:
                raise ProviderUnavailable("an offline grant's refresh lock stayed taken") from None
            try:
                grant = await self._load(name)
                if grant is not None and await self._write(name, grant, replace=True):
                    rewritten += 1
            finally:
                await self._refresher.release(LOCK_NAME + name, owner)
        return rewritten
