#!/usr/bin/env python3
"""The failover soak of ``tests/multiprocess/test_failover.py``, as long as you like.

    .venv/bin/python scripts/failover_soak.py --engine redis-sentinel --users 20 --seconds 60 --kill-after 20

Starts the Redis Cluster / Sentinel set-up (``tests/engines.py``), the test provider and 4 app workers
(``tests/multiprocess``), signs ``--users`` users in, keeps them calling the workers, SIGKILLs the master
after ``--kill-after`` seconds and waits for the promotion. Prints the report as JSON: 503s and their span,
5xx other than 503, sessions lost, codes exchanged twice and refresh tokens sent twice at the provider.
Exits 1 when one of the must-be-zero figures is not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import anyio  # noqa: E402
import httpx  # noqa: E402

from tests.engines import Engines  # noqa: E402
from tests.multiprocess.conftest import PUBLIC_HOST, Cluster, Idp, no_cookies  # noqa: E402
from tests.multiprocess.failover import count_twice, run_failover_soak  # noqa: E402


async def soak(cluster: Cluster, engines: Engines, args: argparse.Namespace) -> dict[str, object]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(
        cookies=no_cookies(), timeout=60, limits=limits, headers=PUBLIC_HOST
    ) as http:
        idp = Idp(http, cluster.provider.url)
        await idp.reset()

        def kill() -> None:
            if args.engine == "redis-sentinel":
                engines.sentinel.wait_promoted(engines.sentinel.kill_master())
            else:
                engines.cluster.kill_master(engines.cluster.masters()[0])

        report = await run_failover_soak(
            cluster, http, users=args.users, seconds=args.seconds, kill_after=args.kill_after, kill=kill
        )
        await count_twice(idp, report)
        return report.summary()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["redis-sentinel", "redis-cluster"], default="redis-sentinel")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--kill-after", type=float, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="failover-soak-"))
    engines = Engines(root / "engines")
    engines.start()
    try:
        (root / "workers").mkdir()
        cluster = Cluster(root / "workers", args.engine, engines)
        try:
            cluster.start()
            summary = anyio.run(soak, cluster, engines, args)
        finally:
            cluster.stop()
    finally:
        engines.stop()
    print(json.dumps(summary, indent=1))
    zero = (
        "5xx other than 503",
        "503 without Retry-After",
        "codes exchanged twice",
        "refresh tokens sent twice",
    )
    return 1 if any(summary[k] for k in zero) else 0


if __name__ == "__main__":
    sys.exit(main())
