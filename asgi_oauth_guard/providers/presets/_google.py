"""Google (accounts.google.com): OpenID Connect, refresh tokens only offline and only at a consent."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

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

    ``offline`` (the default) asks for a refresh token with ``access_type=offline``. Google sends one
    only at a consent: the user's first authorization of this client, or one with ``prompt=consent``.
    Sending ``prompt=consent`` at every sign-in shows the consent screen every time and mints a new
    refresh token each time; Google keeps at most 100 per user and client and silently drops the
    oldest, so users who sign in often lose their older sessions. The preset asks for consent only when
    the guard holds no refresh token for the signing-in user (``Quirks.consent_params``: the login flow
    adds ``prompt=consent`` when the browser's session has none, and a sign-in that came back without
    one is asked once more, with consent).

    ``offline=OfflineAccess(...)``: that, and also the users' grants kept for background jobs
    (``Provider.offline``, docs/background-jobs.md); Google asks with ``access_type=offline``, so the
    ``offline_access`` scope is left out.

    A refresh refused with ``invalid_rapt`` (a Google Workspace re-authentication policy) ends the
    session with the reason ``reauthentication_required``.
    """
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
