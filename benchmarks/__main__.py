"""``python -m benchmarks``: every section in one run; markdown on stdout, JSON in benchmarks/results/.

``--smoke`` runs a few iterations of everything but the wrk section, in a few seconds (the test suite
runs it so this script cannot rot). Benchmarks never fail on speed: the exit status says only whether
the script itself worked.
"""

from __future__ import annotations

import warnings

warnings.simplefilter("ignore", DeprecationWarning)  # Authlib 1.9 warns on import; expected here

import argparse  # noqa: E402
import asyncio  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from . import _apps, _e2e, _inprocess, _instructions, _memory, _races, _report, _scaling, _servers  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
_apps.LABELS.update(
    {
        "guard-noop": "(guard, MemoryStore, around a minimal ASGI app)",
        "driver": "(raw driver + a minimal ASGI app)",
        "bare-redis-get": "(bare Starlette + one redis-py GET of a session-sized value)",
    }
)


def _say(message: str) -> None:
    print(f"== {message}", file=sys.stderr, flush=True)


def _variants(args: argparse.Namespace, redis_url: str | None) -> list[str]:
    names = [n for n in _apps.VARIANTS if redis_url or n != "guard-redis"]
    return names + (["guard-before"] if args.baseline else [])


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few iterations, no wrk: a quick check")
    parser.add_argument("--output", type=Path, default=RESULTS, help="directory for the JSON results")
    parser.add_argument("--rounds", type=int, help="in-process rounds (default 21; smoke 3)")
    parser.add_argument(
        "--requests", type=int, help="in-process requests per round (default 5000; smoke 200)"
    )
    parser.add_argument("--no-e2e", action="store_true", help="skip the uvicorn + wrk section")
    parser.add_argument("--no-redis", action="store_true", help="leave out RedisStore (no redis-server)")
    parser.add_argument("--e2e-seconds", type=int, default=2, help="seconds per wrk run (default 2)")
    parser.add_argument("--e2e-rounds", type=int, default=7, help="wrk rounds per variant (default 7)")
    parser.add_argument(
        "--e2e-main-only", action="store_true", help="end to end: only the main case (uvicorn[standard])"
    )
    parser.add_argument("--sessions", type=int, help="sessions for the memory section (default 1000)")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure the guard of git commit REV (MemoryStore) beside today's: before and after",
    )
    parser.add_argument("--no-scaling", action="store_true", help="skip section 6 (cost as work grows)")
    parser.add_argument(
        "--stored", type=int, help="stored sessions of the cold-path table (default 100,000; smoke 2000)"
    )
    parser.add_argument(
        "--max-stored", type=int, help="largest stored-sessions row (default 1,000,000; smoke 1000)"
    )
    parser.add_argument(
        "--token-latency-ms", type=float, default=50, help="the token endpoint's latency in races (50)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile the hot path, in-process and in the server"
    )
    parser.add_argument(
        "--no-instructions", action="store_true", help="skip section 7 (instructions, under callgrind)"
    )
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.rounds = args.rounds or (3 if smoke else 21)
    args.requests = args.requests or (200 if smoke else 5000)
    args.warmup = 50 if smoke else 1000
    args.sessions = args.sessions or (20 if smoke else 1000)
    args.stored = args.stored or (2000 if smoke else 100_000)
    args.max_stored = args.max_stored or (1000 if smoke else 1_000_000)
    if smoke:
        args.no_e2e = True
        args.token_latency_ms = min(args.token_latency_ms, 20)
    return args


async def hot_path(args: argparse.Namespace, redis_url: str | None) -> dict[str, Any]:
    provider = _apps.make_provider()
    names = _variants(args, redis_url)
    builts = [await _apps.build(name, provider, redis_url=redis_url) for name in names]
    builts.append(await _inprocess.guard_alone(provider))
    client = None
    try:
        for built in builts:
            await _inprocess.check(built)
        extras = {}
        if redis_url:
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(redis_url)
            size = max([await client.strlen(key) async for key in client.scan_iter("bench:s:*")])
            await client.set("bench:probe", b"x" * size, ex=3600)
            extras["bare-redis-get"] = _inprocess.redis_get_app(client, "bench:probe")
        variants = await _inprocess.measure(
            builts, rounds=args.rounds, requests=args.requests, warmup=args.warmup, extras=extras
        )
        result: dict[str, Any] = {
            "path": _apps.PATH,
            "config": {"rounds": args.rounds, "requests": args.requests, "warmup": args.warmup},
            "variants": variants,
            "cookie_bytes": {b.name: len(b.cookie) for b in builts},
        }
        if client is not None:
            result["redis"] = await _inprocess.redis_costs(
                {b.name: b for b in builts},
                extras["bare-redis-get"],
                client,
                batches=max(10, args.rounds * args.requests // 500),
                batch=min(100, args.requests // 4),
                requests=args.requests,
            )
        if args.profile:
            guard_memory = next(b for b in builts if b.name == "guard-memory")
            result["profile"] = await _inprocess.profile(guard_memory, 4 * args.requests)
            print(result["profile"], file=sys.stderr)
            guard_noop = next(b for b in builts if b.name == "guard-noop")
            result["breakdown_ns"] = await _inprocess.breakdown(
                guard_noop, n=4 * args.requests, rounds=min(args.rounds, 7)
            )
        return result
    finally:
        if client is not None:
            await client.aclose()
        for built in builts:
            await built.aclose()


async def in_process(args: argparse.Namespace, redis_url: str | None, results: dict[str, Any]) -> None:
    _say(f"1. hot path in-process: {args.rounds} rounds x {args.requests} requests")
    results["hot_path"] = await hot_path(args, redis_url)
    latency = args.token_latency_ms / 1000
    racers = ["authlib", "guard-memory"] + (["guard-redis"] if redis_url else [])
    _say("3. stampede")
    results["stampede"] = [await _races.stampede(n, latency=latency, redis_url=redis_url) for n in racers]
    _say("4. duplicate callbacks")
    results["duplicate_callbacks"] = [
        await _races.duplicate_callbacks(n, latency=latency, redis_url=redis_url) for n in racers
    ]
    _say(f"5. memory per session: {args.sessions} sessions")
    memory: dict[str, Any] = {"memory_store": await _memory.memory_store(args.sessions)}
    if redis_url:
        memory["redis"] = await _memory.redis_store(args.sessions, redis_url)
    results["memory"] = memory
    if not args.no_scaling:
        _say("6. cost as work grows: stored sessions, cold path, cookie size, sign-ins, refresh")
        counts = [n for n in (1000, 10_000, 100_000, 1_000_000) if n <= args.max_stored]
        results["scaling"] = await _scaling.run(
            smoke=args.smoke,
            redis_url=redis_url,
            rounds=min(args.rounds, 7),
            requests=args.requests,
            stored=args.stored,
            counts=counts or [args.max_stored],
            before=bool(args.baseline),
        )


def end_to_end(args: argparse.Namespace, redis_url: str | None) -> dict[str, Any]:
    if args.no_e2e:
        return {"skipped": "smoke mode" if args.smoke else "--no-e2e"}
    if _e2e.ensure_wrk() is None:
        message = "wrk is missing and could not be installed (apt-get install wrk): no end-to-end section"
        print(f"!! {message}", file=sys.stderr)
        return {"skipped": message}
    variants = _variants(args, redis_url)
    cases = _e2e.CASES[:1] if args.e2e_main_only else _e2e.CASES
    _say(f"2. end to end: uvicorn + wrk, {len(cases)} cases, {args.e2e_rounds} rounds x {args.e2e_seconds} s")
    result = _e2e.measure(
        variants,
        redis_url=redis_url,
        rounds=args.e2e_rounds,
        seconds=args.e2e_seconds,
        warmup=2,
        cases=cases,
    )
    if args.profile:
        _say("2. profile in the server process: bare and guard-memory under wrk")
        profiled = ["bare", "guard-memory"] + (["guard-before"] if args.baseline else [])
        result["profile"] = _e2e.profile(profiled, redis_url=redis_url, seconds=4)
    return result


def instructions(args: argparse.Namespace, redis_url: str | None) -> dict[str, Any]:
    if args.no_instructions:
        return {"skipped": "--no-instructions"}
    if _instructions.valgrind() is None:
        message = "valgrind is missing (apt-get install valgrind): no instruction counts"
        print(f"!! {message}", file=sys.stderr)
        return {"skipped": message}
    where = "in-process" + ("" if args.smoke or args.no_e2e else " and under uvicorn")
    _say(f"7. instructions per request (callgrind), {where}")
    return _instructions.measure(
        requests=50 if args.smoke else 2000,
        seconds=10,
        redis_url=redis_url,
        before=bool(args.baseline),
        in_process_only=args.smoke or args.no_e2e,
        stored=2_000 if args.smoke else 100_000,
    )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    hot = results["hot_path"]["variants"]
    ratio = hot["guard-memory"]["ratio"]
    before = f" (before: {hot['guard-before']['ratio']:.2f}x)" if "guard-before" in hot else ""
    rows.append(
        {
            "target": "guard + MemoryStore hot path at most 1.25x bare (in-process)",
            "measured": f"{ratio:.2f}x{before}",
            "met": ratio <= 1.25,
        }
    )
    e2e = results["end_to_end"]
    if "variants" in e2e:
        got = e2e["variants"]
        guard, session = got["guard-memory"]["rps_ratio"], got["session"]["rps_ratio"]
        cpu = got["guard-memory"]["cpu_over_bare_us"]
        old = got.get("guard-before")
        rows.append(
            {
                "target": "uvicorn[standard] + wrk: guard + MemoryStore keeps at least 0.90x of bare's "
                "requests/s",
                "measured": f"guard {guard:.2f}x, SessionMiddleware {session:.2f}x"
                + (f" (before: {old['rps_ratio']:.2f}x)" if old else ""),
                "met": guard >= 0.90,
            }
        )
        rows.append(
            {
                "target": "uvicorn[standard] + wrk: server CPU per request at most bare + 15 µs",
                "measured": f"bare + {cpu:.0f} µs"
                + (f" (before: + {old['cpu_over_bare_us']:.0f} µs)" if old else ""),
                "met": cpu <= 15,
            }
        )
    else:
        rows.append({"target": "end to end", "measured": f"not measured ({e2e['skipped']})", "met": None})
    redis = results["hot_path"].get("redis")
    if redis:
        commands = redis["commands_per_request"]
        paired = redis["paired_us"]
        over = paired["guard-redis"] / paired["bare-redis-get"]
        rows.append(
            {
                "target": "RedisStore within 1.15x of a bare app making one Redis GET of the same size, "
                "one round trip",
                "measured": f"{over:.2f}x; {commands:.2f} Redis commands per request",
                "met": over <= 1.15 and abs(commands - 1) < 0.01,
            }
        )
    for row in results.get("scaling", {}).get("cold_path", []):
        if row["store"] == "memory-before":
            continue
        rows.append(
            {
                "target": f"cold path at most 1.5x the warm path ({row['store']}, {row['stored']:,} stored, "
                "random users)",
                "measured": f"{row['cold_vs_warm']:.2f}x"
                + "".join(
                    f" (before: {r['cold_vs_warm']:.2f}x)"
                    for r in results["scaling"]["cold_path"]
                    if r["store"] == "memory-before" and row["store"] == "memory"
                ),
                "met": row["cold_vs_warm"] <= 1.5,
            }
        )
    for s in results["stampede"]:
        if s["variant"].startswith("guard"):
            rows.append(
                {
                    "target": f"stampede makes 1 refresh ({_apps.LABELS[s['variant']]})",
                    "measured": f"{s['refresh_calls']} refresh, {s['working_tokens']}/{s['requests']} "
                    "answered with a live token",
                    "met": s["refresh_calls"] == 1 and s["working_tokens"] == s["requests"],
                }
            )
    for d in results["duplicate_callbacks"]:
        if d["variant"].startswith("guard"):
            rows.append(
                {
                    "target": "duplicate callbacks: 1 exchange, every tab logged in "
                    f"({_apps.LABELS[d['variant']]})",
                    "measured": f"{d['exchange_calls']} exchange, {d['working_tokens']}/{d['tabs']} "
                    "with a live token",
                    "met": d["exchange_calls"] == 1 and d["working_tokens"] == d["tabs"],
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    results: dict[str, Any] = {"mode": "smoke" if args.smoke else "full"}
    results["environment"] = _report.environment()
    if args.baseline:
        directory = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
        os.environ[_apps.BASELINE_DIR] = str(_servers.export_baseline(args.baseline, directory))
        results["baseline"] = args.baseline
    with _servers.redis_server() as found:
        redis_url = None if args.no_redis else found
        if redis_url is None and not args.no_redis:
            print("!! redis-server is not installed: the RedisStore rows are left out", file=sys.stderr)
        asyncio.run(in_process(args, redis_url, results))
        results["end_to_end"] = end_to_end(args, redis_url)
        results["instructions"] = instructions(args, redis_url)
    results["targets"] = targets(results)
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.output / f"{stamp}-{results['mode']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(_report.markdown(results))
    _say(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
