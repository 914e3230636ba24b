"""Providers: one unit per provider (its registration, endpoints, HTTP client, quirks and error map).

``Provider`` describes one; the guard builds a ``ProviderClient`` for each and keeps them in ``Providers``.
Presets for the providers people use (``google(...)``, ``entra(...)``, ``github(...)``, ``gitlab(...)``,
``auth0(...)``, ``okta(...)``, ``keycloak(...)``) each return a ``Provider``: ``providers/presets``, one
module each.
"""

from ._client_auth import ClientAuthMethod
from ._metadata import Endpoints
from ._provider import Provider
from ._quirks import Quirks
from .presets import auth0, entra, github, gitlab, google, keycloak, okta

__all__ = [
    "ClientAuthMethod",
    "Endpoints",
    "Provider",
    "Quirks",
    "auth0",
    "entra",
    "github",
    "gitlab",
    "google",
    "keycloak",
    "okta",
]
