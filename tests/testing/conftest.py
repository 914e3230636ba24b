from __future__ import annotations

import base64
import dataclasses
import hashlib
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

ISSUER = "https://idp.example.test"
CLIENT_ID = "guard-client"
CLIENT_SECRET = "guard-secret"
REDIRECT_URI = "https://app.example.test/auth/callback"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def provider(clock: FakeClock) -> OAuthTestProvider:
    return OAuthTestProvider(issuer=ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)


@pytest.fixture
async def client(provider: OAuthTestProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=provider.transport(), base_url=provider.issuer) as client:
        yield client


@pytest.fixture
def flow(provider: OAuthTestProvider, client: httpx.AsyncClient) -> Flow:
    return Flow(provider, client)


@pytest.fixture
async def make_flow() -> AsyncIterator[Callable[..., Flow]]:
    """Flows against providers built in the test itself (their clients are closed afterwards)."""
    clients: list[httpx.AsyncClient] = []

    def make(provider: OAuthTestProvider, **credentials: str) -> Flow:
        client = httpx.AsyncClient(transport=provider.transport(), base_url=provider.issuer)
        clients.append(client)
        return Flow(provider, client, **credentials)

    yield make
    for client in clients:
        await client.aclose()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


@dataclasses.dataclass
class Login:
    """What a client keeps between /authorize and the token request."""

    code: str
    state: str
    verifier: str
    nonce: str
    redirect_uri: str


class Flow:
    """A small, correct OAuth client: each test bends one step of it."""

    def __init__(
        self,
        provider: OAuthTestProvider,
        client: httpx.AsyncClient,
        *,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        redirect_uri: str = REDIRECT_URI,
    ) -> None:
        self.provider = provider
        self.client = client
        self.base = provider.issuer
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.endpoints = provider.metadata  # the mimicked provider's URLs, when it plays one

    def authorize_params(self, **overrides: str | None) -> dict[str, str]:
        verifier, challenge = pkce_pair()
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "openid email profile",
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "_verifier": verifier,
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    def authorize_url(self, params: dict[str, str]) -> str:
        return f"{self.endpoints['authorization_endpoint']}?" + urlencode(
            {k: v for k, v in params.items() if not k.startswith("_")}
        )

    async def login(self, user: str | None = None, **overrides: str | None) -> Login:
        params = self.authorize_params(**overrides)
        redirected = await self.provider.complete_authorization(self.authorize_url(params), user=user)
        return self.login_from(redirected, params)

    def login_from(self, redirected: str, params: dict[str, str]) -> Login:
        """What the client knows after the provider redirected back to it."""
        answer = query_of(redirected)
        assert "code" in answer, answer
        return Login(
            code=answer["code"],
            state=params.get("state", ""),
            verifier=params["_verifier"],
            nonce=params.get("nonce", ""),
            redirect_uri=params["redirect_uri"],
        )

    async def exchange(self, login: Login, **overrides: str | None) -> httpx.Response:
        form: dict[str, str | None] = {
            "grant_type": "authorization_code",
            "code": login.code,
            "redirect_uri": login.redirect_uri,
            "code_verifier": login.verifier,
        }
        form.update(overrides)
        data = {k: v for k, v in form.items() if v is not None}
        return await self.client.post(
            self.endpoints["token_endpoint"], data=data, auth=(self.client_id, self.client_secret)
        )

    async def tokens(self, user: str | None = None, **overrides: str | None) -> dict[str, Any]:
        response = await self.exchange(await self.login(user, **overrides))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def refresh(self, refresh_token: str) -> httpx.Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return await self.client.post(
            self.endpoints["token_endpoint"], data=data, auth=(self.client_id, self.client_secret)
        )

    async def userinfo(self, access_token: str) -> httpx.Response:
        return await self.client.get(
            self.endpoints["userinfo_endpoint"], headers={"Authorization": f"Bearer {access_token}"}
        )

    async def id_token_claims(self, id_token: str) -> dict[str, Any]:
        keys = KeySet.import_key_set((await self.client.get(self.endpoints["jwks_uri"])).json())
        return dict(jwt.decode(id_token, keys, algorithms=["RS256"]).claims)

    pkce = staticmethod(pkce_pair)
    query = staticmethod(query_of)

    @staticmethod
    def assert_invalid_grant(response: httpx.Response) -> None:
        assert response.status_code == 400, response.text
        assert response.json() == {"error": "invalid_grant", "error_description": "grant request is invalid"}
        assert response.headers["cache-control"] == "no-store"
