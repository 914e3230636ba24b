"""Providers: one unit per provider (its registration, endpoints, HTTP client, quirks and error map).

``Provider`` describes one; the guard builds a ``ProviderClient`` for each and keeps them in ``Providers``.
"""

from ._client_auth import ClientAuthMethod
from ._metadata import Endpoints
from ._provider import Provider
from ._quirks import Quirks

__all__ = ["ClientAuthMethod", "Endpoints", "Provider", "Quirks"]
