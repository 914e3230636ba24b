"""Client credentials: one cached token per (provider, scopes, resource), shared, never across sets."""

from __future__ import annotations

import anyio
import httpx
import pytest

from asgi_oauth_guard import ConfigurationError, MemoryStore, TokenEndpointError
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import GuardFactory
from .conftest import SERVER_KEY

pytestmark = pytest.mark.anyio


def token_requests(provider: OAuthTestProvider) -> int:
    return provider.count(endpoint="token", grant_type="client_credentials")


async def test_fifty_concurrent_callers_share_one_token_request(
    guard_factory: GuardFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory(server_keys=[SERVER_KEY])
    hold = provider.hold(endpoint="token")
    got: list[str] = []
    async with guard.tokens() as tm:

        async def call() -> None:
            got.append((await tm.client_credentials(scopes=["reports:read"])).access_token)

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(call)
            await hold.wait_entered(1)
            await anyio.wait_all_tasks_blocked()
            hold.release()
    assert token_requests(provider) == 1
    assert len(got) == 50 and len(set(got)) == 1
    assert provider.token_info(got[0])["scope"] == "reports:read"


async def test_two_scope_sets_or_resources_never_share_a_token(
    guard_factory: GuardFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory(server_keys=[SERVER_KEY])
    async with guard.tokens() as tm:
        read = await tm.client_credentials(scopes=["read"])
        write = await tm.client_credentials(scopes=["write"])
        both = await tm.client_credentials(scopes=["read", "write"])
        same_both = await tm.client_credentials(scopes=["write", "read"])  # the same set, in another order
        api = await tm.client_credentials(scopes=["read"], resource="https://api-a.example.test")
        again = await tm.client_credentials(scopes=["read"])
    tokens = {read.access_token, write.access_token, both.access_token, api.access_token}
    assert len(tokens) == 4
    assert same_both.access_token == both.access_token and again.access_token == read.access_token
    assert provider.token_info(read.access_token)["scope"] == "read"
    assert provider.token_info(write.access_token)["scope"] == "write"
    assert provider.token_info(api.access_token)["aud"] == "https://api-a.example.test"
    assert token_requests(provider) == 4


async def test_processes_share_the_cached_token_and_renew_it_before_expiry(
    guard_factory: GuardFactory, provider: OAuthTestProvider, clock: FakeClock
) -> None:
    store = MemoryStore(clock=clock)
    first = guard_factory(server_keys=[SERVER_KEY], store=store)
    second = guard_factory(server_keys=[SERVER_KEY], store=store)  # another process on the same store
    async with first.tokens() as a, second.tokens() as b:
        token = await a.client_credentials(scopes=["read"])
        assert (await b.client_credentials(scopes=["read"])).access_token == token.access_token
        assert token_requests(provider) == 1
        clock.advance(3600 - 30)  # within the leeway: renewed before it expires
        renewed = await b.client_credentials(scopes=["read"])
        assert renewed.access_token != token.access_token
        assert (await a.client_credentials(scopes=["read"])).access_token == renewed.access_token
    assert token_requests(provider) == 2


async def test_the_auth_sends_the_token_and_gets_another_once_on_401(
    guard_factory: GuardFactory, provider: OAuthTestProvider
) -> None:
    guard = guard_factory(server_keys=[SERVER_KEY])
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(401 if len(seen) == 1 else 200)

    async with guard.tokens() as tm, httpx.AsyncClient(transport=httpx.MockTransport(api)) as http:
        answer = await http.get("https://api.example.test/", auth=tm.client_auth(scopes=["read"]))
    assert answer.status_code == 200
    assert len(seen) == 2 and seen[0] != seen[1]
    assert token_requests(provider) == 2


async def test_a_refusal_is_raised_and_settings_are_checked(
    guard_factory: GuardFactory, provider: OAuthTestProvider
) -> None:
    async with guard_factory(server_keys=[SERVER_KEY]).tokens() as tm:
        with pytest.raises(TokenEndpointError) as caught:
            await tm.client_credentials(scopes=["openid"])
        assert caught.value.error == "invalid_scope"
        with pytest.raises(ConfigurationError, match="not a string"):
            await tm.client_credentials(scopes="read write")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="RFC 8707"):
            await tm.client_credentials(resource="api-a")
    async with guard_factory().tokens() as tm:
        with pytest.raises(ConfigurationError, match="server_keys="):
            await tm.client_credentials(scopes=["read"])
        with pytest.raises(ConfigurationError, match="offline=OfflineAccess"):
            await tm.for_user("alice")
