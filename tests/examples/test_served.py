"""The Flask example served for real: uvicorn in a subprocess, on a loopback port, driven over HTTP."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def served(
    example: str,
    *uvicorn_args: str,
    front: Callable[[int], contextlib.AbstractContextManager[str]] | None = None,
    prefix: str = "",
    **env: str,
) -> Iterator[str]:
    """``uvicorn examples.<example>_app:app`` on a socket this test opened (so no other process can take
    the port); yields its base URL (``PUBLIC_URL``). Its output must have no traceback when it stops.

    ``front``: a proxy in front, given uvicorn's port, yielding its own origin; ``prefix``: the path the
    app is reached under there (``/app`` with ``--root-path /app``)."""
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.socket())
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        origin = stack.enter_context(front(port)) if front else f"http://127.0.0.1:{port}"
        base = origin + prefix
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OAUTH_", "GUARD_", "DEMO_"))},
            "PUBLIC_URL": base,
            "DEMO_AUTO_APPROVE": "1",
            **env,
        }
        command = [sys.executable, "-m", "uvicorn", f"examples.{example}_app:app", "--fd", str(sock.fileno())]
        server = subprocess.Popen(
            [*command, "--log-level", "warning", "--lifespan", "on", *uvicorn_args],
            cwd=ROOT,
            env=environment,
            pass_fds=[sock.fileno()],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        sock.close()
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/public", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stdout.read().decode() if server.stdout else ""
                    pytest.fail(f"uvicorn did not start serving the {example} example:\n{output}")
                time.sleep(0.05)  # polling readiness, bounded by the deadline
            yield base
        finally:
            server.terminate()
            output, _ = server.communicate(timeout=20)
    assert "Traceback" not in output.decode(), output.decode()


@pytest.fixture
def served_flask_example() -> Iterator[str]:
    with served("flask") as base:
        yield base


def test_a_flask_view_under_uvicorn_sees_the_guards_token(served_flask_example: str) -> None:
    base = served_flask_example
    with httpx.Client(base_url=base, follow_redirects=True, headers={"accept": "text/html"}) as browser:
        assert (browser.get("/api/me", headers={"accept": "application/json"})).status_code == 401
        me = browser.get("/auth/login", params={"next": "/api/me"})  # -> /idp/authorize -> callback -> next
        assert me.url == f"{base}/api/me" and me.status_code == 200
        body = me.json()
        assert body["sub"] == "alice" and body["refreshes"] == 0
        # The token the Flask view read through the ContextVar is the one the provider issued.
        info = browser.get("/idp/userinfo", headers={"authorization": f"Bearer {body['access_token']}"})
        assert info.status_code == 200 and info.json()["sub"] == "alice"
        assert "Signed in as" in browser.get("/").text
