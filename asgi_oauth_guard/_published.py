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

from typing import TYPE_CHECKING

from ._bounded import CACHE_SIZE, make_room
from ._context import GuardState, Identity
from ._records import positional_builder
from ._sessions import SESSION_PREFIX
from ._user import GuardUser, credentials

if TYPE_CHECKING:
    from ._lifetime import Lifetime
    from ._middleware import OAuthGuard
    from ._refresh import Refresher
    from ._session import Session

__all__ = ["Published", "Served"]

_identity = positional_builder(Identity)
_state = positional_builder(GuardState, derived_by_caller=True)


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
        self._limit = limit
        self.by_cookie: dict[str, Served] = {}
        """The hot path reads it directly: one dictionary lookup per signed-in request."""
        self._seen: set[int] = set()  # hashes of cookies seen once lately and not remembered

    def state_of(self, session: Session, handle: tuple[str, bytes]) -> GuardState:
        """The state to publish for ``session`` (which has tokens), reached through ``handle``."""
        tokens = session.tokens
        assert tokens is not None
        identity = _identity(  # Identity's fields, in their order
            session.claims,
            tokens.access_token,
            tokens.token_type,
            tokens.expires_at,
            tokens.scope,
            session.refreshes,
            session.provider or self._default_provider,
            session.user_id,
            session.app_claims or {},
            tokens.id_token,
        )
        return _state(  # GuardState's fields, in their order
            self._guard,
            identity,
            None,
            handle,
            GuardUser(identity),
            credentials(identity, self._guard.scopes),
        )

    def until(self, session: Session) -> float:
        """The time before which ``session`` needs none of the hot path's checks: it can neither end nor
        want a refresh nor want its use written down (a millisecond early, so rounding never lets this
        disagree with the exact checks)."""
        return min(self._lifetime.quiet_until(session), self._refresher.due_from(session)) - 0.001

    def remember(self, cookie: str, blob: bytes, state: GuardState, until: float) -> None:
        """Serve ``state`` for ``cookie`` while the store holds exactly ``blob`` (the session ``state`` was
        built from), before ``until`` (:meth:`until` of that session); from the cookie's second sight."""
        if cookie not in self.by_cookie and not self._seen_before(cookie):
            return
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

    def forget(self, cookie: str) -> None:
        """Serve nothing remembered for ``cookie``: its session ended or cannot be served."""
        self.by_cookie.pop(cookie, None)

    def renewed(self, cookie: str) -> None:
        """``cookie``'s session has a new version (a refresh or a touch wrote it): serve nothing remembered,
        and remember the next version the next request finds (a second sight, not a first)."""
        if self.by_cookie.pop(cookie, None) is not None:
            self._seen.add(hash(cookie))

    def _seen_before(self, cookie: str) -> bool:
        """Whether ``cookie`` was seen lately; if not, it is now."""
        marker = hash(cookie)
        if marker in self._seen:
            self._seen.discard(marker)
            return True
        if len(self._seen) >= self._limit:
            self._seen.clear()
        self._seen.add(marker)
        return False


def _second_chance(served: Served) -> bool:
    """Whether a full cache keeps ``served``: if it was served since the cache last made room (CLOCK's
    second chance), and then not again unless it is served again meanwhile."""
    if served.used:
        served.used = False
        return True
    return False
