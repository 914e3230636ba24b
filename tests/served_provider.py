"""The embedded provider served by uvicorn on a loopback port, in a thread: for apps and worker processes
that must reach it as a real provider, over HTTP, with their own httpx client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from asgi_oauth_guard.testing import OAuthTestProvider

START_TIMEOUT = 10.0


@contextmanager
def served_provider(**settings: Any) -> Iterator[OAuthTestProvider]:
    """An ``OAuthTestProvider(**settings)`` whose issuer is its loopback URL, served until the block ends."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        idp = OAuthTestProvider(issuer=f"http://127.0.0.1:{sock.getsockname()[1]}", **settings)
        config = uvicorn.Config(idp, log_level="warning", access_log=False, lifespan="off", ws="none")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not server.started:
                assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start the provider"
                time.sleep(0.01)  # waiting for the server thread, bounded by the deadline
            yield idp
        finally:
            server.should_exit = True
            thread.join(10)
