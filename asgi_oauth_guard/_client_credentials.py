"""Client credentials (RFC 6749 4.4): this app's own tokens for service calls, cached and shared.

One cached token per (provider, client, scopes, resource). The cache key is a hash of all of them, and the
sealed record names them again and is checked on every read, so a token is never handed to a caller that
asked for other scopes or another API (Duende's CVE-2025-26620 served one scope set's cached token to
callers of another). A token is requested again ``leeway`` seconds before it expires: one request per
key at a time, in a process (single flight) and across processes (the store lock that refreshes use);
whoever waited takes the token the winner stored. Records are sealed with the server key ring.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._errors import ProviderUnavailable
from ._protocol import TokenSet, refresh_due
from ._resources import honoured
from ._server_keys import ServerKeys
from ._single_flight import SingleFlight
from ._store import Store

if TYPE_CHECKING:
    from ._refresh import Refresher
    from .providers._client import ProviderClient

__all__ = ["ClientCredentials"]

logger = logging.getLogger("asgi_oauth_guard")

CC_PREFIX = "cc:"
# Tokens without expires_in are kept this long, at most.
DEFAULT_TTL = 3600.0
MAX_MEMORY = 1000


class ClientCredentials:
    def __init__(
        self,
        *,
        store: Store,
        keys: ServerKeys,
        client: ProviderClient,
        refresher: Refresher,
        provider: str,
        clock: Callable[[], float],
        leeway: float,
    ) -> None:
        self._store = store
        self._keys = keys
        self._client = client
        self._refresher = refresher
        self.provider = provider
        self._clock = clock
        self._leeway = leeway
        self._memory: dict[str, TokenSet] = {}
        self._flights: SingleFlight[TokenSet] = SingleFlight()

    def _params(self, scopes: tuple[str, ...], resource: str | None) -> tuple[str, bytes]:
        params = json.dumps(
            [self.provider, self._client.client_id, sorted(set(scopes)), resource], separators=(",", ":")
        ).encode()
        return CC_PREFIX + hashlib.sha256(params).hexdigest()[:40], params

    def _usable(self, tokens: TokenSet | None, rejected: str | None) -> bool:
        if tokens is None or tokens.access_token == rejected:
            return False
        leeway = self._leeway
        lifetime = tokens.lifetime()
        if lifetime is not None:
            leeway = min(leeway, lifetime / 2)  # a 60 s token is not requested again at once
        return not refresh_due(tokens, self._clock(), leeway)

    async def token(
        self, *, scopes: tuple[str, ...], resource: str | None, rejected: str | None = None
    ) -> TokenSet:
        name, params = self._params(scopes, resource)
        cached = self._memory.get(name)
        if self._usable(cached, rejected):
            assert cached is not None
            return cached
        return await self._flights.run(name, lambda: self._get(name, params, scopes, resource, rejected))

    async def _read(self, name: str, params: bytes) -> TokenSet | None:
        blob = await self._store.get(name)
        if blob is None:
            return None
        aad = name.encode() + b"\x00" + params
        plain, _ = self._keys.unseal(aad, blob, what="a client-credentials token")
        record = json.loads(plain)
        if record.get("params") != params.decode():
            return None  # never another parameter set's token, even if the key collided
        return TokenSet(**record["tokens"])

    async def _get(
        self, name: str, params: bytes, scopes: tuple[str, ...], resource: str | None, rejected: str | None
    ) -> TokenSet:
        stored = await self._read(name, params)
        if self._usable(stored, rejected):
            assert stored is not None
            return self._remember(name, stored)
        refresher = self._refresher
        owner = os.urandom(12).hex()
        found: list[TokenSet] = []

        async def done_elsewhere() -> bool:
            current = await self._read(name, params)
            if self._usable(current, rejected):
                assert current is not None
                found.append(current)
                return True
            return False

        try:
            if not await refresher.take_lock(name, owner, done_elsewhere, within=refresher.wait):
                return self._remember(name, found[0])
        except TimeoutError:
            raise ProviderUnavailable("another worker holds this client-credentials token's lock") from None
        try:
            current = await self._read(name, params)
            if self._usable(current, rejected):
                assert current is not None
                return self._remember(name, current)
            with anyio.CancelScope(shield=True):
                tokens = await self._client.client_credentials(scopes=scopes, resource=resource)
                tokens = dataclasses.replace(tokens, refresh_token=None, id_token=None)
                honoured(self.provider, resource, tokens.access_token)
                now = self._clock()
                ttl = DEFAULT_TTL if tokens.expires_at is None else tokens.expires_at - now
                if ttl > 1:
                    record = json.dumps(
                        {"params": params.decode(), "tokens": dataclasses.asdict(tokens)}
                    ).encode()
                    blob = self._keys.seal(name.encode() + b"\x00" + params, record)
                    await self._store.set(name, blob, ttl=ttl)
            return self._remember(name, tokens)
        finally:
            await refresher.release(name, owner)

    def _remember(self, name: str, tokens: TokenSet) -> TokenSet:
        if name not in self._memory and len(self._memory) >= MAX_MEMORY:
            self._memory.pop(next(iter(self._memory)))
        self._memory[name] = tokens
        return tokens
