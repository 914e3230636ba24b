"""How long a session lives, as plain functions of the session and the time.

Three limits, whichever comes first: an absolute age from sign-in (``session_max_age``, never extended
by refreshes), an idle timeout from the last request (``session_idle_timeout``), and the provider's own
word on its refresh token (``refresh_expires_in``, as Keycloak sends it).

The last request is written down at most once a minute (``TOUCH_INTERVAL``), so the hot path stays one
store read: the idle timeout is exact to within that minute.
"""

from __future__ import annotations

import dataclasses

from ._session import Session

TOUCH_INTERVAL = 60.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Lifetime:
    max_age: float
    idle_timeout: float | None

    def ended(self, session: Session, now: float) -> str | None:
        """Why the session has ended by time (``"max_age"``, ``"idle_timeout"``), or ``None``."""
        if now - session.created_at >= self.max_age:
            return "max_age"
        if self.idle_timeout is not None and now - session.seen_at >= self.idle_timeout:
            return "idle_timeout"
        return None

    def ttl(self, session: Session, now: float) -> float:
        """Seconds the store keeps the session from ``now``: until it would end by age or by idleness, and
        a minute more, so that a request in that minute learns why it ended (the reason in its event).
        Never less than a second: a session that has ended is deleted, not saved."""
        end = session.created_at + self.max_age
        if self.idle_timeout is not None:
            end = min(end, session.seen_at + self.idle_timeout)
        return max(1.0, end - now + TOUCH_INTERVAL)

    def quiet_until(self, session: Session) -> float:
        """The first time at which :meth:`ended` or :meth:`touch_due` may say yes for ``session``; before
        it, both say no, so the hot path compares the clock with this one number."""
        until = session.created_at + self.max_age
        if self.idle_timeout is not None:
            seen = session.seen_at
            until = min(until, seen + self.idle_timeout, seen + TOUCH_INTERVAL)
        return until

    def touch_due(self, session: Session, now: float) -> bool:
        """Whether this request should write ``last_seen`` down (at most once a minute per session)."""
        return self.idle_timeout is not None and now - session.seen_at >= TOUCH_INTERVAL


def refresh_token_expired(session: Session, now: float) -> bool:
    """The provider said when the refresh token dies (``refresh_expires_in``), and that time has passed."""
    tokens = session.tokens
    return tokens is not None and tokens.refresh_expires_at is not None and now >= tokens.refresh_expires_at
