"""Section 2: end to end, uvicorn (one worker) under wrk, requests/s and p99 latency, interleaved rounds."""

from __future__ import annotations

import contextlib
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx

from ._apps import PATH
from ._servers import cpu_seconds, uvicorn_app

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk_binary() -> str | None:
    return shutil.which("wrk")


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


def wrk(url: str, cookie: str, *, seconds: float, connections: int, threads: int) -> dict[str, Any]:
    binary = wrk_binary()
    assert binary is not None
    command = [binary, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    command += ["-H", "Accept: application/json", url + PATH]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return parse_wrk(done.stdout)


def measure(
    variants: list[str],
    *,
    redis_url: str | None,
    rounds: int,
    seconds: float,
    warmup: float,
    connections: int = 32,
    threads: int = 2,
) -> dict[str, Any]:
    """All servers up at once (idle ones cost nothing); each round runs wrk against each in turn."""
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as directory, contextlib.ExitStack() as stack:
        servers: dict[str, tuple[str, str, int]] = {}
        for name in variants:
            url, cookie, pid = stack.enter_context(
                uvicorn_app(name, redis_url=redis_url, directory=Path(directory))
            )
            answer = httpx.get(url + PATH, headers={"cookie": cookie, "accept": "application/json"})
            if answer.status_code != 200 or answer.json().get("user") != "alice":
                raise RuntimeError(f"{name} under uvicorn answered {answer.status_code}: {answer.text[:200]}")
            servers[name] = url, cookie, pid
        for url, cookie, _ in servers.values():
            wrk(url, cookie, seconds=warmup, connections=connections, threads=threads)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for r in range(rounds):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for name in order:
                url, cookie, pid = servers[name]
                cpu = cpu_seconds(pid)
                run = wrk(url, cookie, seconds=seconds, connections=connections, threads=threads)
                run["server_cpu_us"] = (cpu_seconds(pid) - cpu) / run["requests"] * 1e6
                runs[name].append(run)
    results: dict[str, Any] = {}
    bare = runs.get("bare")
    for name, got in runs.items():
        row: dict[str, Any] = {
            "rps_median": statistics.median(g["rps"] for g in got),
            "p99_ms_median": statistics.median(g["p99_ms"] for g in got),
            "server_cpu_us_median": statistics.median(g["server_cpu_us"] for g in got),
            "non_2xx": sum(g["non_2xx"] for g in got),
            "socket_errors": [g["socket_errors"] for g in got if g["socket_errors"]],
            "rounds": got,
        }
        if bare is not None:
            row["rps_ratio"] = statistics.median(g["rps"] / b["rps"] for g, b in zip(got, bare, strict=True))
            row["p99_ratio"] = statistics.median(
                g["p99_ms"] / b["p99_ms"] for g, b in zip(got, bare, strict=True)
            )
            row["cpu_ratio"] = statistics.median(
                g["server_cpu_us"] / b["server_cpu_us"] for g, b in zip(got, bare, strict=True)
            )
        results[name] = row
    config = {"connections": connections, "threads": threads, "seconds": seconds, "rounds": rounds}
    return {**config, "variants": results}
