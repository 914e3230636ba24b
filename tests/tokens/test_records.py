"""Offline records stay bounded; a provider ignoring resource= is noticed."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from asgi_oauth_guard import TokenSet
from asgi_oauth_guard._offline import MAX_RECORD_BYTES, MAX_RESOURCES, OfflineGrant, lost_reason
from asgi_oauth_guard._resources import audience, honoured


def tokens(access: str = "at", refresh: str | None = "rt", **more: object) -> TokenSet:
    return TokenSet(access_token=access, refresh_token=refresh, issued_at=0.0, expires_at=60.0, **more)  # type: ignore[arg-type]


def grant() -> OfflineGrant:
    return OfflineGrant(provider="default", sub="alice", tokens=tokens(), created_at=0.0, updated_at=0.0)


def test_a_refresh_for_a_resource_rotates_the_grants_refresh_token_and_caches_the_access_token() -> None:
    refreshed = grant().refreshed(tokens("at-a", "rt-2"), "https://a.example", 10.0)
    assert refreshed.tokens is not None and refreshed.tokens.refresh_token == "rt-2"
    assert refreshed.tokens.access_token == "at"  # the default audience's token is unchanged
    cached = refreshed.token_for("https://a.example")
    assert cached is not None and cached.access_token == "at-a" and cached.refresh_token is None
    # A provider that does not rotate: the grant keeps its refresh token.
    kept = refreshed.refreshed(tokens("at-b", None), "https://b.example", 20.0)
    assert kept.tokens is not None and kept.tokens.refresh_token == "rt-2"
    assert OfflineGrant.loads(kept.dumps()) == kept


def test_at_most_max_resources_tokens_are_kept_the_oldest_giving_way() -> None:
    record = grant()
    for i in range(MAX_RESOURCES + 3):
        record = record.refreshed(tokens(f"at-{i}", f"rt-{i}"), f"https://api-{i}.example", float(i))
    assert len(record.resources) == MAX_RESOURCES
    assert "https://api-0.example" not in record.resources
    assert f"https://api-{MAX_RESOURCES + 2}.example" in record.resources


def test_a_record_beyond_the_byte_bound_drops_its_resource_tokens_first() -> None:
    from asgi_oauth_guard._errors import ProviderUnavailable
    from asgi_oauth_guard._offline import OfflineGrants
    from asgi_oauth_guard._server_keys import ServerKeys

    grants = OfflineGrants.__new__(OfflineGrants)
    grants._keys = ServerKeys(["records-server-key-0123456789abcdef012"])
    big = grant().refreshed(tokens("x" * (MAX_RECORD_BYTES // 2), "rt"), "https://a.example", 1.0)
    big = big.refreshed(tokens("y" * (MAX_RECORD_BYTES // 2), "rt"), "https://b.example", 2.0)
    sealed = grants._seal("og:1", big)
    plain, _ = grants._keys.unseal(b"og:1", sealed, what="a grant")
    assert OfflineGrant.loads(plain).resources == {}
    huge = OfflineGrant(
        provider="default", sub="alice", tokens=tokens("z" * MAX_RECORD_BYTES), created_at=0.0, updated_at=0.0
    )
    with pytest.raises(ProviderUnavailable, match="more than an offline grant may keep"):
        grants._seal("og:1", huge)


def test_the_reason_a_grant_was_lost_comes_from_what_the_guard_knows() -> None:
    expiring = OfflineGrant(
        provider="p", sub="s", tokens=tokens(refresh_expires_at=100.0), created_at=0.0, updated_at=0.0
    )
    assert lost_reason(expiring, now=100.0, max_idle=1000.0) == "expired"
    assert lost_reason(grant(), now=1000.0, max_idle=1000.0) == "idle"
    assert lost_reason(grant(), now=10.0, max_idle=1000.0) == "revoked"


def jwt_with(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def test_a_provider_that_ignores_the_resource_is_noticed_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert honoured("p", "https://a.example", jwt_with({"aud": "https://a.example"})) is True
    assert honoured("p", "https://a.example", jwt_with({"aud": ["x", "https://a.example"]})) is True
    ignored = jwt_with({"aud": "client-id"})
    assert honoured("ignoring", "https://a.example", ignored) is False
    assert honoured("ignoring", "https://a.example", ignored) is False
    assert [r.getMessage().count("ignored resource=") for r in caplog.records] == [1]
    assert honoured("p", "https://a.example", "opaque-token") is None
    assert honoured("p", None, ignored) is None
    assert audience("a.b") is None and audience("a.!!!.c") is None
