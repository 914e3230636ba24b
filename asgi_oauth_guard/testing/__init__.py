"""A spec-faithful, fault-injecting OAuth 2.0 / OpenID Connect provider for tests and the demo.

    from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

    clock = FakeClock()
    provider = OAuthTestProvider(issuer="https://idp.example.test", clock=clock)
    client = httpx.AsyncClient(transport=provider.transport())

See docs/testing.md.
"""

from ._clock import FakeClock
from ._conformance import CASES as CONFORMANCE_CASES
from ._conformance import Conformance
from ._faults import Hold
from ._mimic import CAUSES as MIMIC_CAUSES
from ._mimic import Mimic
from ._provider import OAuthTestProvider
from ._records import RecordedCall
from ._routes import providers_transport
from ._signed_in import find_guard, signed_in

__all__ = [
    "CONFORMANCE_CASES",
    "Conformance",
    "FakeClock",
    "Hold",
    "MIMIC_CAUSES",
    "Mimic",
    "OAuthTestProvider",
    "RecordedCall",
    "find_guard",
    "providers_transport",
    "signed_in",
]
