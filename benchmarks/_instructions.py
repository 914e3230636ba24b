"""Section 7: instructions per request, counted by valgrind's callgrind: the one figure noise cannot move.

The machines these benchmarks run on are shared: a bare app's microseconds per request move by half
between rounds, and a ratio of two such figures moves with them. Callgrind counts the instructions a
process executes instead, which are the same on every run of the same code with the same input whatever
else the machine does (hash randomisation fixed: ``PYTHONHASHSEED=0``). Instructions are not time (a cache
miss costs more than an add), so these rows complement the timed ones; they say exactly how much work a
change added or removed, which is what a before/after needs on a noisy machine.

Two settings, each counting only the measured requests (instrumentation is switched on after warm-up):

- in-process: the raw driver of section 1 calls the app ``n`` times with a browser's request;
- under uvicorn[standard]: the whole server process (event loop, HTTP parser, the app) while wrk drives
  it, divided by the requests wrk counted.

- the cold path: the guard with a MemoryStore of ``stored`` sessions, caches full, 100 users (warm) and
  users picked at random among all (cold), as section 3 measures it in time; with callgrind's cache and
  branch simulations too, since the cold path's time outgrows its instructions (misses and
  mispredictions of code run once per request).

``python -m benchmarks._instructions VARIANT N`` (and ``cold STORED N``) is the in-process child run
under valgrind.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _apps
from ._e2e import MAIN, SERVERS, request_headers, wrk
from ._servers import uvicorn_app

IN_PROCESS = ("bare", "session", "guard-memory")
SERVED = ("bare", "guard-memory")


def valgrind() -> str | None:
    return shutil.which("valgrind") if shutil.which("callgrind_control") else None


def _control(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], capture_output=True, check=True, timeout=120)


def _counts(directory: Path, dump: int = 1) -> dict[str, int]:
    """Every event of the ``dump``-th dump callgrind_control asked for (the file ending in ``.1``, ``.2``),
    by callgrind's name: ``Ir`` (instructions), and with the simulations on ``I1mr``, ``D1mr``, ``Bcm``..."""
    [path] = directory.glob(f"callgrind.*.{dump}")
    text = path.read_text(errors="replace")
    events = re.search(r"^events:\s+(.+)$", text, re.MULTILINE)
    totals = re.search(r"^totals:\s+(.+)$", text, re.MULTILINE)
    if events is None or totals is None:
        raise RuntimeError(f"callgrind wrote no totals to {path}")
    return dict(zip(events[1].split(), map(int, totals[1].split()), strict=True))


def _totals(directory: Path, dump: int = 1) -> int:
    """The instructions of the ``dump``-th dump."""
    return _counts(directory, dump)["Ir"]


# What the cache and branch simulations say of a request, from callgrind's events (its model of this
# machine's caches, and a simple predictor: a guide to where time goes that instructions do not show).
SIMULATED = {  # name: (what the report calls it, callgrind's events summed)
    "l1i_misses": ("L1 instruction-cache misses", ("I1mr",)),
    "l1d_misses": ("L1 data-cache misses", ("D1mr", "D1mw")),
    "ll_misses": ("last-level cache misses", ("ILmr", "DLmr", "DLmw")),
    "branches": ("branches", ("Bc", "Bi")),
    "mispredicted": ("mispredicted branches", ("Bcm", "Bim")),
}


def simulated(counts: dict[str, int], idle: dict[str, int], requests: int) -> dict[str, float]:
    """Per request, each of :data:`SIMULATED`, with what the ``idle`` dump counted taken out."""
    return {
        name: round(sum(counts[e] - idle[e] for e in events) / requests, 1)
        for name, (_, events) in SIMULATED.items()
    }


def _command(directory: Path, *, simulate: bool = False) -> list[str]:
    binary = valgrind()
    assert binary is not None
    return [
        binary,
        "--tool=callgrind",
        "--instr-atstart=no",  # nothing counted (and little slowed) until the measured requests
        *(["--cache-sim=yes", "--branch-sim=yes"] if simulate else []),  # simulated only while counting
        f"--callgrind-out-file={directory}/callgrind.%p",
    ]


def in_process(variant: str, requests: int) -> int:
    """Instructions per request of ``variant`` called in-process ``requests`` times."""
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as name:
        directory = Path(name)
        command = [*_command(directory), sys.executable, "-m", "benchmarks._instructions", variant]
        subprocess.run(
            [*command, str(requests)],
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            check=True,
            timeout=900,
        )
        # The second dump counted no request: what switching the counting off costs (a subprocess started
        # from the counted process), taken out of the first.
        return round((_totals(directory, 1) - _totals(directory, 2)) / requests)


def cold_path(stored: int, requests: int) -> dict[str, Any]:
    """Instructions per request of the guard (MemoryStore, ``stored`` sessions, caches full) for ``warm``
    requests (100 users) and ``cold`` ones (each from a random one of all), as section 3's cold path; and
    what the cache and branch simulations say of each (``simulated``): the cold path's time outgrows its
    instructions, and this says by what."""
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as name:
        directory = Path(name)
        command = [*_command(directory, simulate=True), sys.executable, "-m", "benchmarks._instructions"]
        subprocess.run(
            [*command, "cold", str(stored), str(requests)],
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            check=True,
            timeout=1800,
        )
        warm, cold, idle = (_counts(directory, dump) for dump in (1, 2, 3))
        # the third dump counted no request (as in :func:`in_process`)
        return {
            "warm": round((warm["Ir"] - idle["Ir"]) / requests),
            "cold": round((cold["Ir"] - idle["Ir"]) / requests),
            "simulated": {
                "warm": simulated(warm, idle, requests),
                "cold": simulated(cold, idle, requests),
            },
        }


def served(variant: str, *, seconds: float, redis_url: str | None) -> tuple[int, int]:
    """Instructions per request of the uvicorn[standard] process serving ``variant`` under wrk, and the
    requests counted."""
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as name:
        directory = Path(name)
        with uvicorn_app(
            variant,
            redis_url=redis_url,
            directory=directory,
            options=SERVERS[MAIN.server].options,
            prefix=_command(directory),
            startup_timeout=600,
        ) as (url, cookie, pid):
            headers = request_headers(MAIN.request, cookie)
            wrk(url, headers, seconds=2, connections=32, threads=2)  # warm-up, not counted
            _control(pid, "-i", "on")
            run = wrk(url, headers, seconds=seconds, connections=32, threads=2)
            _control(pid, "-i", "off")
            _control(pid, "-d")
            if run["non_2xx"]:
                raise RuntimeError(f"{variant} under callgrind answered {run['non_2xx']} non-2xx")
            total = _totals(directory)
        return round(total / run["requests"]), run["requests"]


def measure(
    *,
    requests: int,
    seconds: float,
    redis_url: str | None,
    before: bool,
    in_process_only: bool,
    stored: int,
) -> dict[str, Any]:
    extra = ["guard-before"] if before else []
    rows: dict[str, Any] = {"requests": requests, "seconds": seconds}
    rows["in_process"] = {variant: in_process(variant, requests) for variant in [*IN_PROCESS, *extra]}
    cold = cold_path(stored, requests)
    rows["cold_path"] = {"stored": stored, **cold, "cold_vs_warm": cold["cold"] / cold["warm"]}
    rows["served"], rows["served_requests"] = {}, {}
    if not in_process_only:
        for variant in [*SERVED, *extra]:
            rows["served"][variant], rows["served_requests"][variant] = served(
                variant, seconds=seconds, redis_url=redis_url
            )
    for setting in ("in_process", "served"):
        got: dict[str, int] = rows[setting]
        if "bare" in got:
            rows[f"{setting}_ratio"] = {v: count / got["bare"] for v, count in got.items()}
            rows[f"{setting}_over_bare"] = {v: count - got["bare"] for v, count in got.items()}
    return rows


# -- the in-process child, run under valgrind -----------------------------------------------------------


async def _child(variant: str, requests: int) -> None:
    from ._driver import call, http_scope, timed

    provider = _apps.make_provider()
    built = _apps.make(variant, provider, redis_url=None)
    try:
        cookie = "" if variant == "bare" else await _apps.sign_in(built, provider)
        scope = http_scope(cookie)
        scope["headers"] = [(k.encode(), v.encode()) for k, v in request_headers(MAIN.request, cookie)]
        for _ in range(300):  # warm-up: caches filled, specialised bytecode in place
            answer = await call(built.app, scope)
        if answer.status != 200 or answer.json().get("user") != "alice":
            raise RuntimeError(f"{variant}: expected a 200 for alice, got {answer.status}")
        for count in (requests, 0):  # the requests, then nothing: the cost of the switching itself
            _control(os.getpid(), "-i", "on")
            await timed(built.app, scope, count)
            _control(os.getpid(), "-i", "off")
            _control(os.getpid(), "-d")
    finally:
        await built.aclose()


async def _cold_child(stored: int, requests: int) -> None:
    import random

    from . import _scaling

    bench = await _scaling.Bench("memory", redis_url=None).start()
    try:
        await bench.mint(stored)
        everyone = bench.session_cookies
        # Caches full, as section 3 measures it: a cookie is remembered from its second sight.
        await _scaling.timed_random(bench.guard, everyone, random.Random(7), min(2 * stored, 200_000))
        await _scaling.timed_fresh(bench.guard, everyone[:100], 2000)
        runs = (
            lambda: _scaling.timed_fresh(bench.guard, everyone[:100], requests),
            lambda: _scaling.timed_random(bench.guard, everyone, random.Random(21), requests),
            lambda: _scaling.timed_fresh(bench.guard, everyone[:100], 0),
        )
        for run in runs:
            _control(os.getpid(), "-i", "on")
            await run()
            _control(os.getpid(), "-i", "off")
            _control(os.getpid(), "-d")
    finally:
        await bench.aclose()


def _main(argv: Sequence[str]) -> None:
    if argv[0] == "cold":
        asyncio.run(_cold_child(int(argv[1]), int(argv[2])))
        return
    variant, requests = argv
    asyncio.run(_child(variant, int(requests)))


if __name__ == "__main__":
    _main(sys.argv[1:])
