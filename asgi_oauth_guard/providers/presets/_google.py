"""Google (accounts.google.com): OpenID Connect, refresh tokens only offline and only at a consent."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..._errors import ConfigurationError
from ..._offline_access import OfflineAccess
from .._provider import Provider
from .._quirks import Quirks
from ._common import with_scopes

__all__ = ["GOOGLE_ISSUER", "google"]

GOOGLE_ISSUER = "https://accounts.google.com"


def google(
    *,
    client_id: str,
    client_secret: str = "",
    name: str = "google",
    title: str | None = "Google",
    scopes: tuple[str, ...] | list[str] = ("openid", "email", "profile"),
    offline: bool | OfflineAccess = True,
    authorize_params: Mapping[str, str] | None = None,
    **settings: Any,
) -> Provider:
    """Google sign-in, for a "Web application" OAuth client of the Google Cloud console.

    Google sends a refresh token only with ``access_type=offline``, and only at a consent: the user's
    first authorization of this client, or one with ``prompt=consent``. Google keeps at most 100 refresh
    tokens per user and client and silently drops the oldest past that, so ``prompt=consent`` at every
    sign-in (a new token each time) ends the sessions of users who sign in often. The preset never sends
    it at every sign-in:

    - ``offline=True`` (the default): ``access_type=offline``, a refresh token per session. Consent is
      asked only when the guard holds none for the user: the login adds ``prompt=consent`` when the
      browser's session of this provider has none, and a sign-in that came back without one is sent
      once more, with consent (``Quirks.consent_params``).
    - ``offline=OfflineAccess(...)`` (with the guard's ``server_keys``): one refresh token per user,
      kept in their offline grant and shared by all their sessions and background jobs
      (``Provider.offline``, docs/background-jobs.md); consent is asked only when that grant is lost.
      The fewest tokens minted: the way to stay far from the limit. Google asks with
      ``access_type=offline``, so the ``offline_access`` scope is left out.
    - ``offline=False``: no refresh token; sessions end with the access token (one hour).

    A refresh refused with ``invalid_rapt`` (a Google Workspace re-authentication policy) ends the
    session with the reason ``reauthentication_required``.
    """
    if not isinstance(offline, (bool, OfflineAccess)):
        raise ConfigurationError("google(offline=...) must be True, False or OfflineAccess(...)")
    grants = offline if isinstance(offline, OfflineAccess) else None
    if grants is not None and "offline_access" in grants.scopes:  # not a Google scope: it refuses it
        grants = dataclasses.replace(grants, scopes=tuple(s for s in grants.scopes if s != "offline_access"))
    params = {"access_type": "offline"} if offline else {}
    params.update(authorize_params or {})
    return Provider(
        name=name,
        title=title,
        client_id=client_id,
        client_secret=client_secret,
        issuer=GOOGLE_ISSUER,
        scopes=with_scopes(scopes),
        authorize_params=params,
        quirks=Quirks(
            error_reasons={"invalid_rapt": "reauthentication_required"},
            error_codes=r"\binvalid_rapt\b",
            consent_params={"prompt": "consent"} if offline else {},
        ),
        offline=grants,
        **settings,
    )
