"""The server-held key ring: encryption at rest for records that no cookie can key.

A session is sealed with a key that lives only in its cookie; an offline grant or a client-credentials
token is used by worker processes with no cookie at all, so they are sealed with keys the servers hold
(``OAuthGuard(server_keys=[...])``). The last key encrypts; every key decrypts (rotation: add a new key at
the end, re-encrypt, then drop the old one). Each blob names the key that sealed it by a short id (a hash
of the key, never the key), so a record sealed with a key this process lacks fails with an error that says
which key is missing, rather than reading as an absent record.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._errors import ConfigurationError

__all__ = ["ServerKeyError", "ServerKeys"]

_VERSION = b"\x02"
_KID_BYTES = 4
_NONCE_BYTES = 12
MIN_KEY_LENGTH = 32
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class ServerKeyError(ConfigurationError):
    """A stored record cannot be opened with this process's ``server_keys``: it was sealed with a key that
    is not in the list (a key dropped too early, a worker deployed with another list), or it was altered."""


class ServerKeys:
    """``keys``: 32 or more random characters each; the last one encrypts, all of them decrypt."""

    def __init__(self, keys: Sequence[str]) -> None:
        if isinstance(keys, (str, bytes)):
            # The key itself is never echoed: it is a secret.
            raise ConfigurationError(
                "server_keys= must be a list of keys, not one string: write server_keys=[key]"
            )
        if not keys:
            raise ConfigurationError(
                f"server_keys= must be a list of one key or more: generate one with {GENERATE}"
            )
        derived: list[tuple[bytes, AESGCM]] = []
        if any(not isinstance(key, str) for key in keys):
            raise ConfigurationError("server_keys= must be a list of strings")
        for key in keys:
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigurationError(
                    f"every server_keys= entry must be at least {MIN_KEY_LENGTH} characters: generate one "
                    f"with {GENERATE}"
                )
            material = _material(key)
            kid = hashlib.sha256(b"kid\x00" + material).digest()[:_KID_BYTES]
            derived.append((kid, AESGCM(material)))
        kids = [kid for kid, _ in derived]
        if len(set(kids)) != len(kids):
            raise ConfigurationError("server_keys= lists the same key twice")
        self._current_kid, self._current = derived[-1]
        self._current_material = _material(keys[-1])
        self._by_kid = dict(derived)

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose``, from the current key."""
        return hmac.new(self._current_material, purpose.encode(), hashlib.sha256).digest()

    @property
    def current_id(self) -> str:
        """The id of the key that encrypts (hex), as error messages name keys."""
        return self._current_kid.hex()

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + self._current_kid + nonce + self._current.encrypt(nonce, plaintext, aad)

    def unseal(self, aad: bytes, blob: bytes, *, what: str) -> tuple[bytes, bool]:
        """The plaintext, and whether it was sealed with the current key (``False``: re-encrypt it).

        Raises :class:`ServerKeyError` naming the missing key's id when no key in the ring sealed it, or
        when it does not open (altered, or moved to another record)."""
        header = 1 + _KID_BYTES + _NONCE_BYTES
        if len(blob) < header + 16 or blob[:1] != _VERSION:
            raise ServerKeyError(f"{what} in the store is not a record sealed with server_keys")
        kid = blob[1 : 1 + _KID_BYTES]
        aead = self._by_kid.get(kid)
        if aead is None:
            raise ServerKeyError(
                f"{what} was sealed with server key {kid.hex()}, which is not in this process's "
                f"server_keys= (the current one is {self.current_id}): give every process the same list, "
                "and keep an old key in it until the re-encryption (TokenManager.reencrypt()) has run"
            )
        try:
            plain = aead.decrypt(blob[1 + _KID_BYTES : header], blob[header:], aad)
        except InvalidTag:
            raise ServerKeyError(
                f"{what} does not open with server key {kid.hex()}: the record was altered"
            ) from None
        return plain, kid == self._current_kid


def _material(key: str) -> bytes:
    return hashlib.sha256(b"asgi-oauth-guard.server-key\x00" + key.encode()).digest()
