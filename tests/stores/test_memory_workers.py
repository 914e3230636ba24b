"""A MemoryStore in several worker processes says so: at start-up when the server shows its siblings, and
on the first sign-in or session that one worker does not know (rate-limited)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from asgi_oauth_guard import MemoryStore, OAuthGuard, RedisStore
from asgi_oauth_guard._worker_advice import WorkerAdvice, sibling_workers
from asgi_oauth_guard.testing import FakeClock

from ..conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY, inner_app
from ..redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("env", "argv", "seen"),
    [
        ({"WEB_CONCURRENCY": "4"}, ["python"], (4, "WEB_CONCURRENCY=4")),
        ({}, ["/venv/bin/gunicorn", "-w", "3", "app:app"], (3, "-w 3")),
        ({}, ["/venv/bin/gunicorn", "-w3", "app:app"], (3, "-w3 3")),
        ({}, ["/venv/bin/uvicorn", "app:app", "--workers", "2"], (2, "--workers 2")),
        ({}, ["/venv/lib/site-packages/uvicorn/__main__.py", "app:app", "--workers=8"], (8, "--workers 8")),
        ({}, ["/venv/bin/hypercorn", "--workers", "2", "app:app"], (2, "--workers 2")),
        ({}, ["/venv/bin/uvicorn", "app:app", "--workers", "1"], None),
        ({"WEB_CONCURRENCY": "1"}, ["/venv/bin/uvicorn", "app:app"], None),
        ({}, ["myscript", "--workers", "4"], None),  # not a server we know: its flags mean something else
    ],
)
def test_what_a_worker_can_see_of_its_siblings(
    env: dict[str, str], argv: list[str], seen: tuple[int, str] | None
) -> None:
    assert sibling_workers(env, argv) == seen


def test_the_startup_warning_names_the_cause_and_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    WorkerAdvice(active=True, env={"WEB_CONCURRENCY": "4"}, argv=["x"])
    WorkerAdvice(active=False, env={"WEB_CONCURRENCY": "4"}, argv=["x"])  # a shared store: nothing to say
    WorkerAdvice(active=True, env={}, argv=["/venv/bin/uvicorn", "app:app"])  # one worker: nothing to say
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "MemoryStore" in message and "4 worker processes" in message and "WEB_CONCURRENCY=4" in message
    assert "RedisStore" in message


def test_unknown_sessions_are_reported_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    advice = WorkerAdvice(active=True, clock=clock, env={}, argv=["x"])
    advice.unknown("session")
    advice.unknown("sign-in")
    clock.advance(59)
    advice.unknown("session")
    clock.advance(1)
    advice.unknown("sign-in")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2
    assert "signed cookie for a session" in messages[0] and "callback for a sign-in" in messages[1]
    assert all("several worker processes" in m and "RedisStore" in m for m in messages)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_guard_on_a_shared_store_never_warns(
    caplog: pytest.LogCaptureFixture, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    common = {"issuer": "https://idp.example.test", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    OAuthGuard(inner_app(), secret_key=SECRET_KEY, store=MemoryStore(), **common)
    store = RedisStore.from_url(redis_url)
    OAuthGuard(inner_app(), secret_key=SECRET_KEY, store=store, **common)
    await store.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "MemoryStore" in warnings[0]


def test_two_uvicorn_workers_on_a_memory_store_warn_at_the_first_lost_sign_in(tmp_path: Path) -> None:
    """The Starlette example (embedded provider, GUARD_STORE=memory://) under ``uvicorn --workers 2``: each
    request on a new connection, so the kernel spreads them over both workers, until a callback lands on
    the worker that did not start its sign-in."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "uvicorn.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OAUTH_", "GUARD_", "DEMO_", "WEB_"))},
        "PUBLIC_URL": base,
        "DEMO_AUTO_APPROVE": "1",
        "GUARD_STORE": "memory://",
        "GUARD_SECRET_KEY": SECRET_KEY,  # the same in both workers, as a deployment sets it
    }
    argv = [sys.executable, "-m", "uvicorn", "examples.starlette_app:app", "--port", str(port)]
    argv += ["--host", "127.0.0.1", "--workers", "2", "--log-level", "warning"]
    with log.open("wb") as out:
        server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(
            base_url=base, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
        ) as http:
            deadline = time.monotonic() + 60
            while True:  # bounded polling: a real server starting
                try:
                    if http.get("/public").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            lost = 0
            for _ in range(100):  # each attempt lands on the other worker about half the time
                started = http.get("/auth/login", headers={"accept": "text/html"})
                assert started.status_code == 303, (started.status_code, log.read_text())
                authorized = http.get(started.headers["location"], headers={"accept": "text/html"})
                callback = authorized.headers.get("location", "")
                if authorized.status_code not in (302, 303) or "/auth/callback" not in callback:
                    continue  # the provider's page was served by the other worker: not a callback yet
                done = http.get(callback, headers={"accept": "text/html"})
                # Signed in, or sent to sign in again: never an error.
                assert done.status_code == 303, (done.status_code, log.read_text())
                if "state_expired" in done.headers.get("location", "") and "does not know" in log.read_text():
                    lost += 1  # the callback reached the worker that never saw this sign-in, and it said so
                    break
            assert lost == 1, log.read_text()
    finally:
        server.terminate()
        server.wait(timeout=20)
    output = log.read_text()
    assert output.count("worker processes (--workers 2)") == 2, output  # each worker, at start-up
    assert "callback for a sign-in this process does not know" in output, output
    assert "several worker processes" in output and "RedisStore" in output
