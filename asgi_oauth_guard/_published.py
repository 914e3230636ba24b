"""What the hot path serves: for each session cookie seen lately, the state published for its session.

An entry keeps the exact bytes the store held when its state was built, and the time before which that
session can neither end nor want a refresh nor want its use written down (``Lifetime.quiet_until``,
``Refresher.due_from``). A request whose store read returns those same bytes before that time is served
the entry's state as it is: no HMAC, no decryption, no JSON, no lifetime checks. Any other answer of the
store (another version of the session, or none) goes through all of them again. So the store stays the one
source of truth, read once per request; this only remembers the work done on what it said last.

A cookie is remembered at its second sight, not its first (a doorkeeper, as in TinyLFU): a busy app on
several workers without affinity sees most users once per worker in a while, and remembering each of them
would evict one remembered user per request, so the cache would cost every request without serving any.
What marks a first sight is the cookie's hash in a set of plain integers, cleared when full; a false
positive only remembers a cookie early.

One entry per cookie, and nothing else kept alive: an entry, its state, its identity and the state's
Starlette user are the only objects a remembered session holds (about 6; the earlier three caches, of
verified cookies, decrypted sessions and published states, held 12). The cache of a busy app turns over
on every request of a user this process has not seen lately, and the garbage collector walks every
object it holds, so that count is what the cold path pays for, at every request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._bounded import CACHE_SIZE, make_room
from ._context import GuardState, Identity
from ._lifetime import TOUCH_INTERVAL
from ._records import positional_builder
from ._session import RECORD_FORMAT, SESSION_LAYOUT, TOKEN_LAYOUT, Session
from ._sessions import SESSION_PREFIX
from ._user import GuardUser, credentials

if TYPE_CHECKING:
    from ._lifetime import Lifetime
    from ._middleware import OAuthGuard
    from ._refresh import Refresher

__all__ = ["Published", "Served"]

_identity = positional_builder(Identity)
_new_state = positional_builder(GuardState, derived_by_caller=True)
# The lengths of a session record and of its tokens as ``Session.dumps`` writes them (``Published.quiet``).
_RECORD_LENGTH = 1 + len(SESSION_LAYOUT)
_TOKENS_LENGTH = len(TOKEN_LAYOUT)


class Served:
    """The state published for one session cookie, and when the hot path may serve it as it is: while the
    store holds exactly ``blob`` under ``store_key``, and the clock is before ``until``. ``used``: served
    since the cache last made room (the hot path sets it), so kept at the next."""

    __slots__ = ("blob", "key", "sid", "state", "store_key", "until", "used")

    def __init__(self, sid: str, key: bytes, blob: bytes, state: GuardState, until: float) -> None:
        self.sid = sid
        self.key = key
        self.store_key = SESSION_PREFIX + sid
        self.blob = blob
        self.state = state
        self.until = until
        self.used = False


class Published:
    """The states published for sessions, by session cookie (bounded: the oldest tenth dropped first)."""

    def __init__(
        self,
        *,
        guard: OAuthGuard,
        lifetime: Lifetime,
        refresher: Refresher,
        default_provider: str,
        limit: int = CACHE_SIZE,
    ) -> None:
        self._guard = guard
        self._lifetime = lifetime
        self._refresher = refresher
        self._default_provider = default_provider
        # What :meth:`quiet` computes deadlines with (fixed for the guard's life).
        self._max_age = lifetime.max_age
        self._idle_timeout = lifetime.idle_timeout
        self._leeway = refresher.leeway
        self._limit = limit
        self.by_cookie: dict[bytes, Served] = {}
        """The hot path reads it directly: one dictionary lookup per signed-in request."""
        self._seen: set[int] = set()  # hashes of cookies seen once lately and not remembered

    def state_of(self, session: Session, handle: tuple[str, bytes]) -> GuardState:
        """The state to publish for ``session`` (which has tokens), reached through ``handle``."""
        tokens = session.tokens
        assert tokens is not None
        return self._state(
            session.claims,
            tokens.access_token,
            tokens.token_type,
            tokens.expires_at,
            tokens.scope,
            session.refreshes,
            session.provider,
            session.user_id,
            session.app_claims,
            tokens.id_token,
            handle,
        )

    def until(self, session: Session) -> float:
        """The time before which ``session`` needs none of the hot path's checks: it can neither end nor
        want a refresh nor want its use written down (a millisecond early, so rounding never lets this
        disagree with the exact checks)."""
        return min(self._lifetime.quiet_until(session), self._refresher.due_from(session)) - 0.001

    def quiet(
        self, raw: list[Any] | dict[str, Any], handle: tuple[str, bytes], now: float
    ) -> tuple[GuardState, float] | None:
        """:meth:`state_of` and :meth:`until` of the session in the parsed record ``raw``, read straight from
        it, when ``now`` is before that ``until`` (its session needs no check): the path of a session not
        served lately, without building the :class:`Session` and its :class:`TokenSet` nor reading them
        back. ``None`` for any other record, which the caller builds the session of, as before: one
        without tokens, one that is due for a check, one of a shape other than the one the guard writes
        now (a record of format 2 with every field of ``SESSION_LAYOUT`` and ``TOKEN_LAYOUT``: an older
        one, shorter or of format 1, gets its defaults in ``Session.from_record``).

        Each value is unpacked from its place in the layout, and the deadline is :meth:`until`'s, its
        formulas written out here (``tests/test_hot_path.py`` compares the two paths on every shape): on
        this path each call costs a few cache misses."""
        if type(raw) is not list or len(raw) != _RECORD_LENGTH:
            return None
        # SESSION_LAYOUT, after the format; the fields not published are unpacked all the same.
        (
            version,
            _sid,
            tokens,
            claims,
            created_at,
            refreshes,
            seen,
            _issuer,
            _offline,
            provider,
            user_id,
            app_claims,
        ) = raw
        if type(tokens) is not list or len(tokens) != _TOKENS_LENGTH or version != RECORD_FORMAT:
            return None
        # TOKEN_LAYOUT
        access_token, token_type, _refresh_token, id_token, scope, issued_at, expires_at, _refresh_until = (
            tokens
        )
        try:
            # Lifetime.quiet_until: the absolute age, and with an idle timeout the idle end and the touch.
            until = created_at + self._max_age
            idle = self._idle_timeout
            if idle is not None:
                if seen is None:
                    seen = created_at
                until = min(until, seen + idle, seen + TOUCH_INTERVAL)
            # Refresher.due_from (refresh_due_from): the expiry, less the leeway, at most half the lifetime.
            if expires_at is not None:
                lifetime = expires_at - issued_at
                leeway = self._leeway
                if lifetime > 0 and lifetime / 2 < leeway:
                    leeway = lifetime / 2
                until = min(until, expires_at - leeway)
            until -= 0.001
            if not now < until:
                return None
            state = self._state(
                claims,
                access_token,
                token_type,
                expires_at,
                scope,
                refreshes,
                provider,
                user_id,
                app_claims,
                id_token,
                handle,
            )
        except TypeError:  # not a record the guard wrote: the careful way says what it is
            return None
        return state, until

    def _state(
        self,
        claims: dict[str, Any],
        access_token: str,
        token_type: str,
        expires_at: float | None,
        scope: str | None,
        refreshes: int,
        provider: str | None,
        user_id: str | None,
        app_claims: dict[str, Any] | None,
        id_token: str | None,
        handle: tuple[str, bytes],
    ) -> GuardState:
        identity = _identity(  # Identity's fields, in their order
            claims,
            access_token,
            token_type,
            expires_at,
            scope,
            refreshes,
            provider or self._default_provider,
            user_id,
            app_claims or {},
            id_token,
        )
        return _new_state(  # GuardState's fields, in their order
            self._guard,
            identity,
            None,
            handle,
            GuardUser(identity),
            credentials(identity, self._guard.scopes),
        )

    def remember(self, cookie: bytes, blob: bytes, state: GuardState, until: float) -> None:
        """Serve ``state`` for ``cookie`` while the store holds exactly ``blob`` (the session ``state`` was
        built from), before ``until`` (:meth:`until` of that session); from the cookie's second sight."""
        if cookie not in self.by_cookie:  # the doorkeeper: seen once lately, or now for the first time
            marker = hash(cookie)
            if marker not in self._seen:
                if len(self._seen) >= self._limit:
                    self._seen.clear()
                self._seen.add(marker)
                return
            self._seen.discard(marker)
        assert state.handle is not None
        sid, key = state.handle
        cache = self.by_cookie
        known = cookie in cache
        if not known:
            make_room(cache, self._limit, _second_chance)
        served = cache[cookie] = Served(sid, key, blob, state, until)
        # A new version of a remembered session (another worker wrote it) keeps the old entry's place in the
        # cache, and the request that rebuilt it is serving it: used, as a hit would have marked it.
        served.used = known

    def forget(self, cookie: bytes) -> None:
        """Serve nothing remembered for ``cookie``: its session ended or cannot be served."""
        self.by_cookie.pop(cookie, None)

    def renewed(self, cookie: bytes) -> None:
        """``cookie``'s session has a new version (a refresh or a touch wrote it): serve nothing remembered,
        and remember the next version the next request finds (a second sight, not a first)."""
        if self.by_cookie.pop(cookie, None) is not None:
            self._seen.add(hash(cookie))


def _second_chance(served: Served) -> bool:
    """Whether a full cache keeps ``served``: if it was served since the cache last made room (CLOCK's
    second chance), and then not again unless it is served again meanwhile."""
    if served.used:
        served.used = False
        return True
    return False
