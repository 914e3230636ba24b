"""Section 2: end to end, uvicorn (one worker) under wrk: requests/s, p99 latency and the server's CPU time.

Cases: a server configuration and a request. The main case is what a deployment sees: uvicorn[standard]
(uvloop + httptools) answering a browser's request (:mod:`._browser`: its headers, the app's other cookies,
a JSON answer of about 1 KB). The others show what the earlier benchmark missed: the same with uvicorn's
defaults (access log on), and the earlier request (four short headers, the session cookie alone) on
uvicorn[standard] and on plain uvicorn (asyncio + h11), which is how the earlier figure was taken.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from . import _browser
from ._apps import PATH
from ._servers import cpu_seconds, uvicorn_app

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclasses.dataclass(frozen=True)
class Server:
    label: str
    options: tuple[str, ...]


SERVERS = {
    "standard": Server(
        "uvicorn[standard] (uvloop + httptools), --no-access-log",
        ("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
    ),
    "defaults": Server("uvicorn's defaults (uvloop + httptools, access log on)", ()),
    "plain": Server(
        "uvicorn on asyncio + h11, --no-access-log (the earlier benchmark's server)",
        ("--loop", "asyncio", "--http", "h11", "--no-access-log"),
    ),
}
REQUESTS = {
    "browser": "a browser's request (15 headers, 1 KB of other cookies)",
    "minimal": "the earlier request (4 headers, the session cookie alone)",
}


@dataclasses.dataclass(frozen=True)
class Case:
    server: str
    request: str
    variants: tuple[str, ...] | None  # None: every variant of the run

    @property
    def name(self) -> str:
        return f"{self.request}/{self.server}"


MAIN = Case("standard", "browser", None)
CASES = (
    MAIN,
    Case("defaults", "browser", ("bare", "guard-memory", "guard-before")),
    Case("standard", "minimal", ("bare", "guard-memory", "guard-before")),
    Case("plain", "minimal", ("bare", "guard-memory", "guard-before")),
)


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def ensure_wrk() -> str | None:
    """wrk, installed with apt-get when it is missing and this runs as root (Debian and Ubuntu package it)."""
    found = wrk_binary()
    if found is not None or shutil.which("apt-get") is None or os.geteuid() != 0:
        return found
    print("== wrk is missing: apt-get install -y wrk", file=sys.stderr, flush=True)
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    for commands in ([install], [["apt-get", "update", "-q"], install]):
        for command in commands:
            subprocess.run(command, capture_output=True, check=False, timeout=600)
        if wrk_binary() is not None:
            break
    return wrk_binary()


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    total = re.search(r"(\d+) requests in", output)
    if rps is None or p99 is None or total is None:
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": float(rps[1]),
        "p99_ms": _ms(p99[1]),
        "requests": int(total[1]),
        "non_2xx": int(bad[1]) if bad else 0,
        "socket_errors": errors[1].strip() if errors else "",
    }


def request_headers(request: str, session_cookie: str) -> list[tuple[str, str]]:
    """The headers wrk sends (it adds Host and keeps the connection alive itself)."""
    if request == "minimal":
        pairs = [("user-agent", "bench/1.0"), ("accept", "application/json")]
        return pairs + ([("cookie", session_cookie)] if session_cookie else [])
    cookie = _browser.cookie_header(session_cookie)
    return [(k, v) for k, v in _browser.header_pairs(cookie) if k not in ("host", "connection")]


def wrk(
    url: str, headers: Sequence[tuple[str, str]], *, seconds: float, connections: int, threads: int
) -> dict[str, Any]:
    binary = wrk_binary()
    assert binary is not None
    command = [binary, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for name, value in headers:
        command += ["-H", f"{name}: {value}"]
    command.append(url + PATH)
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return parse_wrk(done.stdout)


def _check(name: str, url: str, headers: Sequence[tuple[str, str]]) -> None:
    answer = httpx.get(url + PATH, headers=list(headers))
    if answer.status_code != 200 or answer.json().get("user") != "alice":
        raise RuntimeError(f"{name} under uvicorn answered {answer.status_code}: {answer.text[:200]}")


Servers = dict[str, tuple[str, list[tuple[str, str]], int]]  # variant: (url, headers, pid)
Runs = dict[str, list[dict[str, Any]]]


def _summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per variant; each run of a variant is compared with the bare runs just before and after it
    (``bare``, which :func:`measure` records with it): the geometric mean of their requests/s and p99, the
    mean of their CPU time."""
    results: dict[str, Any] = {}
    for name, got in runs.items():
        row: dict[str, Any] = {
            "rps_median": statistics.median(g["rps"] for g in got),
            "p99_ms_median": statistics.median(g["p99_ms"] for g in got),
            "server_cpu_us_median": statistics.median(g["server_cpu_us"] for g in got),
            "non_2xx": sum(g["non_2xx"] for g in got),
            "socket_errors": [g["socket_errors"] for g in got if g["socket_errors"]],
            "rounds": got,
        }
        if name == "bare":
            row.update(rps_ratio=1.0, rps_ratio_range=[1.0, 1.0], p99_ratio=1.0, cpu_ratio=1.0)
            row.update(cpu_over_bare_us=0.0, cpu_over_bare_us_range=[0.0, 0.0])
        elif all("bare" in g for g in got):
            rps = [g["rps"] / g["bare"]["rps"] for g in got]
            extra = [g["server_cpu_us"] - g["bare"]["server_cpu_us"] for g in got]
            row["rps_ratio"] = statistics.median(rps)
            row["rps_ratio_range"] = [min(rps), max(rps)]
            row["p99_ratio"] = statistics.median(g["p99_ms"] / g["bare"]["p99_ms"] for g in got)
            row["cpu_ratio"] = statistics.median(g["server_cpu_us"] / g["bare"]["server_cpu_us"] for g in got)
            row["cpu_over_bare_us"] = statistics.median(extra)
            row["cpu_over_bare_us_range"] = [min(extra), max(extra)]
        results[name] = row
    return results


def _between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """What bare measured around a run: rates and latencies by their geometric mean, CPU time by its mean
    (a drift of the machine's speed during the three runs cancels to first order)."""
    return {
        "rps": math.sqrt(before["rps"] * after["rps"]),
        "p99_ms": math.sqrt(before["p99_ms"] * after["p99_ms"]),
        "server_cpu_us": (before["server_cpu_us"] + after["server_cpu_us"]) / 2,
    }


def measure(
    variants: list[str],
    *,
    redis_url: str | None,
    rounds: int,
    seconds: float,
    warmup: float,
    connections: int = 32,
    threads: int = 2,
    cases: Sequence[Case] = CASES,
    settings: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per case, all its servers up at once (idle ones cost nothing). Each round runs wrk against bare, then
    against each other variant in turn (the order rotates) with bare again after each: a variant's run is
    compared with the bare runs just before and after it (:func:`_between`). With six variants, comparing
    with one bare run per round put them up to five runs apart, and this machine's speed changes within
    that (the ratios of one run's rounds ranged from 0.55x to 1.08x)."""
    done: list[dict[str, Any]] = []
    for case in cases:
        names = [n for n in variants if case.variants is None or n in case.variants]
        server = SERVERS[case.server]
        print(f".. {case.name}: {', '.join(names)}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-e2e-") as directory, contextlib.ExitStack() as stack:
            servers: Servers = {}
            for name in names:
                url, cookie, pid = stack.enter_context(
                    uvicorn_app(
                        _base(name),
                        redis_url=redis_url,
                        directory=Path(directory),
                        options=server.options,
                        settings=(settings or {}).get(name),
                        label=name,
                    )
                )
                headers = request_headers(case.request, cookie)
                _check(name, url, headers)
                servers[name] = url, headers, pid
            for url, headers, _ in servers.values():
                wrk(url, headers, seconds=warmup, connections=connections, threads=threads)
            runs: Runs = {name: [] for name in servers}

            def run(name: str, servers: Servers = servers, runs: Runs = runs) -> dict[str, Any]:
                url, headers, pid = servers[name]
                cpu = cpu_seconds(pid)
                got = wrk(url, headers, seconds=seconds, connections=connections, threads=threads)
                got["server_cpu_us"] = (cpu_seconds(pid) - cpu) / got["requests"] * 1e6
                runs[name].append(got)
                return got

            others = [name for name in names if name != "bare"]
            for r in range(rounds):
                # bare, then each other variant followed by bare again (the order rotates): each run is
                # compared with the two bare runs beside it, seconds apart, never a round apart.
                order = others[r % len(others) :] + others[: r % len(others)] if others else []
                before = run("bare") if "bare" in servers else None
                for name in order:
                    got = run(name)
                    if before is not None:
                        after = run("bare")
                        got["bare"] = _between(before, after)
                        before = after
        done.append(
            {
                "case": case.name,
                "server": server.label,
                "request": REQUESTS[case.request],
                "variants": _summary(runs),
            }
        )
    config = {"connections": connections, "threads": threads, "seconds": seconds, "rounds": rounds}
    return {**config, "variants": done[0]["variants"], "cases": done}


def _base(variant: str) -> str:
    """The app a variant runs: ablations (``guard-memory+nocache``) run their base app with other settings."""
    return variant.split("+", 1)[0]


def profile(
    variants: Sequence[str], *, redis_url: str | None, seconds: float, connections: int = 32, threads: int = 2
) -> dict[str, Any]:
    """cProfile in the uvicorn process (the main case) while wrk drives it: the functions by own time and
    Python calls per request. cProfile slows every call, so only the ranking and the counts mean much."""
    server = SERVERS[MAIN.server]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as directory:
        for name in variants:
            out = Path(directory) / f"{name}.pstats.txt"
            with uvicorn_app(
                name, redis_url=redis_url, directory=Path(directory), options=server.options, profile=out
            ) as (url, cookie, pid):
                headers = request_headers(MAIN.request, cookie)
                _check(name, url, headers)
                wrk(url, headers, seconds=1, connections=connections, threads=threads)
                os.kill(pid, signal.SIGUSR1)
                run = wrk(url, headers, seconds=seconds, connections=connections, threads=threads)
                os.kill(pid, signal.SIGUSR2)
                deadline = time.monotonic() + 30
                while not out.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                text = out.read_text()
            first, _, rest = text.partition("\n")
            calls = int(first.split()[1])
            results[name] = {
                "requests": run["requests"],
                "calls_per_request": calls / max(1, run["requests"]),
                "top": rest.strip(),
            }
    return results
