"""The back-channel logout RP cases (OpenID Connect Back-Channel Logout 1.0), played by the embedded provider.

Each case signs a browser in, has the provider (in that case's mode) make a logout token for the browser's
provider session, and POSTs it to the guard's back-channel route as a provider does (server to server, no
cookies). The accepting case ends the session (200); the refusing ones answer 400 ``invalid_request`` and
the browser stays signed in; nothing answers 500.
"""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from asgi_oauth_guard import OAuthGuard
from asgi_oauth_guard.testing import OAuthTestProvider

from .conftest import APP_URL, World, assert_signed_in, query, sign_in

pytestmark = pytest.mark.anyio

ROUTE = "/auth/backchannel-logout"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Case:
    name: str
    ends_session: bool
    status: int


BACKCHANNEL_CASES = [
    Case(name="rp-backchannel-rpinitlogout", ends_session=True, status=200),
    Case(name="rp-backchannel-rpinitlogout-lt-alg-none", ends_session=False, status=400),
    Case(name="rp-backchannel-rpinitlogout-lt-wrong-alg", ends_session=False, status=400),
    Case(name="rp-backchannel-rpinitlogout-lt-wrong-aud", ends_session=False, status=400),
    Case(name="rp-backchannel-rpinitlogout-lt-wrong-issuer", ends_session=False, status=400),
    Case(name="rp-backchannel-rpinitlogout-lt-no-event", ends_session=False, status=400),
    Case(name="rp-backchannel-rpinitlogout-lt-wrong-event", ends_session=False, status=400),
    Case(name="rp-backchannel-rpinitlogout-lt-with-nonce", ends_session=False, status=400),
    Case(name="x-backchannel-no-sid-no-sub", ends_session=False, status=400),
    # a valid token naming a provider session this app does not have: nothing to end
    Case(name="x-backchannel-wrong-sid", ends_session=False, status=200),
]
OWN_TESTS = {"x-backchannel-jti-replay"}


async def post_logout(guard: OAuthGuard, token: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(guard), base_url=APP_URL) as provider_side:
        return await provider_side.post(ROUTE, data={"logout_token": token})


async def still_signed_in(browser: httpx.AsyncClient) -> bool:
    me = await browser.get("/me")
    assert me.status_code in (200, 303), me.status_code
    return me.status_code == 200


async def signed_in_browser(
    world: World, provider: OAuthTestProvider
) -> tuple[OAuthGuard, httpx.AsyncClient]:
    guard = world.guard(provider)
    browser = world.browser(guard)
    assert_signed_in(await sign_in(browser, provider))
    return guard, browser


def test_every_backchannel_case_of_the_provider_has_a_test() -> None:
    from asgi_oauth_guard.testing import CONFORMANCE_CASES

    names = {n for n in CONFORMANCE_CASES if "backchannel" in n}
    assert names == {c.name for c in BACKCHANNEL_CASES} | OWN_TESTS


@pytest.mark.parametrize("case", BACKCHANNEL_CASES, ids=[c.name for c in BACKCHANNEL_CASES])
async def test_backchannel_logout(world: World, case: Case) -> None:
    provider = world.provider(case.name)
    guard, browser = await signed_in_browser(world, provider)
    (sid,) = provider.session_ids("alice")
    answer = await post_logout(guard, provider.logout_token(sid=sid, sub="alice"))
    assert answer.status_code == case.status, answer.text
    assert answer.headers["cache-control"] == "no-store"
    if case.status == 400:
        assert answer.json()["error"] == "invalid_request"
    if case.ends_session:
        me = await browser.get("/me")
        assert me.status_code == 303 and query(me.headers["location"])["reason"] == "session_expired"
    else:
        assert await still_signed_in(browser)


async def test_x_backchannel_jti_replay(world: World) -> None:
    """A logout token is accepted once: replayed after the user signed in again, it ends nothing."""
    provider = world.provider("x-backchannel-jti-replay")
    guard, first = await signed_in_browser(world, provider)
    token = provider.logout_token(sub="alice")
    assert (await post_logout(guard, token)).status_code == 200
    assert not await still_signed_in(first)
    second = world.browser(guard)
    assert_signed_in(await sign_in(second, provider))
    replayed = await post_logout(guard, token)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_request"
    assert await still_signed_in(second)
