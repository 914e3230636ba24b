"""The authorization endpoint: validation, redirects, errors and the sign-in page."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from asgi_oauth_guard.testing import OAuthTestProvider

pytestmark = pytest.mark.anyio

REDIRECT = "https://app.example.test/auth/callback"


async def test_auto_approve_redirects_with_code_state_and_iss(flow, client, provider) -> None:
    params = flow.authorize_params(state="s-123")
    response = await client.get(flow.authorize_url(params))

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    answer = flow.query(location)
    assert set(answer) == {"code", "state", "iss"}
    assert answer["state"] == "s-123"
    assert answer["iss"] == provider.issuer
    assert response.headers["cache-control"] == "no-store"


async def test_redirect_uri_query_is_kept_and_missing_state_is_not_invented(flow, client) -> None:
    params = flow.authorize_params(redirect_uri=REDIRECT + "?tenant=a", state=None)
    location = (await client.get(flow.authorize_url(params))).headers["location"]

    assert location.startswith(REDIRECT + "?tenant=a&code=")
    assert "state" not in flow.query(location)


async def test_complete_authorization_matches_the_endpoint(flow, provider) -> None:
    params = flow.authorize_params(state="xyz")
    url = await provider.complete_authorization(flow.authorize_url(params))

    answer = flow.query(url)
    assert answer["state"] == "xyz"
    assert answer["iss"] == provider.issuer
    assert provider.calls[-1].endpoint == "authorize"
    assert provider.calls[-1].status == 302


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "someone-else"},
        {"client_id": None},
        {"redirect_uri": None},
        {"redirect_uri": "/relative/callback"},
        {"redirect_uri": "javascript:alert(1)"},
        {"redirect_uri": "https://app.example.test/cb#fragment"},
        {"redirect_uri": "https://app.example.test/a b"},
    ],
    ids=["unknown-client", "no-client", "no-redirect", "relative", "javascript", "fragment", "space"],
)
async def test_untrusted_client_or_redirect_uri_gets_a_400_page_never_a_redirect(
    flow, client, provider, overrides
) -> None:
    url = flow.authorize_url(flow.authorize_params(**overrides))
    response = await client.get(url)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError, match="refuses"):
        await provider.complete_authorization(url)


async def test_redirect_uri_allow_list_is_an_exact_match(make_flow) -> None:
    provider = OAuthTestProvider(redirect_uris=[REDIRECT])
    flow = make_flow(provider)
    assert (await flow.client.get(flow.authorize_url(flow.authorize_params()))).status_code == 302
    for near_miss in (REDIRECT + "/", REDIRECT.upper(), REDIRECT.replace("https", "http")):
        response = await flow.client.get(flow.authorize_url(flow.authorize_params(redirect_uri=near_miss)))
        assert response.status_code == 400, near_miss


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"response_mode": "fragment"}, "invalid_request"),
    ],
)
async def test_bad_requests_redirect_back_with_error_state_and_iss(
    flow, client, provider, overrides, error
) -> None:
    params = flow.authorize_params(state="keep-me", **overrides)
    response = await client.get(flow.authorize_url(params))

    assert response.status_code == 302
    answer = flow.query(response.headers["location"])
    assert answer["error"] == error
    assert answer["error_description"]
    assert answer["state"] == "keep-me"
    assert answer["iss"] == provider.issuer
    assert "code" not in answer


async def test_a_parameter_sent_twice_is_invalid_request(flow, client) -> None:
    url = flow.authorize_url(flow.authorize_params()) + "&scope=openid"
    answer = flow.query((await client.get(url)).headers["location"])
    assert answer["error"] == "invalid_request"


async def test_disabled_user_gets_access_denied(flow, client, provider) -> None:
    provider.disable_user("alice")
    params = flow.authorize_params(state="s")

    answer = flow.query((await client.get(flow.authorize_url(params))).headers["location"])
    assert answer == {
        "error": "access_denied",
        "error_description": answer["error_description"],
        "state": "s",
        "iss": provider.issuer,
    }
    assert (
        flow.query(await provider.complete_authorization(flow.authorize_url(params)))["error"]
        == "access_denied"
    )
    assert provider.count(endpoint="authorize", error="access_denied") == 2


async def test_login_as_chooses_whom_auto_approve_signs_in(flow, provider) -> None:
    provider.add_user("bob", email="bob@example.test", name="Bob")
    provider.login_as("bob")
    tokens = await flow.tokens()
    assert (await flow.userinfo(tokens["access_token"])).json() == {
        "sub": "bob",
        "email": "bob@example.test",
        "email_verified": True,
        "name": "Bob",
        "preferred_username": "bob",
    }
    alice = await flow.tokens(user="alice")
    assert (await flow.userinfo(alice["access_token"])).json()["sub"] == "alice"
    with pytest.raises(ValueError, match="unknown user"):
        provider.login_as("carol")


# the sign-in page (auto_approve=False)


def _form(html: str) -> tuple[str, dict[str, str], list[str]]:
    action = re.search(r'<form method="post" action="([^"]+)"', html)
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
    buttons = re.findall(
        r'<button type="submit" name="sub" value="([^"]+)">Sign in as ([^<]+)</button>', html
    )
    assert action is not None
    assert all(value == label for value, label in buttons)
    return action.group(1), hidden, [value for value, _ in buttons]


@pytest.fixture
def page_flow(make_flow):
    provider = OAuthTestProvider(auto_approve=False)
    provider.add_user("bob")
    return make_flow(provider)


async def _open_page(flow, **overrides):
    params = flow.authorize_params(**overrides)
    page = await flow.client.get(flow.authorize_url(params))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    action, hidden, users = _form(page.text)
    post_url = str(page.url.join(action))
    return params, post_url, hidden, users


async def test_sign_in_page_has_a_button_per_user_and_posts_back(page_flow) -> None:
    params, post_url, hidden, users = await _open_page(page_flow, state="st")

    assert users == ["alice", "bob"]
    assert urlsplit(post_url).path == "/authorize"
    assert set(hidden) == {"interaction"}
    response = await page_flow.client.post(post_url, data={**hidden, "sub": "bob"})

    assert response.status_code == 302
    assert page_flow.query(response.headers["location"])["state"] == "st"
    token = await page_flow.exchange(page_flow.login_from(response.headers["location"], params))
    claims = await page_flow.id_token_claims(token.json()["id_token"])
    assert claims["sub"] == "bob"
    assert claims["nonce"] == params["nonce"]


async def test_double_submitting_the_sign_in_form_gives_two_working_codes(page_flow) -> None:
    params, post_url, hidden, _ = await _open_page(page_flow)

    first = await page_flow.client.post(post_url, data={**hidden, "sub": "alice"})
    second = await page_flow.client.post(post_url, data={**hidden, "sub": "alice"})

    logins = [page_flow.login_from(r.headers["location"], params) for r in (first, second)]
    assert logins[0].code != logins[1].code
    for login in logins:
        assert (await page_flow.exchange(login)).status_code == 200


async def test_cancel_on_the_sign_in_page_is_access_denied(page_flow) -> None:
    _, post_url, hidden, _ = await _open_page(page_flow, state="st")
    response = await page_flow.client.post(post_url, data={**hidden, "deny": "1"})
    answer = page_flow.query(response.headers["location"])
    assert answer["error"] == "access_denied"
    assert answer["state"] == "st"


async def test_stale_or_forged_sign_in_posts_get_a_400_page(page_flow, clock) -> None:
    _, post_url, hidden, _ = await _open_page(page_flow)
    forged = await page_flow.client.post(post_url, data={"interaction": "forged", "sub": "alice"})
    unknown_user = await page_flow.client.post(post_url, data={**hidden, "sub": "mallory"})
    assert forged.status_code == unknown_user.status_code == 400
    assert "expired" in forged.text


async def test_sign_in_page_expires_with_the_code_ttl(make_flow, clock) -> None:
    flow = make_flow(OAuthTestProvider(auto_approve=False, clock=clock))
    _, post_url, hidden, _ = await _open_page(flow)
    clock.advance(600)
    assert (await flow.client.post(post_url, data={**hidden, "sub": "alice"})).status_code == 400


async def test_prompt_none_without_auto_approve_is_login_required(page_flow) -> None:
    params = page_flow.authorize_params(prompt="none")
    response = await page_flow.client.get(page_flow.authorize_url(params))
    assert page_flow.query(response.headers["location"])["error"] == "login_required"


async def test_complete_authorization_approves_even_without_auto_approve(page_flow) -> None:
    login = await page_flow.login(user="bob")
    assert (await page_flow.exchange(login)).status_code == 200


async def test_sign_in_page_escapes_what_it_shows(make_flow) -> None:
    provider = OAuthTestProvider(auto_approve=False)
    provider.add_user('<img src=x onerror="alert(1)">')
    flow = make_flow(provider)
    page = await flow.client.get(flow.authorize_url(flow.authorize_params(scope="<script>")))
    assert "<script>" not in page.text
    assert "<img" not in page.text
