"""The store's master killed under load: four workers on a Sentinel-managed Redis and on a Redis Cluster.

Briefly here (6 users, about 10 s each); ``scripts/failover_soak.py`` runs the same soak for longer.
The guard answers 503 with ``Retry-After`` while no master answers, never another 5xx, and works again
once a replica is promoted: every session signed in before the kill still works (also one whose refresh
was in flight at the kill, see below), and the provider never sees a code or a refresh token twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest

from .conftest import Cluster, Idp
from .failover import count_twice, run_failover_soak

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# FAILOVER_ROUNDS=N repeats the Sentinel run N times, to measure how often a rare loss shows.
ROUNDS = int(os.environ.get("FAILOVER_ROUNDS", "1"))
UNAVAILABLE_BOUND = 30.0  # generous: the promotion itself takes 2 s down-after + an election


@pytest.fixture
def restored(running: Cluster) -> Iterator[Cluster]:
    """After the test, the killed master comes back (as a replica) so later tests see the full set-up."""
    yield running
    assert running.engines is not None
    if running.engine == "redis-sentinel":
        running.engines.sentinel.restore()
    else:
        running.engines.cluster.restore()


def check(report_summary: dict[str, object]) -> None:
    print("\nfailover soak:", json.dumps(report_summary))  # the figures, for the report (pytest -s)
    assert report_summary["5xx other than 503"] == 0
    assert report_summary["503 without Retry-After"] == 0
    assert report_summary["503 span s"] < UNAVAILABLE_BOUND  # type: ignore[operator]
    assert report_summary["codes exchanged twice"] == 0
    # On Sentinel the workers' store waits for the replica on the writes that must survive (conftest,
    # SENTINEL_QUERY): without it a refresh in flight at the kill lost its rotated refresh token with the
    # master in about a third of the runs (docs/configuration.md, "Failover: what it can cost").
    assert report_summary["refresh tokens sent twice"] == 0
    assert report_summary["sessions lost"] == 0
    assert report_summary["refreshes at the provider"] > 0  # type: ignore[operator]
    assert report_summary["logins"].get("completed", 0) > 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("round_", range(ROUNDS))
@pytest.mark.parametrize("cluster", ["redis-sentinel"], indirect=True)
async def test_sentinel_master_killed_mid_run_503s_then_recovers(
    restored: Cluster, http: httpx.AsyncClient, idp: Idp, round_: int
) -> None:
    assert restored.engines is not None
    sentinel = restored.engines.sentinel

    def kill() -> None:
        sentinel.wait_promoted(sentinel.kill_master())

    report = await run_failover_soak(restored, http, users=6, seconds=6, kill_after=2, kill=kill)
    await count_twice(idp, report)
    check(report.summary())


@pytest.mark.parametrize("cluster", ["redis-cluster"], indirect=True)
async def test_cluster_master_killed_mid_run_503s_then_recovers(
    restored: Cluster, http: httpx.AsyncClient, idp: Idp
) -> None:
    assert restored.engines is not None
    servers = restored.engines.cluster

    def kill() -> None:
        servers.kill_master(servers.masters()[0])

    report = await run_failover_soak(restored, http, users=6, seconds=6, kill_after=2, kill=kill)
    await count_twice(idp, report)
    check(report.summary())
