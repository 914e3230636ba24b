"""Presets: a function per provider people use, returning a :class:`Provider` with its endpoints, the
scopes that yield a refresh token and its quirks (docs/providers.md names the documented facts each one
is built on).

    from asgi_oauth_guard import OAuthGuard, providers

    app = OAuthGuard(
        app,
        providers=[
            providers.google(client_id=..., client_secret=...),
            providers.entra(tenant="organizations", client_id=..., client_secret=...),
        ],
        secret_key=...,
    )

Every preset takes the :class:`Provider` settings it does not set itself as keyword arguments
(``client_auth=``, ``fetch_userinfo=``, ...), and ``name=``/``title=`` to tell two of a kind apart.
"""

from ._auth0 import auth0
from ._entra import entra
from ._github import github
from ._gitlab import gitlab
from ._google import google
from ._keycloak import keycloak
from ._okta import okta

__all__ = ["auth0", "entra", "github", "gitlab", "google", "keycloak", "okta"]
