"""Each example app passes the same scenarios: login, /api/me, duplicate callbacks, refresh, re-login, logout.

The apps are built by their factories around the test's embedded provider and clock, and driven in-process.
"""

from __future__ import annotations

import importlib

import anyio
import httpx
import pytest
from anyio import wait_all_tasks_blocked

from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider
from examples._settings import Settings

from .conftest import APP, CASES

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize(("example", "anyio_backend"), CASES)]

API = {"accept": "application/json"}


async def start_sign_in(client: httpx.AsyncClient, next_path: str = "/") -> str:
    """The login route, then the embedded provider at /idp (auto-approving): the callback URL to load."""
    login = await client.get("/auth/login", params={"next": next_path})
    assert login.status_code == 303
    assert login.headers["location"].startswith(f"{APP}/idp/authorize?")
    authorize = await client.get(login.headers["location"])
    assert authorize.status_code == 302
    callback = authorize.headers["location"]
    assert callback.startswith(f"{APP}/auth/callback?code=")
    return callback


async def sign_in(client: httpx.AsyncClient, next_path: str = "/") -> None:
    done = await client.get(await start_sign_in(client, next_path))
    assert done.status_code == 303 and done.headers["location"] == next_path


async def me(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.get("/api/me", headers=API)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_home_shows_who_is_signed_in(client: httpx.AsyncClient) -> None:
    home = await client.get("/")
    assert home.status_code == 200 and "You are not signed in." in home.text
    await sign_in(client)
    home = await client.get("/")
    assert 'Signed in as <strong id="user">Alice</strong>' in home.text
    assert '<dd id="refreshes">0</dd>' in home.text and 'data-seconds="30"' in home.text


async def test_public_needs_no_login(client: httpx.AsyncClient) -> None:
    assert (await client.get("/public")).status_code == 200
    await sign_in(client)
    assert (await client.get("/public")).status_code == 200


async def test_api_me(client: httpx.AsyncClient, provider: OAuthTestProvider, clock: FakeClock) -> None:
    anonymous = await client.get("/api/me")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "login_required"
    await sign_in(client, "/api/me")
    body = await me(client)
    assert body["sub"] == "alice" and body["email"] == "alice@example.test"
    assert body["expires_at"] == clock() + 30 and body["refreshes"] == 0
    assert isinstance(body["access_token"], str) and provider.grant_alive(body["access_token"])


async def test_duplicate_callbacks_exchange_the_code_once(
    client: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    callback = await start_sign_in(client, "/api/me")
    hold = provider.hold(endpoint="token")
    answers: list[httpx.Response] = []

    async def load() -> None:
        answers.append(await client.get(callback))

    with hold:
        async with anyio.create_task_group() as tg:
            tg.start_soon(load)
            await hold.wait_entered(1)
            for _ in range(4):
                tg.start_soon(load)
            await wait_all_tasks_blocked()  # the duplicates wait for the first exchange
            hold.release()
    assert [a.status_code for a in answers] == [303] * 5
    assert {a.headers["location"] for a in answers} == {"/api/me"}
    assert provider.count(endpoint="token", grant_type="authorization_code") == 1
    assert (await me(client))["sub"] == "alice"


async def test_a_token_due_is_refreshed(
    client: httpx.AsyncClient, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    await sign_in(client)
    first = await me(client)
    clock.advance(21)  # within the demo's 10 s leeway of the 30 s lifetime
    second = await me(client)
    assert second["refreshes"] == 1 and second["access_token"] != first["access_token"]
    assert second["expires_at"] == clock() + 30
    assert (await me(client))["refreshes"] == 1
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1


async def test_the_demo_expire_button_makes_the_next_api_call_refresh(
    client: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    await sign_in(client)
    before = await me(client)
    pressed = await client.post("/demo/expire")
    assert pressed.status_code == 303 and pressed.headers["location"] == "/"
    after = await me(client)
    assert after["refreshes"] == 1 and after["access_token"] != before["access_token"]
    assert provider.count(endpoint="userinfo", error="invalid_token") == 1
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1


async def test_relogin_after_the_provider_revokes_the_grant(
    client: httpx.AsyncClient, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    await sign_in(client)
    provider.revoke_grants("alice")
    clock.advance(21)
    refused = await client.get("/api/me", headers=API)
    assert refused.status_code == 401 and refused.json()["reason"] == "refresh_rejected"
    home = await client.get("/")
    assert 'data-reason="refresh_rejected"' in home.text and "no longer valid" in home.text
    again = await client.get("/api/me", headers=API)
    assert again.status_code == 401 and again.json()["reason"] == "refresh_rejected"
    await sign_in(client)
    assert (await me(client))["sub"] == "alice"


async def test_the_demo_revoke_button_shows_the_relogin_message(
    client: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    await sign_in(client)
    pressed = await client.post("/demo/revoke")
    assert pressed.status_code == 303 and pressed.headers["location"] == "/"
    home = await client.get("/")
    assert 'data-reason="refresh_rejected"' in home.text
    assert provider.count(endpoint="token", grant_type="refresh_token", error="invalid_grant") == 1


async def test_logout(client: httpx.AsyncClient, provider: OAuthTestProvider) -> None:
    await sign_in(client)
    token = (await me(client))["access_token"]
    out = await client.post("/auth/logout")
    assert out.status_code == 303 and out.headers["location"] == "/"
    assert provider.count(endpoint="revoke") == 1
    assert isinstance(token, str) and not provider.grant_alive(token)
    assert (await client.get("/api/me", headers=API)).status_code == 401
    assert "You are not signed in." in (await client.get("/")).text


async def test_the_module_app_runs_from_the_environment_against_the_embedded_provider(example: str) -> None:
    app = importlib.import_module(f"examples.{example}_app").app
    issuer = Settings.from_env().embedded_issuer  # http://127.0.0.1:8000/idp unless PUBLIC_URL says otherwise
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=issuer[: -len("/idp")]) as c:
        assert (await c.get("/public")).status_code == 200
        discovery = (await c.get("/idp/.well-known/openid-configuration")).json()
        assert discovery["issuer"] == issuer
        login = await c.get("/auth/login")
        assert login.headers["location"].startswith(f"{issuer}/authorize?")
        sign_in_page = await c.get(login.headers["location"])
        assert sign_in_page.status_code == 200 and "Sign in as alice" in sign_in_page.text
