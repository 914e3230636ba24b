from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from asgi_oauth_guard.testing import OAuthTestProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET


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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
        idp = OAuthTestProvider(issuer=issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        config = uvicorn.Config(idp, log_level="warning", access_log=False, lifespan="off", ws="none")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started:
                assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start the provider"
                time.sleep(0.01)  # waiting for the server thread, bounded by the deadline
            yield idp
        finally:
            server.should_exit = True
            thread.join(10)
