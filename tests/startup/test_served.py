"""The startup check and the guard's log lines under a real uvicorn process with its default logging."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from asgi_oauth_guard.testing import OAuthTestProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0


@pytest.fixture
def loopback() -> Iterator[socket.socket]:
    """A loopback port held by this test: bound but not listening, so connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def url(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


class Provider:
    """The test provider served by uvicorn in a thread of this process, on a socket given to it."""

    def __init__(self, sock: socket.socket, issuer: str | None = None) -> None:
        self.provider = OAuthTestProvider(
            issuer=issuer or url(sock), client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
        config = uvicorn.Config(self.provider, lifespan="on", log_level="warning", ws="none", loop="asyncio")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + DEADLINE
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "the provider did not start"
            time.sleep(0.02)  # polling readiness, bounded by the deadline

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class App:
    """``uvicorn <module>`` in a subprocess, with uvicorn's default logging."""

    def __init__(self, issuer: str, log: Path, module: str = "tests.startup.guard_app:app") -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        self.base = url(self._sock)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OAUTH_", "GUARD_", "DEMO_"))}
        env.update(TEST_ISSUER=issuer, TEST_PUBLIC_URL=self.base, PUBLIC_URL=self.base)
        self._log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", module, "--fd", str(self._sock.fileno())],
                cwd=ROOT,
                env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
                pass_fds=[self._sock.fileno()],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def output(self) -> str:
        return self._log.read_text()

    def wait_for(self, pattern: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while not re.search(pattern, self.output, re.MULTILINE):
            if time.monotonic() > deadline:
                pytest.fail(f"{pattern!r} not in the app's output:\n{self.output}", pytrace=False)
            time.sleep(0.05)  # polling a real process's log, bounded by the deadline
        return self.output

    def exit_code(self) -> int:
        return self.process.wait(timeout=DEADLINE)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self._sock.close()


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        app.stop()


def test_a_wrong_issuer_and_a_discovery_404_stop_uvicorn_with_the_fix(
    loopback: socket.socket, apps: list[App], tmp_path: Path
) -> None:
    base = url(loopback)
    provider = Provider(loopback, issuer=base + "/idp")  # it also answers discovery at its root
    try:
        wrong = App(base, tmp_path / "wrong.log")  # a document that names another issuer
        missing = App(base + "/tenant", tmp_path / "missing.log")  # 404
        apps += [wrong, missing]
        assert wrong.exit_code() != 0 and missing.exit_code() != 0
    finally:
        provider.stop()
    for app, expected in (
        (
            wrong,
            rf"asgi-oauth-guard: the discovery document of '{base}' names issuer "
            rf"'{base}/idp': set issuer= to exactly the provider's issuer URL",
        ),
        (
            missing,
            r"asgi-oauth-guard: OIDC discovery at .*/tenant/.well-known/openid-configuration answered 404: "
            r"set issuer= to the provider's issuer URL",
        ),
    ):
        assert re.search(expected, app.output), app.output
        assert "Application startup failed. Exiting." in app.output
        assert "Traceback" not in app.output


def test_an_unreachable_issuer_starts_serves_503_then_signs_in_with_log_lines(
    loopback: socket.socket, apps: list[App], tmp_path: Path
) -> None:
    base = url(loopback)
    app = App(base, tmp_path / "app.log")
    apps.append(app)
    app.wait_for("Application startup complete")
    output = app.wait_for("did not answer at startup")
    line = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING asgi_oauth_guard: the provider did not answer"
    assert re.search(line, output, re.MULTILINE), output
    with httpx.Client(base_url=app.base, headers={"accept": "text/html"}) as browser:
        waiting = browser.get("/auth/login")
        assert waiting.status_code == 503 and waiting.headers["retry-after"]
        provider = Provider(loopback)  # the provider comes up on the issuer's port
        try:
            app.wait_for("INFO asgi_oauth_guard: the provider answers: sign-in is available")
            signed_in = browser.get("/auth/login", params={"next": "/"}, follow_redirects=True)
            assert signed_in.url == f"{app.base}/" and signed_in.text == "signed in as alice"
        finally:
            provider.stop()
    output = app.wait_for("INFO asgi_oauth_guard: login sub=alice")
    login = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO asgi_oauth_guard: login sub=alice"
    assert re.search(login, output, re.MULTILINE), output
    assert "Traceback" not in output


def test_an_example_without_oauth_issuer_warns_that_it_runs_the_embedded_provider(
    apps: list[App], tmp_path: Path
) -> None:
    app = App("", tmp_path / "example.log", module="examples.starlette_app:app")
    apps.append(app)
    output = app.wait_for("Application startup complete")
    warning = r"^\d{4}-.* WARNING asgi_oauth_guard.examples: OAUTH_ISSUER is not set: signing in against the embedded"
    assert re.search(warning, app.wait_for("OAUTH_ISSUER is not set"), re.MULTILINE), output
