"""The refresh_token grant: rotation, reuse detection, expiry and revocation."""

from __future__ import annotations

import anyio
import pytest

from asgi_oauth_guard.testing import OAuthTestProvider

pytestmark = pytest.mark.anyio


async def test_rotation_answers_a_new_refresh_token_each_time(flow, provider) -> None:
    first = await flow.tokens()
    response = await flow.refresh(first["refresh_token"])

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await flow.userinfo(second["access_token"])).status_code == 200
    assert (await flow.refresh(second["refresh_token"])).status_code == 200
    assert provider.count(endpoint="token", grant_type="refresh_token") == 2


async def test_reusing_a_rotated_refresh_token_revokes_the_grant(flow, provider) -> None:
    first = await flow.tokens()
    second = (await flow.refresh(first["refresh_token"])).json()

    flow.assert_invalid_grant(await flow.refresh(first["refresh_token"]))

    assert not provider.grant_alive(second["refresh_token"])
    flow.assert_invalid_grant(await flow.refresh(second["refresh_token"]))
    assert (await flow.userinfo(second["access_token"])).status_code == 401
    assert (await flow.userinfo(first["access_token"])).status_code == 401


async def test_two_refreshes_at_once_one_wins_then_the_grant_dies(flow, provider) -> None:
    tokens = await flow.tokens()
    responses = []

    async def refresh() -> None:
        responses.append(await flow.refresh(tokens["refresh_token"]))

    with anyio.fail_after(5), provider.hold(endpoint="token") as hold:
        async with anyio.create_task_group() as tg:
            tg.start_soon(refresh)
            tg.start_soon(refresh)
            await hold.wait_entered(2)
            assert responses == []
            hold.release()

    assert sorted(r.status_code for r in responses) == [200, 400]
    winner = next(r for r in responses if r.status_code == 200).json()
    flow.assert_invalid_grant(next(r for r in responses if r.status_code == 400))
    flow.assert_invalid_grant(await flow.refresh(winner["refresh_token"]))
    assert (await flow.userinfo(winner["access_token"])).status_code == 401
    assert provider.count(endpoint="token", grant_type="refresh_token", error="invalid_grant") == 2


async def test_without_rotation_the_same_refresh_token_keeps_working(make_flow) -> None:
    flow = make_flow(OAuthTestProvider(rotate_refresh_tokens=False))
    tokens = await flow.tokens()
    for _ in range(3):
        response = await flow.refresh(tokens["refresh_token"])
        assert response.status_code == 200
        assert response.json()["refresh_token"] == tokens["refresh_token"]


async def test_expired_refresh_token_is_invalid_grant_and_revokes_nothing(flow, provider, clock) -> None:
    tokens = await flow.tokens()
    clock.advance(30 * 24 * 3600)

    flow.assert_invalid_grant(await flow.refresh(tokens["refresh_token"]))
    assert provider.grant_alive(tokens["refresh_token"])


async def test_expire_refresh_tokens_hits_only_those_issued_so_far(flow, provider) -> None:
    old = await flow.tokens()
    provider.expire_refresh_tokens()
    new = await flow.tokens()

    flow.assert_invalid_grant(await flow.refresh(old["refresh_token"]))
    assert (await flow.refresh(new["refresh_token"])).status_code == 200


async def test_disabled_user_cannot_refresh_until_enabled(flow, provider) -> None:
    tokens = await flow.tokens()
    provider.disable_user("alice")

    flow.assert_invalid_grant(await flow.refresh(tokens["refresh_token"]))
    assert (await flow.userinfo(tokens["access_token"])).status_code == 401

    provider.enable_user("alice")
    assert (await flow.refresh(tokens["refresh_token"])).status_code == 200


async def test_refresh_after_revoke_grants_is_invalid_grant(flow, provider) -> None:
    tokens = await flow.tokens()
    provider.revoke_grants("alice")
    flow.assert_invalid_grant(await flow.refresh(tokens["refresh_token"]))


async def test_unknown_refresh_token_is_invalid_grant(flow) -> None:
    flow.assert_invalid_grant(await flow.refresh("not-a-refresh-token"))


async def test_refreshed_id_token_keeps_auth_time_and_drops_the_nonce(flow, clock) -> None:
    tokens = await flow.tokens()
    login_time = int(clock())
    clock.advance(120)

    refreshed = (await flow.refresh(tokens["refresh_token"])).json()
    claims = await flow.id_token_claims(refreshed["id_token"])

    assert claims["auth_time"] == login_time
    assert claims["iat"] == login_time + 120
    assert "nonce" not in claims


async def test_access_tokens_expire_with_the_clock_and_refresh_replaces_them(flow, provider, clock) -> None:
    tokens = await flow.tokens()
    clock.advance(3599)
    assert (await flow.userinfo(tokens["access_token"])).status_code == 200
    clock.advance(1)
    assert (await flow.userinfo(tokens["access_token"])).status_code == 401
    assert provider.grant_alive(tokens["access_token"])

    fresh = (await flow.refresh(tokens["refresh_token"])).json()
    assert (await flow.userinfo(fresh["access_token"])).status_code == 200


async def test_expire_access_tokens_hits_only_those_issued_so_far(flow, provider) -> None:
    old = await flow.tokens()
    provider.expire_access_tokens()
    new = await flow.tokens()

    assert (await flow.userinfo(old["access_token"])).status_code == 401
    assert (await flow.userinfo(new["access_token"])).status_code == 200
