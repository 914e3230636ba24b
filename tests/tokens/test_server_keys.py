"""The server key ring: the last key encrypts, every key decrypts, a missing key is named."""

from __future__ import annotations

import pytest

from asgi_oauth_guard import ConfigurationError, ServerKeyError
from asgi_oauth_guard._server_keys import ServerKeys

OLD = "old-server-key-0123456789abcdef0123456789"
NEW = "new-server-key-0123456789abcdef0123456789"
OTHER = "other-server-key-0123456789abcdef01234567"


def test_the_last_key_encrypts_and_every_key_decrypts() -> None:
    old_blob = ServerKeys([OLD]).seal(b"og:1", b"grant")
    ring = ServerKeys([OLD, NEW])
    assert ring.unseal(b"og:1", old_blob, what="a grant") == (b"grant", False)  # readable, not current
    new_blob = ring.seal(b"og:1", b"grant")
    assert ring.unseal(b"og:1", new_blob, what="a grant") == (b"grant", True)
    assert ServerKeys([NEW]).unseal(b"og:1", new_blob, what="a grant") == (b"grant", True)


def test_a_record_sealed_with_a_key_not_in_the_ring_names_the_missing_key() -> None:
    blob = ServerKeys([OTHER]).seal(b"og:1", b"grant")
    ring = ServerKeys([OLD, NEW])
    with pytest.raises(ServerKeyError) as caught:
        ring.unseal(b"og:1", blob, what="an offline grant")
    message = str(caught.value)
    assert ServerKeys([OTHER]).current_id in message
    assert ring.current_id in message
    assert OTHER not in message and NEW not in message  # ids, never keys
    assert "server_keys=" in message


def test_a_record_moved_to_another_key_or_altered_does_not_open() -> None:
    ring = ServerKeys([NEW])
    blob = ring.seal(b"og:1", b"grant")
    with pytest.raises(ServerKeyError, match="altered"):
        ring.unseal(b"og:2", blob, what="a grant")
    with pytest.raises(ServerKeyError, match="altered"):
        ring.unseal(b"og:1", blob[:-1] + bytes([blob[-1] ^ 1]), what="a grant")
    with pytest.raises(ServerKeyError, match="not a record"):
        ring.unseal(b"og:1", b"plain text", what="a grant")


@pytest.mark.parametrize("keys", [[], "a-single-string-key-that-is-long-enough", ["short"], [NEW, NEW]])
def test_bad_key_lists_are_refused_with_the_fix(keys: object) -> None:
    with pytest.raises(ConfigurationError, match="server_keys="):
        ServerKeys(keys)  # type: ignore[arg-type]


def test_the_cookies_key_is_refused_as_a_server_key() -> None:
    from starlette.applications import Starlette

    from asgi_oauth_guard import OAuthGuard

    cookie_key = "c" * 40
    with pytest.raises(ConfigurationError, match="must not repeat secret_key="):
        OAuthGuard(
            Starlette(),
            issuer="https://idp.example.test",
            client_id="c",
            client_secret="s",
            secret_key=[cookie_key],
            server_keys=[NEW, cookie_key],
        )
