#!/usr/bin/env python3
"""What a Sentinel failover costs the guard's claims and locks: how many acknowledged ``SET NX`` writes
(the claim of a callback, a refresh lock, a refresh token's claim) are missing on the promoted replica.

    .venv/bin/python scripts/failover_loss.py --rounds 5 [--wait 1 --wait-timeout-ms 100]

Each round: a fresh master + replica + 3 sentinels (``tests/engines.py``), 8 clients writing claims as
fast as they can (one ``SET NX PX`` each, as ``RedisStore.add``; with ``--wait``, followed by ``WAIT`` on
the same connection, pipelined), the master SIGKILLed after 1 s, then every key the clients were told they
created is looked up on the new master. Prints acknowledged, lost, and the writes per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from redis.asyncio import Redis  # noqa: E402

from tests.engines import SentinelServers  # noqa: E402


async def one_round(wait: int, wait_timeout_ms: int) -> dict[str, float]:
    servers = SentinelServers(Path(tempfile.mkdtemp(prefix="failover-loss-")))
    servers.start()
    try:
        master = servers.current_master()
        clients = [Redis(port=master.port, socket_timeout=1) for _ in range(8)]
        acknowledged: list[str] = []
        stop = asyncio.Event()

        async def writer(i: int) -> None:
            n = 0
            while not stop.is_set():
                key = f"claim:{i}:{n}"
                n += 1
                try:
                    if wait:
                        async with clients[i].pipeline(transaction=False) as pipe:
                            pipe.set(key, b"pending", px=600_000, nx=True)
                            pipe.execute_command("WAIT", wait, wait_timeout_ms)
                            created, replicas = await pipe.execute()
                        if created and replicas < wait:
                            continue  # not replicated in time: a store would report a failure here
                    else:
                        created = await clients[i].set(key, b"pending", px=600_000, nx=True)
                except Exception:  # the master is gone: stop writing
                    return
                if created:
                    acknowledged.append(key)

        started = time.monotonic()
        tasks = [asyncio.create_task(writer(i)) for i in range(len(clients))]
        await asyncio.sleep(1.0)
        killed = servers.kill_master()
        elapsed = time.monotonic() - started
        stop.set()
        await asyncio.gather(*tasks)
        for client in clients:
            await client.aclose()
        await asyncio.to_thread(servers.wait_promoted, killed)
        promoted = servers.current_master()
        check = Redis(port=promoted.port)
        lost = 0
        for start in range(0, len(acknowledged), 1000):
            batch = acknowledged[start : start + 1000]
            lost += sum(1 for found in await check.mget(batch) if found is None)
        await check.aclose()
        return {"acknowledged": len(acknowledged), "lost": lost, "writes_per_s": len(acknowledged) / elapsed}
    finally:
        servers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wait", type=int, default=0, help="WAIT numreplicas after each claim (0: none)")
    parser.add_argument("--wait-timeout-ms", type=int, default=100)
    args = parser.parse_args()
    results = [asyncio.run(one_round(args.wait, args.wait_timeout_ms)) for _ in range(args.rounds)]
    print(json.dumps({"wait": args.wait, "rounds": results}, indent=1))


if __name__ == "__main__":
    main()
