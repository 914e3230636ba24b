"""Processes the benchmark starts on loopback ports and stops: redis-server and uvicorn."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(process: subprocess.Popen[bytes], ready: object, what: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        if callable(ready) and ready():
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not start in {timeout} s:\n{log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server (no persistence) on a free loopback port: its URL (None if not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        port = free_port()
        log = Path(directory) / "redis.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    *(binary, "--port", str(port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", directory),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait(process, lambda: _answers_ping(port), "redis-server", log, 10)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(process)


def redis_version() -> str | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return out.strip() or None


@contextlib.contextmanager
def uvicorn_app(
    variant: str,
    *,
    redis_url: str | None,
    directory: Path,
    options: Sequence[str] = ("--no-access-log",),
    settings: Mapping[str, Any] | None = None,
    profile: Path | None = None,
    label: str | None = None,
    prefix: Sequence[str] = (),
    startup_timeout: float = 30,
) -> Iterator[tuple[str, str, int]]:
    """``variant`` served by uvicorn (one worker) on loopback: ``(url, cookie_header, pid)``.

    ``options`` are uvicorn's command-line options beyond the app, host and port (none: uvicorn's defaults,
    access log included, which goes to a file here). ``settings``: more keyword arguments for the guard;
    ``profile``: where the server writes its cProfile (see ``_serve``); ``prefix``: a command the server
    runs under (valgrind, for section 7), which may make its startup take up to ``startup_timeout``. The
    app signs its user in during its lifespan startup (so an in-memory session lives in the server
    process) and writes the Cookie header (``name=value``) to a file.
    """
    port = free_port()
    name = label or variant
    cookie_file = directory / f"{name}.cookie"
    log = directory / f"{name}.log"
    env = {
        **os.environ,
        "BENCH_VARIANT": variant,
        "BENCH_COOKIE_FILE": str(cookie_file),
        "BENCH_SETTINGS": json.dumps(dict(settings or {})),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    if redis_url:
        env["BENCH_REDIS_URL"] = redis_url
    if profile is not None:
        env["BENCH_PROFILE"] = str(profile)
    command = [*prefix, sys.executable, "-m", "uvicorn", "--factory", "benchmarks._serve:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), *options]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(
            process,
            lambda: cookie_file.exists() and _listening(port),
            f"uvicorn ({name})",
            log,
            startup_timeout,
        )
        yield f"http://127.0.0.1:{port}", cookie_file.read_text(), process.pid
    finally:
        _stop(process)


def export_baseline(rev: str, directory: Path) -> Path:
    """``rev``'s ``asgi_oauth_guard`` exported as ``directory/asgi_oauth_guard_before``: the directory to
    put on ``sys.path`` (and ``PYTHONPATH``) for the ``guard-before`` variant."""
    archive = subprocess.run(
        ["git", "archive", rev, "asgi_oauth_guard"], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    (directory / "asgi_oauth_guard").rename(directory / "asgi_oauth_guard_before")
    return directory


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
