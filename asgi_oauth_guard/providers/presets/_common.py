"""What the presets share: checking the few values they build URLs from."""

from __future__ import annotations

import re
from typing import Any

from ..._errors import ConfigurationError
from ..._offline_access import OfflineAccess

__all__ = ["check_host", "offline_settings", "with_scopes"]

_HOST = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:\d{1,5})?"
)


def check_host(what: str, value: str, *, example: str) -> str:
    """A bare host name (``example``, this preset's own), or a ConfigurationError saying how to write it."""
    if not isinstance(value, str) or not _HOST.fullmatch(value):
        raise ConfigurationError(
            f"{what}=) must be a host name such as {example!r} (no https://, no path), got {value!r}"
        )
    return value


def with_scopes(scopes: tuple[str, ...] | list[str], *needed: str) -> tuple[str, ...]:
    """``scopes`` with ``needed`` added at the end where missing (the scope that yields a refresh token)."""
    if isinstance(scopes, str):
        raise ConfigurationError(f"scopes= must be a list, not a string: write scopes={scopes.split()!r}")
    return (*scopes, *(s for s in needed if s not in scopes))


def offline_settings(what: str, offline: bool | OfflineAccess) -> dict[str, Any]:
    """``Provider(offline=...)`` for a preset's ``offline``: an ``OfflineAccess`` passes through (the
    user's grant kept once for all their sessions and background jobs); ``True``/``False`` set none."""
    if isinstance(offline, OfflineAccess):
        return {"offline": offline}
    if not isinstance(offline, bool):
        raise ConfigurationError(f"{what}(offline=...) must be True, False or OfflineAccess(...)")
    return {}
