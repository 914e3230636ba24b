"""Reading who signed in from a provider's userinfo (or user API) answer: pure functions, no I/O.

For a provider without ID tokens the userinfo answer is the identity, so what comes back is held to
what the guard keeps: a JSON object, a stable ``sub`` (a non-empty string), and a bounded size.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from .._errors import IDTokenError, ProviderUnavailable

logger = logging.getLogger("asgi_oauth_guard")

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_CLAIMS_BYTES",
    "MAX_SUB_LENGTH",
    "bounded_claims",
    "primary_verified_email",
    "read_answer",
    "userinfo_claims",
]

# A userinfo answer larger than this is not a user's profile: refused before it is parsed.
MAX_ANSWER_BYTES = 256 * 1024
# What a session keeps of the userinfo claims (JSON bytes): sessions stay small in the store, whatever
# a provider's profile holds (GitHub's /user has ~30 fields; a bio can be long).
MAX_CLAIMS_BYTES = 8 * 1024
# OIDC Core 2: sub is at most 255 ASCII characters.
MAX_SUB_LENGTH = 255


def read_answer(status: int, headers: Mapping[str, str], content: bytes, what: str) -> Any:
    """The JSON of a userinfo-like answer, or the error that says what it was.

    ``ProviderUnavailable`` (the sign-in may work in a moment: the user is told to try again): 5xx, 429,
    a 403 that says it is a rate limit (GitHub: ``x-ratelimit-remaining: 0``), an answer that is not
    JSON (an HTML error page). ``IDTokenError`` (this sign-in is refused): any other status (the
    provider refused the new access token), an oversized answer.
    """
    if status >= 500 or status == 429:
        raise ProviderUnavailable(f"{what} answered {status}")
    if status == 403 and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers):
        raise ProviderUnavailable(f"{what} answered 403: rate limited")
    if status != 200:
        raise IDTokenError(f"{what} refused the new access token ({status})")
    if len(content) > MAX_ANSWER_BYTES:
        raise IDTokenError(f"{what} answered more than {MAX_ANSWER_BYTES} bytes")
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ProviderUnavailable(f"{what} did not answer JSON") from None


def userinfo_claims(
    data: Any, mapper: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None
) -> dict[str, Any]:
    """The identity's claims from a userinfo answer, through the provider's ``userinfo_claims=``.

    The ``sub`` must be a non-empty string of at most 255 printable characters; an integer (GitHub's
    numeric ``id``) is written as its decimal string, anything else refuses the sign-in. The mapper is
    the app's code: whatever it raises refuses the sign-in (``IDTokenError``), never a 500.
    """
    if not isinstance(data, dict):
        raise IDTokenError("the userinfo answer is not a JSON object")
    claims: Any = data
    if mapper is not None:
        try:
            claims = mapper(data)
        except Exception as exc:  # the app's function: its failure refuses the sign-in, never a 500
            raise IDTokenError(
                f"userinfo_claims= failed on the userinfo answer: {type(exc).__name__}"
            ) from None
        if not isinstance(claims, Mapping):
            raise IDTokenError("userinfo_claims= must return a mapping of claims")
    claims = {k: v for k, v in claims.items() if isinstance(k, str)}
    sub = claims.get("sub")
    if isinstance(sub, int) and not isinstance(sub, bool):
        sub = str(sub)
    if (
        not isinstance(sub, str)
        or not sub
        or len(sub) > MAX_SUB_LENGTH
        or not sub.isprintable()
        or sub != sub.strip()
    ):
        raise IDTokenError(
            "the userinfo answer has no sub (a non-empty string of at most 255 characters) to name the "
            "user by" + (": userinfo_claims= must return one" if mapper is not None else "")
        )
    claims["sub"] = sub
    return bounded_claims(claims)


def bounded_claims(claims: Mapping[str, Any], limit: int = MAX_CLAIMS_BYTES) -> dict[str, Any]:
    """``claims`` (``sub`` first) keeping each one while their JSON fits ``limit`` bytes; the names of the
    ones left out are logged (never their values). Values that are not JSON are left out too."""
    kept: dict[str, Any] = {}
    size = 2
    dropped: list[str] = []
    for name in sorted(claims, key=lambda n: n != "sub"):
        try:
            cost = len(json.dumps({name: claims[name]}).encode()) - 1
        except (TypeError, ValueError, RecursionError):
            dropped.append(name)
            continue
        if size + cost > limit and name != "sub":
            dropped.append(name)
            continue
        kept[name] = claims[name]
        size += cost
    if dropped:
        logger.warning(
            "userinfo claims not kept in the session (over %d bytes, or not JSON): %s",
            limit,
            ", ".join(n[:40] for n in dropped[:20]),
        )
    return kept


def primary_verified_email(data: Any) -> str | None:
    """The primary, verified address of a list like GitHub's ``/user/emails``
    (``[{"email": ..., "primary": true, "verified": true, ...}]``), or ``None``."""
    if not isinstance(data, list):
        return None
    for entry in data:
        if (
            isinstance(entry, dict)
            and entry.get("primary") is True
            and entry.get("verified") is True
            and isinstance(entry.get("email"), str)
            and 0 < len(entry["email"]) <= 320
        ):
            return str(entry["email"])
    return None
