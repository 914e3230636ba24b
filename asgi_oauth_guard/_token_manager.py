"""Tokens for code that runs outside a request: jobs, workers, cron, service-to-service calls.

``async with guard.tokens() as tm``: ``await tm.for_user(sub)`` is a fresh access token of the user's
offline grant (``_offline``: refreshed through the same engine as a session, never beside it);
``await tm.client_credentials(scopes=[...])`` one of the app's own (``_client_credentials``). Both take
``resource=`` (RFC 8707) and have an httpx ``Auth`` that retries once when the API answers 401.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping, Sequence
from types import TracebackType

import httpx

from ._client_credentials import ClientCredentials
from ._errors import ConfigurationError
from ._offline import OfflineGrants
from ._protocol import TokenSet
from ._resources import check_resource, scope_list

__all__ = ["AccessToken", "TokenAuth", "TokenManager"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccessToken:
    """An access token for a call to an API. ``resource``: the API it was asked for (RFC 8707), or ``None``
    for the provider's default audience. Its ``repr`` hides the token."""

    access_token: str = dataclasses.field(repr=False)
    token_type: str = "Bearer"
    expires_at: float | None = None
    scope: str | None = None
    resource: str | None = None

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header's value."""
        return f"{self.token_type} {self.access_token}"

    @classmethod
    def of(cls, tokens: TokenSet, resource: str | None) -> AccessToken:
        return cls(
            access_token=tokens.access_token,
            token_type=tokens.token_type,
            expires_at=tokens.expires_at,
            scope=tokens.scope,
            resource=resource,
        )


class TokenManager:
    """Fresh access tokens outside requests. Get one with ``async with guard.tokens() as tm``."""

    def __init__(
        self,
        *,
        offline: Mapping[str, OfflineGrants],
        credentials: Mapping[str, ClientCredentials],
        default: str,
    ) -> None:
        self._offline = offline
        self._credentials = credentials
        self._default = default

    async def __aenter__(self) -> TokenManager:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def _grants(self, provider: str | None) -> OfflineGrants:
        name = provider or self._default
        grants = self._offline.get(name)
        if grants is None:
            raise ConfigurationError(
                f"provider {name!r} has no offline access: give it offline=OfflineAccess() (and the guard "
                "server_keys=) so that its users' grants are kept for jobs"
            )
        return grants

    async def for_user(
        self,
        sub: str,
        *,
        provider: str | None = None,
        resource: str | None = None,
        rejected: str | None = None,
    ) -> AccessToken:
        """A fresh access token of user ``sub``'s offline grant at ``provider`` (the guard's first by
        default), for the API ``resource`` (RFC 8707) or the provider's default audience. ``rejected``: the
        API refused this access token; get another one.

        Raises :class:`ConsentRequired` when the grant is lost (its ``reason``; the user's next sign-in
        restores it), :class:`ProviderUnavailable` or :class:`StoreUnavailable` when it may work later."""
        check_resource(resource)
        if not isinstance(sub, str) or not sub:
            raise ValueError("for_user() needs the user's sub")
        tokens = await self._grants(provider).fresh(sub, resource=resource, rejected=rejected)
        return AccessToken.of(tokens, resource)

    async def consent_needed(self, sub: str, *, provider: str | None = None) -> bool:
        """Whether user ``sub`` must sign in (with consent) before ``for_user`` can work."""
        return await self._grants(provider).consent_needed(sub)

    def user_auth(self, sub: str, *, provider: str | None = None, resource: str | None = None) -> TokenAuth:
        """An httpx ``Auth`` sending ``for_user(sub, ...)``'s token, retrying once on 401."""
        check_resource(resource)

        async def get(rejected: str | None) -> AccessToken:
            return await self.for_user(sub, provider=provider, resource=resource, rejected=rejected)

        return TokenAuth(get)

    async def client_credentials(
        self,
        *,
        scopes: Sequence[str] = (),
        resource: str | None = None,
        provider: str | None = None,
        rejected: str | None = None,
    ) -> AccessToken:
        """This app's own access token (RFC 6749 4.4) for ``scopes`` and ``resource``, cached per exactly
        those (never shared with another set), requested again before it expires, once across processes.
        Raises :class:`TokenEndpointError` when the provider refuses (``invalid_scope``...)."""
        check_resource(resource)
        wanted = scope_list("scopes", scopes)
        name = provider or self._default
        credentials = self._credentials.get(name)
        if credentials is None:
            raise ConfigurationError(
                f"client credentials for provider {name!r} need the guard's server_keys= (the cached tokens "
                "are shared across processes sealed with them)"
            )
        tokens = await credentials.token(scopes=wanted, resource=resource, rejected=rejected)
        return AccessToken.of(tokens, resource)

    def client_auth(
        self, *, scopes: Sequence[str] = (), resource: str | None = None, provider: str | None = None
    ) -> TokenAuth:
        """An httpx ``Auth`` sending ``client_credentials(...)``'s token, retrying once on 401."""
        check_resource(resource)
        wanted = scope_list("scopes", scopes)

        async def get(rejected: str | None) -> AccessToken:
            return await self.client_credentials(
                scopes=wanted, resource=resource, provider=provider, rejected=rejected
            )

        return TokenAuth(get)

    async def reencrypt(self) -> int:
        """Seal every offline grant with the current server key; how many were rewritten. Run it after
        adding a key at the end of ``server_keys=``, before dropping the old one."""
        count = 0
        for grants in self._offline.values():
            count += await grants.reencrypt()
        return count


class TokenAuth(httpx.Auth):
    """Attach a token from the manager; when the API answers 401, get another once and retry once."""

    def __init__(self, get: Callable[[str | None], Awaitable[AccessToken]]) -> None:
        self._get = get

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("the token manager's Auth works with httpx.AsyncClient only")
        yield request  # pragma: no cover

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._get(None)
        request.headers["Authorization"] = token.authorization
        response = yield request
        if response.status_code != 401:
            return
        fresh = await self._get(token.access_token)
        request.headers["Authorization"] = fresh.authorization
        yield request
