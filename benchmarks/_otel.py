"""The hot path with the ``otel`` extra: ``OAuthGuard(telemetry=GuardTelemetry(...))`` against no telemetry.

Three guards (MemoryStore, around the same minimal app) serve one signed-in user's GET with a fresh token:
without telemetry, with ``GuardTelemetry`` on OpenTelemetry's no-op meter and tracer providers, and with
the SDK's providers (an in-memory metric reader, a tracer with no exporter). Interleaved rounds, medians of
the per-round ratios to the guard without telemetry; and Python calls per request counted by cProfile,
which no noise moves.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from typing import Any

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracerProvider

from asgi_oauth_guard.otel import GuardTelemetry

from . import _apps
from ._driver import http_scope, timed
from ._inprocess import calls_per_request, check, identity_app

VARIANTS = {
    "none": "guard, no telemetry",
    "noop": "guard + GuardTelemetry, no-op providers",
    "sdk": "guard + GuardTelemetry, SDK providers",
}


def telemetry(name: str) -> GuardTelemetry | None:
    if name == "noop":
        return GuardTelemetry(meter_provider=NoOpMeterProvider(), tracer_provider=NoOpTracerProvider())
    if name == "sdk":
        meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
        return GuardTelemetry(meter_provider=meters, tracer_provider=TracerProvider())
    return None


async def measure(*, rounds: int, requests: int) -> dict[str, Any]:
    provider = _apps.make_provider()
    builts = {
        name: await _apps.build("guard-memory", provider, app=identity_app, telemetry=telemetry(name))
        for name in VARIANTS
    }
    try:
        scopes = {name: http_scope(built.cookie) for name, built in builts.items()}
        for name, built in builts.items():
            await check(built)
            await timed(built.app, scopes[name], requests // 5)  # warm up
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        order = list(VARIANTS)
        for _ in range(rounds):
            for name in order:
                times[name].append(await timed(builts[name].app, scopes[name], requests) / requests * 1e6)
            order = order[1:] + order[:1]
        calls = {name: await calls_per_request(builts[name].app, scopes[name], 200) for name in VARIANTS}
    finally:
        for built in builts.values():
            await built.aclose()
    return {
        name: {
            "us_median": statistics.median(times[name]),
            "ratio": statistics.median(t / base for t, base in zip(times[name], times["none"], strict=True)),
            "calls_per_request": calls[name],
        }
        for name in VARIANTS
    }


def table(results: dict[str, Any]) -> str:
    lines = ["| variant | µs / request | vs no telemetry | Python calls / request |", "|---|---|---|---|"]
    for name, label in VARIANTS.items():
        row = results[name]
        lines.append(
            f"| {label} | {row['us_median']:.1f} | {row['ratio']:.3f} | {row['calls_per_request']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.otel", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few iterations: a quick check")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 21; smoke 3)")
    parser.add_argument("--requests", type=int, help="requests per round, each (default 5000; smoke 200)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.smoke else 21)
    requests = args.requests or (200 if args.smoke else 5000)
    results = asyncio.run(measure(rounds=rounds, requests=requests))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
