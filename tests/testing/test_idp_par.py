"""The embedded provider's Pushed Authorization Requests endpoint (RFC 9126), checked as a client sees it."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from asgi_oauth_guard.testing import OAuthTestProvider

from .conftest import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI

pytestmark = pytest.mark.anyio

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()}
REQUEST = {
    "response_type": "code",
    "client_id": CLIENT_ID,
    "redirect_uri": REDIRECT_URI,
    "scope": "openid",
    "state": "s" * 20,
    "code_challenge": "c" * 43,
    "code_challenge_method": "S256",
}


async def test_the_metadata_names_the_endpoint_and_whether_it_is_required(
    client: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    assert provider.metadata["pushed_authorization_request_endpoint"] == provider.issuer + "/par"
    assert provider.metadata["require_pushed_authorization_requests"] is False
    required = OAuthTestProvider(require_pushed_authorization_requests=True)
    assert required.metadata["require_pushed_authorization_requests"] is True


async def test_a_pushed_request_answers_201_with_a_request_uri_and_its_lifetime(
    client: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    answer = await client.post("/par", data=REQUEST, headers=BASIC)
    assert answer.status_code == 201 and answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["expires_in"] == 60 and body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    url = f"{provider.issuer}/authorize?client_id={CLIENT_ID}&request_uri={body['request_uri']}"
    back = parse_qs(urlsplit(await provider.complete_authorization(url)).query)
    assert back["state"] == [REQUEST["state"]] and back["code"]


@pytest.mark.parametrize(
    ("change", "headers", "status", "error"),
    [
        ({}, {}, 401, "invalid_client"),  # no client authentication
        ({"request_uri": "urn:x"}, BASIC, 400, "invalid_request"),  # section 2.1: never pushed
        ({"redirect_uri": "https://evil.example/cb"}, BASIC, 400, "invalid_request"),
        ({"code_challenge_method": "plain"}, BASIC, 400, "invalid_request"),
        ({"response_type": "token"}, BASIC, 400, "unsupported_response_type"),
    ],
)
async def test_a_bad_push_is_refused_with_an_oauth_error(
    change: dict[str, str],
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    provider = OAuthTestProvider(client_secret=CLIENT_SECRET, redirect_uris=[REDIRECT_URI])
    async with httpx.AsyncClient(transport=provider.transport(), base_url=provider.issuer) as http:
        answer = await http.post("/par", data={**REQUEST, **change}, headers=headers)
    assert answer.status_code == status and answer.json()["error"] == error
    assert provider.count(endpoint="par", error=error) == 1


async def test_a_request_uri_of_another_client_is_refused(
    client: httpx.AsyncClient, provider: OAuthTestProvider
) -> None:
    pushed = (await client.post("/par", data=REQUEST, headers=BASIC)).json()["request_uri"]
    with pytest.raises(ValueError, match="another client"):
        await provider.complete_authorization(
            f"{provider.issuer}/authorize?client_id=someone-else&request_uri={pushed}"
        )
