"""``fastapi run`` on the README's quick start serves the guard: FastAPI's own command line, a real server on a
loopback port, and a sign-in through it against the embedded provider (served over HTTP)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from asgi_oauth_guard.testing import OAuthTestProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY
from ..redis_server import free_port  # `fastapi run` takes a port, not a socket: one no connection takes
from .markdown import ROOT, blocks


@pytest.fixture
def fastapi_run(tmp_path: Path, provider: OAuthTestProvider) -> Iterator[str]:
    (readme,) = [b for b in blocks(ROOT / "README.md") if b.lang == "python" and "FastAPI()" in b.code]
    (tmp_path / "app.py").write_text(readme.code, encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OAUTH_", "GUARD_", "PUBLIC_URL"))},
        "OAUTH_ISSUER": provider.issuer,
        "OAUTH_CLIENT_ID": CLIENT_ID,
        "OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        "GUARD_SECRET_KEY": SECRET_KEY,
        "PUBLIC_URL": base,
    }
    command = [sys.executable, "-m", "fastapi", "run", "app.py", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/public", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                output = server.communicate()[0].decode()
                pytest.fail(f"`fastapi run app.py` did not start serving:\n{output}")
            time.sleep(0.1)  # polling readiness of a real process, bounded by the deadline
        yield base
    finally:
        server.terminate()
        output = server.communicate(timeout=15)[0].decode()
    assert "Traceback" not in output, output


def test_fastapi_run_serves_the_guards_login_route(fastapi_run: str, provider: OAuthTestProvider) -> None:
    base = fastapi_run
    with httpx.Client(base_url=base, headers={"accept": "text/html"}) as browser:
        anonymous = browser.get("/api/me", headers={"accept": "application/json"})
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "login_required"
        login = browser.get("/auth/login", params={"next": "/api/me"})
        assert login.status_code == 303 and login.headers["location"].startswith(
            f"{provider.issuer}/authorize?"
        )
        approved = httpx.get(login.headers["location"])  # the embedded provider signs alice in at once
        assert approved.status_code == 302 and approved.headers["location"].startswith(
            f"{base}/auth/callback?"
        )
        done = browser.get(approved.headers["location"])
        assert done.status_code == 303 and done.headers["location"] == "/api/me"
        me = browser.get("/api/me", headers={"accept": "application/json"})
        assert me.status_code == 200 and me.json()["sub"] == "alice"
