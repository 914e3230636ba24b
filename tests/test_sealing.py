"""Encryption at rest (``_crypto.seal`` / ``unseal``), and ``unseal_view``: the session path's decryption into
a buffer each thread keeps, which must give what ``unseal`` gives and never another thread's plaintext."""

from __future__ import annotations

import os
import threading

import pytest

from asgi_oauth_guard import _crypto
from asgi_oauth_guard._crypto import seal, unseal, unseal_view
from asgi_oauth_guard._session import Session

KEY = os.urandom(32)


@pytest.mark.parametrize("size", [0, 1, 1700, 4096, 5000, 70 * 1024])
def test_the_view_holds_what_unseal_gives(size: int) -> None:
    plain = os.urandom(size)
    blob = seal(KEY, b"sid", plain)
    assert unseal(KEY, b"sid", blob) == plain
    view = unseal_view(KEY, b"sid", blob)
    assert view is not None and bytes(view) == plain


@pytest.mark.parametrize("seal_with", ["other key", "other aad", "flipped", "truncated", "version"])
def test_what_unseal_refuses_the_view_refuses(seal_with: str) -> None:
    blob = bytearray(seal(KEY, b"sid", b"{}" * 100))
    key, aad = KEY, b"sid"
    if seal_with == "other key":
        key = os.urandom(32)
    elif seal_with == "other aad":
        aad = b"other"
    elif seal_with == "flipped":
        blob[-20] ^= 1
    elif seal_with == "truncated":
        blob = blob[:28]
    else:
        blob[0] = 2
    assert unseal(key, aad, bytes(blob)) is None
    assert unseal_view(key, aad, bytes(blob)) is None


def test_a_session_read_through_the_view_keeps_nothing_of_the_buffer() -> None:
    first = Session(sid="a", tokens=None, claims={"sub": "alice", "name": "Alice"}, created_at=1.0)
    second = Session(sid="b", tokens=None, claims={"sub": "bob", "name": "Bobby"}, created_at=2.0)
    view = unseal_view(KEY, b"a", seal(KEY, b"a", first.dumps()))
    assert view is not None
    loaded = Session.loads(view)
    unseal_view(KEY, b"b", seal(KEY, b"b", second.dumps()))  # the same buffer, overwritten
    if _crypto._DECRYPT_INTO:  # (cryptography 45 and later; before, each call returns bytes of its own)
        assert bytes(view) != first.dumps()  # the buffer is reused: what the contract says
    assert loaded == first


def test_threads_never_read_each_others_plaintext() -> None:
    barrier = threading.Barrier(2, timeout=10)
    seen: dict[str, bytes] = {}

    def decrypt(name: str) -> None:
        plain = name.encode() * 500
        view = unseal_view(KEY, b"sid", seal(KEY, b"sid", plain))
        barrier.wait()  # both have decrypted into their buffers
        barrier.wait()  # and neither has changed since
        assert view is not None
        seen[name] = bytes(view)

    threads = [threading.Thread(target=decrypt, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"one": b"one" * 500, "two": b"two" * 500}


def test_without_decrypt_into_the_view_is_plain_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_crypto, "_BUFFER_LIMIT", -1)  # what cryptography before 45 gets: no decrypt_into
    blob = seal(KEY, b"sid", b"plain")
    plain = unseal_view(KEY, b"sid", blob)
    assert plain == b"plain" and type(plain) is bytes


def test_the_view_parses_without_orjson_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from asgi_oauth_guard import _json

    monkeypatch.setattr(_json, "_orjson", None)  # installed without the speedups extra
    session = Session(sid="a", tokens=None, claims={"sub": "alice"}, created_at=1.0)
    view = unseal_view(KEY, b"a", seal(KEY, b"a", session.dumps()))
    assert isinstance(view, memoryview if _crypto._DECRYPT_INTO else bytes)
    assert Session.loads(view) == session
