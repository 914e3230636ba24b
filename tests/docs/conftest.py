from __future__ import annotations

from collections.abc import Iterator

import pytest

from asgi_oauth_guard.testing import OAuthTestProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET
from ..served_provider import served_provider


@pytest.fixture
def anyio_backend() -> str:
    """The documented apps include Flask under asgiref, which runs on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="session")
def provider() -> Iterator[OAuthTestProvider]:
    """The embedded provider served by uvicorn on a loopback port, in a thread, for the whole session.

    The documented apps reach it as a real provider: over HTTP, with their own httpx client, through OIDC
    discovery at ``OAUTH_ISSUER``. (Named ``provider`` so the suite's log check covers what it issues.)
    """
    with served_provider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as idp:
        yield idp
