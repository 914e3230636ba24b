"""GitLab (gitlab.com or a self-managed instance) as an OpenID Connect provider."""

from __future__ import annotations

from typing import Any

from ..._errors import ConfigurationError
from .._metadata import check_url
from .._provider import Provider
from ._common import with_scopes

__all__ = ["gitlab"]


def gitlab(
    *,
    client_id: str,
    client_secret: str = "",
    base_url: str = "https://gitlab.com",
    name: str = "gitlab",
    title: str | None = "GitLab",
    scopes: tuple[str, ...] | list[str] = ("openid", "profile", "email"),
    **settings: Any,
) -> Provider:
    """GitLab sign-in, for an application registered under User settings > Applications (or a group's,
    or an instance-wide one) with the ``openid`` scope.

    ``base_url``: the instance, ``https://gitlab.example.com`` for a self-managed one (its issuer: no
    trailing slash). GitLab's access tokens last two hours and every token answer carries a refresh
    token, which each refresh replaces: the guard keeps the new one and never sends an old one again.
    """
    check_url("gitlab(base_url=...)", base_url)
    issuer = base_url.rstrip("/")
    if "?" in issuer or "#" in issuer:
        raise ConfigurationError(f"gitlab(base_url=...) must be the instance's URL, got {base_url!r}")
    return Provider(
        name=name,
        title=title,
        client_id=client_id,
        client_secret=client_secret,
        issuer=issuer,
        scopes=with_scopes(scopes),
        **settings,
    )
