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


RECORD_FORMAT = 2
"""The session record's format. 2: an array, ``[2, *the session's fields in SESSION_LAYOUT's order]``, its
tokens an array in TOKEN_LAYOUT's order (or ``null``). 1: an object of the fields by name (written before
format 2, and while ``session_record_format=1`` says so). Both are read. An array parses in less time than
an object (no keys to read, hash and look up) and is published without any lookup (``Published.quiet``)."""

# The order of the fields in a record of format 2: a format, so a field is only ever added at the end (a
# record written before it existed is shorter, and gets its default). tests/test_records_json.py pins it.
SESSION_LAYOUT = (
    "sid",
    "tokens",
    "claims",
    "created_at",
    "refreshes",
    "last_seen",
    "issuer",
    "offline",
    "provider",
    "user_id",
    "app_claims",
)
TOKEN_LAYOUT = (
    "access_token",
    "token_type",
    "refresh_token",
    "id_token",
    "scope",
    "issued_at",
    "expires_at",
    "refresh_expires_at",
)
_after_tokens = operator.attrgetter(*SESSION_LAYOUT[2:])
_token_values = operator.attrgetter(*TOKEN_LAYOUT)


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

    def dumps(self, record_format: int = RECORD_FORMAT) -> bytes:
        """The session's record, as JSON: in ``record_format`` 2 (an array) or 1 (an object)."""
        if record_format == 1:
            data = fields_of(self)
            if self.tokens is not None:
                data["tokens"] = fields_of(self.tokens)
            return _json.dumps(data)
        tokens = None if self.tokens is None else _token_values(self.tokens)
        return _json.dumps([RECORD_FORMAT, self.sid, tokens, *_after_tokens(self)])

    @classmethod
    def loads(cls, data: bytes | memoryview) -> Session:
        return cls.from_record(_json.loads(data))

    @classmethod
    def from_record(cls, raw: Any) -> Session:
        """The session of a stored record, parsed (``raw`` is what its JSON holds; it is consumed): an
        array of format 2, or an object of format 1. Raises ``TypeError`` or ``KeyError`` when it is not
        a session record."""
        if type(raw) is list:
            raw = _fields_from_array(raw, SESSION_LAYOUT, "Session")
            tokens = raw.get("tokens")
            if tokens is not None:
                raw["tokens"] = _fields_from_array(tokens, TOKEN_LAYOUT, "TokenSet")
        elif type(raw) is not dict:
            raise TypeError("a stored Session is neither an array nor an object")
        tokens = raw.pop("tokens")
        raw["tokens"] = _tokens_from(tokens) if tokens is not None else None
        return _session_from(raw)


def _fields_from_array(values: Any, layout: tuple[str, ...], name: str) -> dict[str, Any]:
    """The fields of a record of format 2 (its array; a session's starts with the format) by name, for the
    checks and defaults of ``stored_builder``. A longer array than the layout is one a later version wrote
    with a field this one does not know: refused, as an object with an unknown field is."""
    if type(values) is not list:
        raise TypeError(f"a stored {name} is not an array")
    if layout is SESSION_LAYOUT:
        if not values or values[0] != RECORD_FORMAT:  # as Published.quiet checks it
            raise TypeError(f"a stored {name} of another format")
        values = values[1:]
    if len(values) > len(layout):
        raise TypeError(f"a stored {name} has more fields than {list(layout)}")
    return dict(zip(layout, values, strict=False))  # shorter: written before its last fields existed


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
