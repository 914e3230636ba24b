"""Signed cookies and encryption at rest.

The session cookie carries ``sid`` (the store key) and ``key`` (the session's own AES-GCM key),
signed with the app's secret. The store holds only ciphertext, so a dump of the store reveals no
token: the key lives only in the user's cookie. Each cookie is verified here with one HMAC per secret key;
the hot path does that only for a cookie it has not served lately (``_published``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import os
import threading
from collections.abc import Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from itsdangerous import BadSignature, Signer


class _Hash(Protocol):
    def copy(self) -> _Hash: ...
    def update(self, msg: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


SID_BYTES = 16
KEY_BYTES = 32
NONCE_BYTES = 12
MAX_COOKIE_LENGTH = 512
_VERSION = b"\x01"
# base64url through binascii directly (base64's functions add a few Python calls each): the cold path's.
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


_SHA256_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))  # translation tables: each byte of the key XOR the pad
_OPAD = bytes(x ^ 0x5C for x in range(256))


def hmac_sha256_states(key: bytes) -> tuple[_Hash, _Hash]:
    """HMAC-SHA256 keyed with ``key`` as its two SHA-256 states (RFC 2104): the inner one has absorbed the
    key XOR ipad, the outer one the key XOR opad. A MAC of ``m`` is ``outer + H(inner + m)``, each state
    copied per message. Two copies of a hash state cost half of one of OpenSSL's HMAC object (its copy
    duplicates three digest contexts): 1.2 µs less per cookie verified on the cold path, the same bytes."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, aad: bytes, blob: bytes) -> bytes | None:
    """The plaintext, or ``None`` when the blob was not sealed with this key for this ``aad``."""
    if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != _VERSION:
        return None
    # Read through a view: slicing would copy the ciphertext first (a record read from the store is not in
    # the CPU's caches: one read of it, not two, and no write of a copy). Sessions come here only when
    # ``unseal_view`` cannot use its buffer.
    view = memoryview(blob)
    try:
        return AESGCM(key).decrypt(view[1 : 1 + NONCE_BYTES], view[1 + NONCE_BYTES :], aad)
    except InvalidTag:
        return None


# Sessions are decrypted into a buffer each thread keeps (``unseal_view``): a new 1.7 KB bytes object for
# each comes from memory no CPU cache holds (glibc's, above its per-thread cache's 1 KB), and filling it
# cost 26 cache misses of a session not served lately; the buffer is written on every such request.
_DECRYPT_INTO = hasattr(AESGCM, "decrypt_into")  # cryptography 45 and later
# A larger record is decrypted into bytes of its own, not kept in a buffer (all, without decrypt_into).
_BUFFER_LIMIT = 64 * 1024 if _DECRYPT_INTO else -1
_SEALED_OVERHEAD = 1 + NONCE_BYTES + 16  # the version byte, the nonce and the tag
_CIPHERTEXT_AT = 1 + NONCE_BYTES
_buffers = threading.local()


def unseal_view(key: bytes, aad: bytes, blob: bytes) -> memoryview | bytes | None:
    """:func:`unseal`, into this thread's buffer where it can: the view is valid only until this thread's
    next call, so the caller parses it at once and keeps nothing of it (what it parses is copied)."""
    size = len(blob) - _SEALED_OVERHEAD
    if size < 0 or blob[:1] != _VERSION:
        return None
    if size > _BUFFER_LIMIT:
        return unseal(key, aad, blob)
    buffer: bytearray | None = getattr(_buffers, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = _buffers.buffer = bytearray(max(size, 4096))
    out = memoryview(buffer)[:size]
    view = memoryview(blob)
    try:
        AESGCM(key).decrypt_into(view[1:_CIPHERTEXT_AT], view[_CIPHERTEXT_AT:], aad, out)
    except InvalidTag:
        return None
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class Binding:
    """The browser ids a binding cookie carries: the current one, and the one it replaced (for a while)."""

    current: str
    previous: str | None = None
    previous_until: float = 0

    def ids(self, now: float) -> tuple[str, ...]:
        """The ids whose records this browser may open now, the current one first."""
        if self.previous is not None and now < self.previous_until:
            return (self.current, self.previous)
        return (self.current,)


class Keyring:
    """Everything derived from the app's secret key(s). The last key signs; all keys verify (rotation)."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        self._newest = secret_keys[-1].encode()
        self._all = [k.encode() for k in reversed(secret_keys)]
        self._session = Signer(
            list(secret_keys), salt="asgi-oauth-guard.session", digest_method=hashlib.sha256
        )
        self._binding = Signer(
            list(secret_keys), salt="asgi-oauth-guard.binding", digest_method=hashlib.sha256
        )
        # itsdangerous derives the HMAC key from the secret on every unsign; derived once here (with its
        # own derivation), session cookies are verified with one HMAC per key.
        # Each key's HMAC states are keyed once and copied per cookie: hmac.digest() would set up the digest
        # and the key again on each call (2 µs of the cold path).
        self._session_macs = tuple(
            hmac_sha256_states(self._session.derive_key(k)) for k in reversed(self._session.secret_keys)
        )

    def new_session_cookie(self) -> tuple[str, bytes, str]:
        """A fresh ``(sid, key, cookie_value)``."""
        raw = os.urandom(SID_BYTES + KEY_BYTES)
        return b64e(raw[:SID_BYTES]), raw[SID_BYTES:], self._session.sign(b64e(raw)).decode("ascii")

    def open_session_cookie(self, value: str | bytes) -> tuple[str, bytes] | None:
        """``(sid, key)`` from a cookie value, or ``None`` if it is not one we signed: ``payload.signature``
        (itsdangerous's format) whose signature one of the secret keys made. Only the canonical signature is
        accepted: the one the signer writes, not other base64 spellings of it. One function, no helper:
        the path of a cookie not served lately runs it once per request, cold. The hot path passes the
        bytes the server read (a byte outside ASCII cannot be in a signature we made: it fails the check)."""
        if len(value) > MAX_COOKIE_LENGTH:
            return None
        try:
            raw_value = value.encode("ascii") if isinstance(value, str) else value
            payload, dot, signature = raw_value.rpartition(b".")
            if not dot:
                return None
            for inner, outer in self._session_macs:
                digest = inner.copy()
                digest.update(payload)
                mac = outer.copy()
                mac.update(digest.digest())
                expected = (
                    binascii.b2a_base64(mac.digest(), newline=False).translate(_TO_URLSAFE).rstrip(b"=")
                )
                if hmac.compare_digest(expected, signature):
                    break
            else:
                return None
            # What we sign is 48 bytes in 64 characters, no padding: anything else fails here or below.
            raw = binascii.a2b_base64(payload.translate(_FROM_URLSAFE))
        except (UnicodeError, ValueError, binascii.Error):
            return None
        if len(raw) != SID_BYTES + KEY_BYTES:
            return None
        sid = binascii.b2a_base64(raw[:SID_BYTES], newline=False).translate(_TO_URLSAFE).rstrip(b"=")
        return sid.decode("ascii"), raw[SID_BYTES:]

    def new_binding_cookie(
        self, *, previous: str | None = None, previous_until: float = 0
    ) -> tuple[str, str]:
        """A fresh browser binding ``(browser_id, cookie_value)``.

        ``previous``: the id this one replaces (renewed after a sign-in), still accepted until
        ``previous_until`` (epoch seconds) so that sign-ins other tabs started before can finish.
        """
        browser_id = b64e(os.urandom(32))
        return browser_id, self.binding_cookie(browser_id, previous=previous, previous_until=previous_until)

    def binding_cookie(
        self, browser_id: str, *, previous: str | None = None, previous_until: float = 0
    ) -> str:
        payload = browser_id if previous is None else f"{browser_id}~{previous}~{int(previous_until)}"
        return self._binding.sign(payload).decode("ascii")

    def open_binding_cookie(self, value: str) -> Binding | None:
        if len(value) > MAX_COOKIE_LENGTH:
            return None
        try:
            payload = self._binding.unsign(value.encode("ascii")).decode("ascii")
        except (BadSignature, UnicodeError, ValueError):
            return None
        current, _, rest = payload.partition("~")
        previous, _, until = rest.partition("~")
        if not previous:
            return Binding(current=current)
        return Binding(
            current=current, previous=previous, previous_until=int(until) if until.isdigit() else 0
        )

    def tags(self, purpose: str, *parts: str) -> tuple[str, ...]:
        """Short HMAC tags of ``parts`` for store keys that must not name what they index (a user), one per
        secret key, the newest first: written with the first, looked up with all (key rotation)."""
        message = "\x00".join((purpose, *parts)).encode()
        return tuple(b64e(hmac.new(key, message, hashlib.sha256).digest()[:18]) for key in self._all)

    def derive(self, purpose: str, browser_id: str) -> bytes:
        """A 32-byte key or tag for ``purpose``, bound to a browser: transactions are sealed with it,
        so only the browser that started a login can read or complete it."""
        return hmac.new(self._newest, f"{purpose}\x00{browser_id}".encode(), hashlib.sha256).digest()
