"""What each refresh token was spent on, kept for a short while under a hash of that token.

A rotating refresh token presented twice makes real providers revoke the grant. The refresh lock keeps
two workers from refreshing one session at once, but a lock can be lost (a store failed over or evicted
it while a slow provider had the request), and a worker can read a session from before the last
refresh. So before presenting a refresh token a worker *claims* it here (an atomic add); the claim
becomes the sealed result once the provider answers. A worker that finds the token claimed never sends
it: it waits for the result and uses it, or answers 503 when none comes.

Results are sealed with the session's key (from the cookie), like the session itself; the key name is a
SHA-256 of the token, so the store never sees the token in the clear.
"""

from __future__ import annotations

import enum
import hashlib
import time

import anyio

from . import _json
from ._crypto import seal, unseal
from ._protocol import TokenSet
from ._session import fields_of
from ._store import Store

RESULT_PREFIX = "rt:"
_PENDING = b"pending"


class Spent(enum.Enum):
    """A refresh token another caller has claimed, and whose result is not known (yet)."""

    pending = "pending"


class RefreshResults:
    """``claim_ttl``: as long as one token request can take (the refresh lock's lease), so the claim of a
    worker that died mid-request ends with its lock, and the next holder may send the token; ``ttl``: how
    long results are kept for workers that read a session from before the refresh."""

    def __init__(self, store: Store, *, claim_ttl: float, ttl: float) -> None:
        self._store = store
        self._claim_ttl = claim_ttl
        self._ttl = ttl

    @staticmethod
    def _key(refresh_token: str) -> str:
        return RESULT_PREFIX + hashlib.sha256(refresh_token.encode()).hexdigest()

    async def claim(self, refresh_token: str) -> bool:
        """``True`` for the one caller that may present this refresh token to the provider."""
        return await self._store.add(self._key(refresh_token), _PENDING, ttl=self._claim_ttl)

    async def record(self, refresh_token: str, sid: str, key: bytes, tokens: TokenSet) -> None:
        """The provider's answer to this refresh token, for whoever finds it claimed."""
        blob = seal(key, _aad(sid, refresh_token), _json.dumps(fields_of(tokens)))
        await self._store.set(self._key(refresh_token), blob, ttl=self._ttl)

    async def unclaim(self, refresh_token: str) -> None:
        """The provider did not take the token (an outage, a refusal of this client): it may be sent again."""
        await self._store.delete(self._key(refresh_token))

    async def result(self, refresh_token: str, sid: str, key: bytes) -> TokenSet | Spent | None:
        """What this refresh token got: tokens, ``Spent.pending`` while claimed, ``None`` if unknown."""
        blob = await self._store.get(self._key(refresh_token))
        if blob is None:
            return None
        if blob == _PENDING:
            return Spent.pending
        plain = unseal(key, _aad(sid, refresh_token), blob)
        if plain is None:
            return Spent.pending  # not this session's: never present the token, never trust the blob
        try:
            return TokenSet(**_json.loads(plain))
        except (ValueError, TypeError):
            return Spent.pending

    async def wait(
        self, refresh_token: str, sid: str, key: bytes, *, within: float
    ) -> TokenSet | Spent | None:
        """The result of a claimed token, waited for up to ``within`` seconds: the tokens; ``None`` when the
        claim ended without a result (its claimant gave up or died: the token may be claimed again); or
        ``Spent.pending`` when it is still claimed at the deadline."""
        deadline = time.monotonic() + within
        pause = 0.01
        while True:
            found = await self.result(refresh_token, sid, key)
            if found is None or isinstance(found, TokenSet):
                return found
            if time.monotonic() >= deadline:
                return found
            await anyio.sleep(pause)  # the claimant is in another process
            pause = min(pause * 2, 0.25)


def _aad(sid: str, refresh_token: str) -> bytes:
    return b"refresh-result:" + sid.encode() + b":" + hashlib.sha256(refresh_token.encode()).digest()
