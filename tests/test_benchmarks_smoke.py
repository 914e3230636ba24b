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
