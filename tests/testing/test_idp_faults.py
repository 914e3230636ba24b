"""Fault injection, holds, and the records of calls."""

from __future__ import annotations

import logging
import time

import anyio
import httpx
import pytest

from asgi_oauth_guard.testing import Hold, OAuthTestProvider, RecordedCall

pytestmark = pytest.mark.anyio


async def test_fail_next_answers_503_then_recovers(flow, provider) -> None:
    tokens = await flow.tokens()
    provider.fail_next(2)

    for _ in range(2):
        response = await flow.refresh(tokens["refresh_token"])
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
    assert (await flow.refresh(tokens["refresh_token"])).status_code == 200
    assert provider.count(grant_type="refresh_token", error="temporarily_unavailable") == 2


async def test_a_failed_call_spends_nothing(flow, provider) -> None:
    login = await flow.login()
    provider.fail_next(1, status=500)
    response = await flow.exchange(login)
    assert response.status_code == 500
    assert response.json()["error"] == "server_error"
    assert (await flow.exchange(login)).status_code == 200


async def test_fail_next_targets_one_endpoint_and_queues_in_order(flow, provider) -> None:
    tokens = await flow.tokens()
    provider.fail_next(1, status=500, endpoint="userinfo")
    provider.fail_next(1, status=429, endpoint="userinfo")

    assert (await flow.refresh(tokens["refresh_token"])).status_code == 200
    first = await flow.userinfo(tokens["access_token"])
    second = await flow.userinfo(tokens["access_token"])
    assert (first.status_code, first.json()["error"]) == (500, "server_error")
    assert (second.status_code, second.json()["error"]) == (429, "temporarily_unavailable")
    assert [c.fault for c in provider.calls[-2:]] == ["fail", "fail"]


async def test_timeout_through_the_transport_never_reaches_the_app(flow, provider) -> None:
    login = await flow.login()
    provider.timeout_next(1)

    with pytest.raises(httpx.ReadTimeout):
        await flow.exchange(login)

    recorded = provider.calls[-1]
    assert (recorded.endpoint, recorded.status, recorded.fault) == ("token", 0, "timeout")
    assert recorded.grant_type == "authorization_code"
    assert (await flow.exchange(login)).status_code == 200


async def test_timeout_served_for_real_stalls_then_answers_503(make_flow) -> None:
    provider = OAuthTestProvider(timeout_delay=0)
    provider.timeout_next(1, endpoint="discovery")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=provider), base_url=provider.issuer
    ) as client:
        response = await client.get("/.well-known/openid-configuration")
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
        assert provider.calls[-1].fault == "timeout"
        assert (await client.get("/.well-known/openid-configuration")).status_code == 200


async def test_connect_error_next_hits_any_endpoint(client, provider) -> None:
    provider.connect_error_next(2)
    with pytest.raises(httpx.ConnectError):
        await client.get("/jwks")
    with pytest.raises(httpx.ConnectError):
        await client.get("/.well-known/openid-configuration")
    assert (await client.get("/jwks")).status_code == 200
    assert [c.fault for c in provider.calls] == ["connect_error", "connect_error", None]


async def test_down_refuses_every_connection_until_up(flow, client, provider) -> None:
    tokens = await flow.tokens()
    provider.down = True
    with pytest.raises(httpx.ConnectError):
        await flow.refresh(tokens["refresh_token"])
    with pytest.raises(httpx.ConnectError):
        await client.get("/jwks")
    provider.down = False
    assert (await flow.refresh(tokens["refresh_token"])).status_code == 200


async def test_down_served_for_real_answers_503() -> None:
    provider = OAuthTestProvider()
    provider.down = True
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=provider), base_url=provider.issuer
    ) as client:
        assert (await client.get("/jwks")).status_code == 503


async def test_slow_next_delays_the_answer(flow, provider) -> None:
    tokens = await flow.tokens()
    provider.slow_next(1, 0.05)
    started = time.monotonic()
    response = await flow.refresh(tokens["refresh_token"])
    assert time.monotonic() - started >= 0.05
    assert response.status_code == 200
    assert provider.calls[-1].fault == "slow"


async def test_hold_blocks_matching_calls_until_released(flow, client, provider) -> None:
    tokens = await flow.tokens()
    hold = provider.hold(endpoint="token")
    done: list[int] = []

    async def refresh() -> None:
        done.append((await flow.refresh(tokens["refresh_token"])).status_code)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(refresh)
            await hold.wait_entered(1)
            assert hold.entered == 1
            assert (await client.get("/jwks")).status_code == 200
            assert done == []
            hold.release()
        assert done == [200]
        await hold.wait_entered(1)
        fresh = await flow.tokens()
    assert hold.entered == 2
    assert fresh["access_token"]


async def test_a_hold_used_as_a_context_manager_releases_on_exit(provider) -> None:
    with provider.hold(endpoint="jwks") as hold:
        assert isinstance(hold, Hold)
        assert not hold.released
    assert hold.released


async def test_calls_are_recorded_in_order(flow, provider, clock) -> None:
    provider.reset_calls()
    login = await flow.login()
    clock.advance(5)
    tokens = (await flow.exchange(login)).json()
    clock.advance(5)
    flow.assert_invalid_grant(await flow.exchange(login))
    await flow.userinfo(tokens["access_token"])

    calls = provider.calls
    assert [(c.endpoint, c.method, c.status, c.error) for c in calls] == [
        ("authorize", "GET", 302, None),
        ("token", "POST", 200, None),
        ("token", "POST", 400, "invalid_grant"),
        ("userinfo", "GET", 401, "invalid_token"),
    ]
    assert [c.at for c in calls] == [clock() - 10, clock() - 5, clock(), clock()]
    assert calls[1].grant_type == "authorization_code"
    assert calls[1].params["redirect_uri"] == login.redirect_uri
    assert calls[0].params["code_challenge_method"] == "S256"
    assert provider.count() == 2
    assert provider.count(endpoint=None) == 4
    assert provider.count(error="invalid_grant") == 1
    provider.reset_calls()
    assert provider.calls == []


async def test_recorded_call_is_frozen_and_hides_secrets_in_repr(flow, provider) -> None:
    await flow.exchange(await flow.login())
    call = provider.calls[-1]
    assert isinstance(call, RecordedCall)
    with pytest.raises(AttributeError):
        call.status = 500  # type: ignore[misc]
    assert call.params["code"] not in repr(call)
    assert call.params["code_verifier"] not in repr(call)


async def test_no_token_code_or_secret_is_ever_logged(flow, client, provider, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secrets_seen: set[str] = {"guard-secret"}
    login = await flow.login()
    secrets_seen |= {login.code, login.verifier}
    tokens = (await flow.exchange(login)).json()
    secrets_seen |= {tokens["access_token"], tokens["refresh_token"], tokens["id_token"]}
    await flow.exchange(login)
    await flow.refresh(tokens["refresh_token"])
    await flow.userinfo(tokens["access_token"])
    await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": "x"}, auth=("a", "wrong-1")
    )
    secrets_seen.add("wrong-1")
    other = await flow.tokens()
    secrets_seen |= {other["access_token"], other["refresh_token"]}
    await client.post(
        "/revoke", data={"token": other["refresh_token"]}, auth=("guard-client", "guard-secret")
    )
    provider.timeout_next(1)
    with pytest.raises(httpx.ReadTimeout):
        await flow.refresh(other["refresh_token"])
    await client.get("/end_session", params={"id_token_hint": tokens["id_token"]})

    # httpx logs request URLs (this id_token_hint included); that is the caller's business, not the provider's.
    ours = [r for r in caplog.records if r.name.startswith("asgi_oauth_guard")]
    assert len(ours) > 10
    for record in ours:
        text = record.getMessage()
        for value in secrets_seen:
            assert value not in text, record.name
