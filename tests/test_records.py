"""The constructors the cold path builds its records with (``_records``): each builds exactly what the
record's own ``__init__`` builds, and refuses what that refuses."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from asgi_oauth_guard._context import GuardState, Identity
from asgi_oauth_guard._protocol import TokenSet
from asgi_oauth_guard._records import positional_builder, stored_builder
from asgi_oauth_guard._session import Session


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    name: str
    count: int = 0
    note: str | None = None


TOKENS = {
    "access_token": "at",
    "token_type": "Bearer",
    "refresh_token": "rt",
    "id_token": "id",
    "scope": "openid",
    "issued_at": 1.7e9,
    "expires_at": 1.8e9,
    "refresh_expires_at": None,
}


def test_a_record_built_from_its_stored_fields_is_the_one_init_builds() -> None:
    build = stored_builder(TokenSet)
    built = build(dict(TOKENS))
    made = TokenSet(**TOKENS)
    assert type(built) is TokenSet
    assert built == made and repr(built) == repr(made) and hash(built) == hash(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.access_token = "other"  # type: ignore[misc]
    assert dataclasses.replace(built, scope="email").scope == "email"
    assert not hasattr(built, "__dict__")  # slotted: nothing more for the garbage collector to walk


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({"name": "a"}, Record(name="a")),  # written before two fields existed: their defaults
        ({"name": "a", "note": "n"}, Record(name="a", note="n")),
        ({"note": "n", "count": 2, "name": "a"}, Record(name="a", count=2, note="n")),  # any order
    ],
)
def test_fields_a_record_lacks_get_their_defaults(stored: dict[str, Any], expected: Record) -> None:
    built = stored_builder(Record)(stored)
    assert built == expected and type(built) is Record


@pytest.mark.parametrize(
    "stored",
    [
        {"count": 1},  # a required field missing
        {"name": "a", "other": 1},  # an unknown field
        {"name": "a", "count": 1, "other": 1},  # as many fields as the record has, one of them unknown
        {"name": "a", "count": 1, "note": None, "other": 1},  # more fields than the record has
        ["a", 1, None],
        "a",
        None,
    ],
)
def test_what_init_would_refuse_is_refused(stored: Any) -> None:
    with pytest.raises(TypeError):
        Record(**stored) if isinstance(stored, dict) else Record(*stored)  # type: ignore[misc]
    with pytest.raises(TypeError):
        stored_builder(Record)(stored)


def test_a_session_read_back_has_typed_tokens() -> None:
    record = {
        "sid": "s",
        "tokens": dict(TOKENS),
        "claims": {"sub": "alice"},
        "created_at": 1.7e9,
        "refreshes": 1,
        "last_seen": None,
        "issuer": "https://idp.test",
        "offline": False,
        "provider": "default",
        "user_id": None,
        "app_claims": None,
    }
    loaded = Session.loads(json.dumps(record).encode())
    assert type(loaded) is Session and type(loaded.tokens) is TokenSet
    assert loaded == Session(**{**record, "tokens": TokenSet(**TOKENS)})


def test_a_record_built_from_its_values_in_order_is_the_one_init_builds() -> None:
    build = positional_builder(Identity)
    values = ({"sub": "alice"}, "at", "Bearer", 1.8e9, "openid", 2, "idp", "u-1", {"role": "admin"}, "id")
    names = [field.name for field in dataclasses.fields(Identity)]
    built = build(*values)
    made = Identity(**dict(zip(names, values, strict=True)))
    assert type(built) is Identity and built == made and repr(built) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.access_token = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):  # every field, no more, no fewer
        build(*values[:-1])
    with pytest.raises(TypeError):
        build(*values, None)


def test_records_the_builders_cannot_build_faithfully_are_refused_at_import() -> None:
    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        value: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            assert self.value > 0

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        values: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Child(Record):
        extra: int = 0

    for refused in (Unslotted, Checked, Child):
        with pytest.raises(TypeError):
            positional_builder(refused)
        with pytest.raises(TypeError):
            stored_builder(refused)
    with pytest.raises(TypeError, match="default factory"):
        stored_builder(Factory)
    with pytest.raises(TypeError, match="derives"):
        positional_builder(GuardState)  # its __post_init__ derives user and auth: the caller must pass them
    positional_builder(GuardState, derived_by_caller=True)
