"""The embedded provider playing GitHub (`mimics.github`): what a client of GitHub sees, call by call."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

import pytest

from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider, mimics

from .conftest import CLIENT_ID, CLIENT_SECRET, Flow

pytestmark = pytest.mark.anyio

API = "https://api.github.com"


def github(clock: FakeClock, *, expiring: bool = False) -> OAuthTestProvider:
    return OAuthTestProvider(
        mimic=mimics.github(client_id=CLIENT_ID, expiring=expiring),
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        clock=clock,
        access_token_ttl=8 * 3600,
        refresh_token_ttl=184 * 86400,
    )


async def test_token_answers_are_form_encoded_unless_json_is_accepted(
    make_flow: Callable[..., Flow], clock: FakeClock
) -> None:
    flow = make_flow(github(clock))
    login = await flow.login(scope="read:user user:email")
    answer = await flow.exchange(login)  # httpx's default Accept: */*
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/x-www-form-urlencoded")
    body = dict(parse_qsl(answer.text))
    assert body.keys() == {"access_token", "token_type", "scope"}  # no expires_in, no refresh, no ID token
    assert body["scope"] == "read:user,user:email"

    login = await flow.login(scope="read:user")
    flow.client.headers["accept"] = "application/json"
    assert (await flow.exchange(login)).json().keys() == {"access_token", "token_type", "scope"}
    reused = await flow.exchange(login)
    assert reused.status_code == 200 and reused.json()["error"] == "bad_verification_code"


async def test_errors_are_200s_with_githubs_codes(make_flow: Callable[..., Flow], clock: FakeClock) -> None:
    provider = github(clock, expiring=True)
    flow = make_flow(provider)
    flow.client.headers["accept"] = "application/json"
    wrong = make_flow(provider, client_secret="not-the-secret")
    wrong.client.headers["accept"] = "application/json"
    refused = await wrong.exchange(await wrong.login(scope="read:user"))
    assert refused.status_code == 200 and refused.json()["error"] == "incorrect_client_credentials"
    tokens = await flow.tokens(scope="read:user")
    assert tokens["expires_in"] == 8 * 3600 and tokens["refresh_token_expires_in"] == 184 * 86400
    rotated = (await flow.refresh(tokens["refresh_token"])).json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    stale = await flow.refresh(tokens["refresh_token"])
    assert stale.status_code == 200 and stale.json()["error"] == "bad_refresh_token"
    assert [c.error for c in provider.calls if c.endpoint == "token"] == [
        "incorrect_client_credentials",
        None,
        None,
        "bad_refresh_token",
    ]


async def test_the_user_api_the_emails_list_and_token_deletion(
    make_flow: Callable[..., Flow], clock: FakeClock
) -> None:
    provider = github(clock)
    flow = make_flow(provider)
    flow.client.headers["accept"] = "application/json"
    token = (await flow.tokens(scope="read:user"))["access_token"]
    user = (await flow.client.get(f"{API}/user", headers={"Authorization": f"Bearer {token}"})).json()
    assert user["login"] == "alice" and user["id"] == mimics.github_user_id({"sub": "alice"})
    assert "sub" not in user
    # /user/emails needs the user:email scope.
    denied = await flow.client.get(f"{API}/user/emails", headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == 404
    other = (await flow.tokens(scope="read:user user:email"))["access_token"]
    emails = (
        await flow.client.get(f"{API}/user/emails", headers={"Authorization": f"Bearer {other}"})
    ).json()
    assert [e["email"] for e in emails if e["primary"] and e["verified"]] == ["alice@example.test"]

    url = f"{API}/applications/{CLIENT_ID}/token"
    assert (await flow.client.post(url, json={"access_token": token})).status_code == 405
    anonymous = await flow.client.request("DELETE", url, json={"access_token": token})
    assert anonymous.status_code == 401
    deleted = await flow.client.request(
        "DELETE", url, json={"access_token": token}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    assert deleted.status_code == 204
    assert provider.token_info(token) == {"active": False}
    again = await flow.client.request(
        "DELETE", url, json={"access_token": token}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    assert again.status_code == 404
    gone = await flow.client.get(f"{API}/user", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 401 and gone.json() == {"message": "Bad credentials"}
