"""The server-side records: login transactions, their outcomes, and sessions. Serialised as JSON, sealed."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping
from typing import Any

from . import _json
from ._protocol import TokenSet
from ._records import stored_builder


@dataclasses.dataclass(frozen=True, kw_only=True)
class Transaction:
    """One login in flight, stored under its ``state`` until its callback (or its TTL). ``provider`` is the
    name of the provider it went to: the callback talks to that one, whatever the response says.
    ``consent``: the request asked for consent, to restore the user's offline grant (``OfflineAccess``) or
    because the browser's session held no refresh token (``Quirks.consent_params``), so a sign-in that
    still brings no refresh token is not asked again."""

    verifier: str
    nonce: str | None
    redirect_uri: str
    next: str
    created_at: float
    provider: str | None = None
    consent: bool = False
    # Step-up asked for by this login (``_login_params``): the callback checks the ID token against them.
    max_age: int | None = None
    acr_values: tuple[str, ...] = ()

    def dumps(self) -> bytes:
        return _json.dumps(fields_of(self))

    @classmethod
    def loads(cls, data: bytes) -> Transaction:
        raw = _json.loads(data)
        raw["acr_values"] = tuple(raw.get("acr_values", ()))
        return cls(**raw)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outcome:
    """What the one exchange of a code gave, kept under its ``state`` for duplicates and late replays.

    ``cookie`` is the new session cookie: it goes only to true duplicates, from the same browser (the
    record is sealed for it) with the same code (``code_hash``), within the duplicate window from ``at``.
    """

    ok: bool
    next: str
    cookie: str | None = None
    sid: str | None = None
    reason: str | None = None
    unavailable: bool = False
    code_hash: str | None = None
    at: float = 0.0
    misconfigured: bool = False
    refused: str | None = None  # the message of a sign-in the app (or a step-up check) turned away

    def dumps(self) -> bytes:
        return _json.dumps(fields_of(self))

    @classmethod
    def loads(cls, data: bytes) -> Outcome:
        return cls(**_json.loads(data))


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Session:
    """A signed-in user: their tokens (``None`` once the provider refused them) and ID-token claims.

    ``created_at`` is the sign-in (the absolute age counts from it; refreshes never move it);
    ``last_seen`` is the last request that was written down (at most once a minute), for the idle timeout.
    ``issuer`` is the provider's and ``provider`` its name in the guard (records written before these
    existed have ``None``: the default provider's). ``offline``: the
    session's refresh token is its user's offline grant's (``_offline``), which it refreshes through;
    its own ``tokens`` then hold no refresh token. ``user_id`` and ``app_claims``: what the app's
    ``on_login`` said to keep (``_on_login``). The user's ``sub``,
    the provider's session id (OIDC ``sid``, for back-channel logout) and ``auth_time`` are read from the
    claims.
    """

    sid: str
    tokens: TokenSet | None
    claims: dict[str, Any]
    created_at: float
    refreshes: int = 0
    last_seen: float | None = None

    issuer: str | None = None
    offline: bool = False
    provider: str | None = None
    user_id: str | None = None
    app_claims: dict[str, Any] | None = None

    @property
    def seen_at(self) -> float:
        return self.created_at if self.last_seen is None else self.last_seen

    @property
    def sub(self) -> str | None:
        sub = self.claims.get("sub")
        return sub if isinstance(sub, str) and sub else None

    @property
    def oidc_sid(self) -> str | None:
        sid = self.claims.get("sid")
        return sid if isinstance(sid, str) and sid else None

    @property
    def auth_time(self) -> float | None:
        return auth_time(self.claims)

    def dumps(self) -> bytes:
        data = fields_of(self)
        if self.tokens is not None:
            data["tokens"] = fields_of(self.tokens)
        return _json.dumps(data)

    @classmethod
    def loads(cls, data: bytes | memoryview) -> Session:
        return cls.from_record(_json.loads(data))

    @classmethod
    def from_record(cls, raw: Any) -> Session:
        """The session of a stored record, parsed (``raw`` is the dict read from its JSON; it is consumed).
        Raises ``TypeError`` or ``KeyError`` when it is not a session record."""
        if type(raw) is not dict:
            raise TypeError("a stored Session is not an object")
        tokens = raw.pop("tokens")
        raw["tokens"] = _tokens_from(tokens) if tokens is not None else None
        return _session_from(raw)


_FIELDS: dict[type, tuple[tuple[str, ...], operator.attrgetter[Any]]] = {}


def fields_of(record: Any) -> dict[str, Any]:
    """A dataclass record's fields as a new dict, one level deep (``dataclasses.asdict`` copies every
    nested value, 45 µs for a session): what its ``dumps`` writes; nested records are the caller's. Read
    with one ``attrgetter``, not through ``__dict__``, which would give a record built by ``__init__`` a
    dict object of its own (one more for the garbage collector to walk, for as long as it is cached)."""
    known = _FIELDS.get(type(record))
    if known is None:
        names = tuple(f.name for f in dataclasses.fields(record))
        known = _FIELDS[type(record)] = (names, operator.attrgetter(*names))
    names, values = known
    return dict(zip(names, values(record), strict=True))


def auth_time(claims: Mapping[str, Any]) -> float | None:
    """The ``auth_time`` claim (when the user authenticated at the provider), if it is a number."""
    value = claims.get("auth_time")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


_tokens_from = stored_builder(TokenSet)
_session_from = stored_builder(Session)
