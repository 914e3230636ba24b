"""The benchmark script still runs: its smoke mode, end to end, in a few seconds. Never a test of speed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .engines import Engines

REPO = Path(__file__).resolve().parent.parent


def test_smoke_run_measures_every_variant_and_the_races(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--output", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    [written] = tmp_path.glob("*-smoke.json")
    results = json.loads(written.read_text())

    with_redis = shutil.which("redis-server") is not None
    variants = {"bare", "session", "authlib", "guard-memory"} | ({"guard-redis"} if with_redis else set())
    hot = results["hot_path"]["variants"]
    assert variants <= set(hot)
    assert all(hot[name]["us_median"] > 0 and hot[name]["ratio"] > 0 for name in variants)
    if with_redis:
        assert results["hot_path"]["redis"]["commands_per_request"] == 1.0

    guards = [name for name in ("guard-memory", "guard-redis") if name in variants]
    stampede = {row["variant"]: row for row in results["stampede"]}
    duplicates = {row["variant"]: row for row in results["duplicate_callbacks"]}
    assert set(stampede) == set(duplicates) == {"authlib", *guards}
    for name in guards:
        assert stampede[name]["refresh_calls"] == 1
        assert stampede[name]["working_tokens"] == stampede[name]["requests"]
        assert duplicates[name]["exchange_calls"] == 1
        assert duplicates[name]["working_tokens"] == duplicates[name]["tabs"]

    assert results["memory"]["memory_store"]["session_bytes"] > 0

    scaling = results["scaling"]
    stores = ["memory", "redis"] if with_redis else ["memory"]
    assert [(r["store"], r["stored"]) for r in scaling["stored_sessions"]] == [(s, 1000) for s in stores]
    assert [r["store"] for r in scaling["cold_path"]] == stores
    assert all(r["cold_us"] > 0 and r["warm_us"] > 0 for r in scaling["cold_path"])
    assert all(
        isinstance(r["warm_gc_us"], float) and isinstance(r["cold_gc_us"], float)
        for r in scaling["cold_path"]
    )
    assert [r["others"] for r in scaling["cookie_sizes"]] == [100, 500, 1000, 2000, 4000]
    assert scaling["sign_ins"]["per_second_per_core"] > 0
    assert [r["store"] for r in scaling["refresh"]] == stores
    for row in scaling["refresh"]:
        assert row["refreshes"] == row["requests"]  # each due request refreshed once, none twice
    assert results["end_to_end"] == {"skipped": "smoke mode"}
    counted = results["instructions"]  # valgrind is installed by scripts/test: these rows must be there
    assert set(counted["in_process"]) == {"bare", "session", "guard-memory"}
    assert all(count > 0 for count in counted["in_process"].values())
    assert counted["in_process_ratio"]["bare"] == 1.0
    cold = counted["cold_path"]
    assert cold["stored"] == 2_000 and cold["warm"] > 0 and cold["cold"] > 0
    for kind in ("warm", "cold"):  # the cache and branch simulations, for every measured request
        assert set(cold["simulated"][kind]) == {
            "l1i_misses",
            "l1d_misses",
            "ll_misses",
            "branches",
            "mispredicted",
        }
        assert cold["simulated"][kind]["branches"] > cold["simulated"][kind]["mispredicted"] > 0
    assert "| mispredicted branches |" in done.stdout
    assert "The cold path (guard, MemoryStore, 2,000 sessions stored" in done.stdout
    assert "| guard, MemoryStore |" in done.stdout  # the markdown table


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis.asyncio, psycopg
async def test_engine_rows_are_produced_with_one_round_trip_per_request(
    engines: Engines, redis_url: str
) -> None:
    from benchmarks import _engines

    urls = {
        "redis": redis_url,
        "redis-cluster": engines.cluster.url,
        "redis-sentinel": engines.sentinel.url,
        "postgres": engines.postgres.url,
    }
    rows = await _engines.run(urls, sessions=1000, requests=40, batches=2)
    assert [row["engine"] for row in rows] == list(_engines.ENGINES)
    for row in rows:
        assert row["round_trips_per_request"] == 1.0  # the session read, nothing else
        assert row["round_trips_per_refresh"] > 0 and row["session_value_bytes"] > 0
        assert row["guard_us"] > 0 and row["guard_us_full"] > 0  # speed is never asserted
    assert "| postgres |" in _engines.table(rows)


def test_the_gc_clock_counts_collections_only_while_entered() -> None:
    import gc

    from benchmarks._scaling import GcClock

    callbacks = len(gc.callbacks)
    with GcClock() as clock:
        for _ in range(3):
            gc.collect()
    assert clock.seconds > 0 and len(gc.callbacks) == callbacks
    counted = clock.seconds
    gc.collect()
    assert clock.seconds == counted


def test_end_to_end_compares_each_run_with_the_bare_runs_beside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's speed drifts through a round (here it halves, run after run): each variant's ratio to
    bare is still what its own work makes it, because it is taken against the bare runs beside it."""
    import contextlib
    from collections.abc import Iterator
    from typing import Any

    sys.path.insert(0, str(REPO))
    from benchmarks import _e2e

    cost = {"bare": 1.0, "guard-memory": 1.1, "session": 2.0}  # CPU per request, at full speed
    ports = {f"http://127.0.0.1:{9000 + i}": name for i, name in enumerate(cost)}
    speed = [1.0]
    cpu = {name: 0.0 for name in cost}
    sequence: list[str] = []

    @contextlib.contextmanager
    def served(variant: str, **_: Any) -> Iterator[tuple[str, str, int]]:
        yield next(u for u, n in ports.items() if n == variant), "guard_session=x", list(cost).index(variant)

    def wrk(url: str, headers: Any, *, seconds: float, connections: int, threads: int) -> dict[str, Any]:
        name = ports[url]
        sequence.append(name)
        speed[0] *= 0.93  # slower at every run
        rps = speed[0] / cost[name] * 10_000
        requests = round(rps * seconds)
        cpu[name] += requests * cost[name] / speed[0] * 1e-4
        return {"rps": rps, "p99_ms": 1 / rps * 1e4, "requests": requests, "non_2xx": 0, "socket_errors": ""}

    monkeypatch.setattr(_e2e, "uvicorn_app", served)
    monkeypatch.setattr(_e2e, "wrk", wrk)
    monkeypatch.setattr(_e2e, "_check", lambda *a: None)
    monkeypatch.setattr(_e2e, "cpu_seconds", lambda pid: cpu[list(cost)[pid]])
    got = _e2e.measure(list(cost), redis_url=None, rounds=4, seconds=1, warmup=1, cases=[_e2e.MAIN])
    measured = sequence[len(cost) :]  # after one warm-up run each
    assert measured[:5] == ["bare", "guard-memory", "bare", "session", "bare"]
    assert measured[5:10] == ["bare", "session", "bare", "guard-memory", "bare"]  # the order rotates
    rows = got["variants"]
    assert len(rows["guard-memory"]["rounds"]) == 4 and len(rows["bare"]["rounds"]) == 12
    for name in ("guard-memory", "session"):
        assert rows[name]["rps_ratio"] == pytest.approx(1 / cost[name], rel=1e-9)
        assert rows[name]["p99_ratio"] == pytest.approx(cost[name], rel=1e-9)
        assert rows[name]["rps_ratio_range"][1] - rows[name]["rps_ratio_range"][0] < 1e-9
    # CPU time by the mean of its neighbours: to within the drift's curvature
    assert rows["guard-memory"]["cpu_ratio"] == pytest.approx(1.1, rel=0.005)
