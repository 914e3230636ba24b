"""The records' JSON (``_json``): orjson when installed, the standard library otherwise. Each reads what the
other wrote (workers with and without the ``speedups`` extra share a store in a rolling deploy), and what
orjson cannot take falls back to the standard library instead of failing a sign-in or a request."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import orjson  # a test dependency (the speedups extra)
import pytest

from asgi_oauth_guard import TokenSet, _json
from asgi_oauth_guard._index import _Meta
from asgi_oauth_guard._session import (
    RECORD_FORMAT,
    SESSION_LAYOUT,
    TOKEN_LAYOUT,
    Outcome,
    Session,
    Transaction,
    fields_of,
)


@pytest.fixture(params=["orjson", "json"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "json":
        monkeypatch.setattr(_json, "_orjson", None)
    assert _json.using_orjson() is (request.param == "orjson")
    return request.param


def _session(**changes: Any) -> Session:
    tokens = TokenSet(
        access_token="at",
        refresh_token="rt",
        id_token="id",
        scope="openid",
        issued_at=1.7e9,
        expires_at=1.7e9 + 60,
    )
    fields: dict[str, Any] = dict(
        sid="s",
        tokens=tokens,
        claims={"sub": "alice", "groups": ["a", "b"], "address": {"country": "FR"}, "é": "ü\u2028"},
        created_at=1.7e9,
        app_claims={"plan": "pro"},
    )
    fields.update(changes)
    return Session(**fields)


RECORDS = [
    _session(),
    _session(
        tokens=None, last_seen=1.8e9, refreshes=3, issuer="https://idp.test", provider="p", offline=True
    ),
    Transaction(
        verifier="v", nonce=None, redirect_uri="https://app/cb", next="/", created_at=1.0, acr_values=("a",)
    ),
    Outcome(ok=True, next="/x", cookie="c", sid="s", code_hash="h", at=2.5),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_record_written_by_one_codec_is_read_back_equal_by_both(
    record: Any, codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = record.dumps(1) if type(record) is Session else record.dumps()
    assert json.loads(written) == json.loads(json.dumps(dataclasses.asdict(record)))  # what asdict wrote
    formats = [written, record.dumps()] if type(record) is Session else [written]
    for data in formats:
        assert type(record).loads(data) == record
    monkeypatch.setattr(_json, "_orjson", None if codec == "orjson" else orjson)  # the other worker
    for data in formats:
        assert type(record).loads(data) == record


def test_a_session_record_of_format_2_is_its_fields_in_their_pinned_order() -> None:
    # The layout is a format: records in stores are read by it. A field may only be added at the end.
    assert SESSION_LAYOUT == (
        "sid", "tokens", "claims", "created_at", "refreshes", "last_seen",
        "issuer", "offline", "provider", "user_id", "app_claims",
    )  # fmt: skip
    assert TOKEN_LAYOUT == (
        "access_token", "token_type", "refresh_token", "id_token", "scope",
        "issued_at", "expires_at", "refresh_expires_at",
    )  # fmt: skip
    assert set(SESSION_LAYOUT) == {f.name for f in dataclasses.fields(Session)}
    assert set(TOKEN_LAYOUT) == {f.name for f in dataclasses.fields(TokenSet)}
    original = _session(last_seen=1.8e9, refreshes=3, issuer="i", provider="p", user_id="u")
    as_object = json.loads(original.dumps(1))
    tokens = as_object["tokens"]
    assert json.loads(original.dumps()) == [
        RECORD_FORMAT,
        *[[tokens[n] for n in TOKEN_LAYOUT] if n == "tokens" else as_object[n] for n in SESSION_LAYOUT],
    ]
    assert RECORD_FORMAT == 2 and json.loads(_session(tokens=None).dumps())[2] is None
    assert len(original.dumps()) < len(original.dumps(1))  # no keys


def test_fields_of_is_one_level_of_asdict_and_copies_nothing_below() -> None:
    original = _session()
    fields = fields_of(original)
    assert list(fields) == [f.name for f in dataclasses.fields(Session)]
    assert fields["tokens"] is original.tokens and fields["claims"] is original.claims
    fields["refreshes"] = 99  # a new dict: the frozen record is not touched
    assert original.refreshes == 0


def test_what_orjson_cannot_write_is_written_by_json(codec: str) -> None:
    huge = _session(claims={"sub": "alice", "id": 2**70})  # an integer beyond 64 bits, from a provider
    assert Session.loads(huge.dumps()) == huge
    meta = _Meta(created_at=1.0, last_used=2.0, issuer="i", auth_time=None, user=None, op_session=None)
    assert _Meta.loads(meta.dumps()) == meta


def test_what_orjson_cannot_read_is_read_by_json(codec: str) -> None:
    # Written by the standard library (a worker without the extra, or a provider's claim): NaN and a big int.
    record = json.loads(_session().dumps(1))
    record["claims"] = {"sub": "alice", "score": float("inf"), "id": 2**70}
    array = json.loads(_session().dumps())
    array[3] = record["claims"]
    assert Session.loads(json.dumps(array).encode()).claims == record["claims"]
    loaded = Session.loads(json.dumps(record).encode())
    assert loaded.claims == {"sub": "alice", "score": float("inf"), "id": 2**70}


@pytest.mark.parametrize("junk", [b"", b"{", b"\xff\xfe", b"[1,]", b'{"sid": "s"'])
def test_junk_is_a_value_error_with_either_codec(junk: bytes, codec: str) -> None:
    with pytest.raises(json.JSONDecodeError):  # orjson's error is one too; callers catch ValueError
        _json.loads(junk)
