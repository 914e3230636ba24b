"""The machine and versions a run used, and the results as markdown tables."""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from typing import Any

from . import _instructions
from ._apps import LABELS
from ._servers import REPO, redis_version

_PACKAGES = (
    "asgi-oauth-guard",
    "starlette",
    "authlib",
    "httpx",
    "uvicorn",
    "redis",
    "itsdangerous",
    "cryptography",
    "orjson",  # the speedups extra: the guard reads and writes its records with it when installed
    "anyio",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def environment() -> dict[str, Any]:
    wrk = shutil.which("wrk")
    wrk_version = None
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        wrk_version = (out.stdout or out.stderr).split("Copyright")[0].strip() or None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in _PACKAGES},
        "uvicorn_loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "uvicorn_http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "redis_server": redis_version(),
        "wrk": wrk_version,
        "git": _git(),
    }


def _instructions_section(counted: dict[str, Any]) -> str:
    text = (
        "### 7. Instructions per request (valgrind's callgrind; the same on every run, whatever the "
        "machine's load)\n\n"
        f"In-process: the raw driver, {counted['requests']:,} requests with a browser's headers. Under "
        f"uvicorn[standard]: the whole server process while wrk -c32 drives it for {counted['seconds']:g} s "
        "(event loop, HTTP parser and app), per request wrk counted. Instructions are not time (a cache "
        "miss costs more than an add): they say how much work there is, exactly."
    )
    served = counted.get("served", {})
    rows = []
    for name, count in counted["in_process"].items():
        row = [
            _label(name),
            f"{count:,}",
            f"{counted['in_process_ratio'][name]:.3f}x",
            f"{counted['in_process_over_bare'][name]:+,}",
        ]
        if name in served:
            row += [
                f"{served[name]:,}",
                f"{counted['served_ratio'][name]:.3f}x",
                f"{counted['served_over_bare'][name]:+,}",
            ]
        else:
            row += ["-", "-", "-"]
        rows.append(row)
    header = ["variant", "in-process", "vs bare", "over bare"]
    header += ["under uvicorn", "vs bare", "over bare"]
    text += "\n\n" + _table(header, rows)
    cold = counted.get("cold_path")
    if cold is not None:
        text += (
            f"\n\nThe cold path (guard, MemoryStore, {cold['stored']:,} sessions stored, caches full): "
            f"{cold['warm']:,} instructions per request from 100 users, {cold['cold']:,} from random ones "
            f"(**{cold['cold_vs_warm']:.2f}x**; the target, 1.5x, is in time, where the memory a random "
            "session lives in counts too)."
        )
        sim = cold.get("simulated")
        if sim is not None:
            text += (
                " What callgrind's cache and branch simulations (its model of this machine's caches, and a "
                "simple predictor) say of the same requests, per request:\n\n"
                + _table(["per request", "warm", "cold", "cold / warm"], _simulated_rows(cold, sim))
            )
    return text


def _simulated_rows(cold: dict[str, Any], sim: dict[str, dict[str, float]]) -> list[list[str]]:
    rows = [["instructions", f"{cold['warm']:,}", f"{cold['cold']:,}", f"{cold['cold_vs_warm']:.2f}x"]]
    for name, (label, _) in _instructions.SIMULATED.items():
        warm, cold_count = sim["warm"][name], sim["cold"][name]
        ratio = f"{cold_count / warm:.2f}x" if warm else "-"
        rows.append([label, f"{warm:,.0f}", f"{cold_count:,.0f}", ratio])
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _yes(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    parts = [
        f"Run {env['date']} ({results['mode']} mode) on {env['nproc']} CPUs ({env['cpu']}), "
        f"{env['implementation']} {env['python']}, {env['platform']}; git {env['git'] or 'unknown'}.",
        f"Packages: {packages}; redis-server {env['redis_server'] or 'not installed'}; "
        f"{env['wrk'] or 'wrk not installed'}; "
        f"uvicorn on {env['uvicorn_loop']} + {env['uvicorn_http']}.",
    ]

    hot = results.get("hot_path")
    if hot:
        config = hot["config"]
        parts.append(
            f"### 1. Hot path, in-process (raw ASGI driver)\n\nOne authenticated GET {hot['path']} with a "
            f"fresh token. Median of {config['rounds']} interleaved rounds of {config['requests']} "
            "requests; ratio = median over rounds of variant / bare in the same round."
        )
        rows = []
        for name, row in hot["variants"].items():
            ratio = f"{row['ratio']:.2f}x" if "ratio" in row else "-"
            cookie = str(hot["cookie_bytes"].get(name, "")) if name in hot["cookie_bytes"] else "-"
            rows.append([_label(name), f"{row['us_median']:.1f}", ratio, cookie])
        parts.append(_table(["variant", "µs / request", "vs bare", "Cookie header bytes"], rows))
        redis = hot.get("redis")
        if redis:
            calls = redis["calls_per_request"]
            parts.append(
                f"Redis: {redis['commands_per_request']:.2f} Redis commands per request. Measured in "
                "alternating batches: one redis-py GET of a session-sized value costs "
                f"{redis['get_us']:.1f} µs inside a bare Starlette app; the guard with Redis costs "
                f"{redis['guard_over_bare_get_us']:.1f} µs more than that app, the guard with memory "
                f"{redis['guard_over_bare_us']:.1f} µs more than the bare one. Python calls per request "
                f"(cProfile): guard + Redis {calls['guard-redis']:.0f}, bare + GET "
                f"{calls['bare-redis-get']:.0f}, guard + memory {calls['guard-memory']:.0f}, "
                f"bare {calls['bare']:.0f}."
            )

    steps = (hot or {}).get("breakdown_ns")
    if steps:
        parts.append(
            "Where the guard's own time goes (each step timed alone, ns; `--profile`):\n\n"
            + _table(["step", "ns"], [[label, f"{ns:.0f}"] for label, ns in steps.items()])
        )

    e2e = results.get("end_to_end")
    if e2e and "skipped" in e2e:
        parts.append(f"### 2. End to end\n\nSkipped: {e2e['skipped']}")
    elif e2e:
        parts.append(
            f"### 2. End to end (uvicorn, one worker; wrk -t{e2e['threads']} -c{e2e['connections']}, "
            f"{e2e['seconds']:g} s x {e2e['rounds']} interleaved rounds, medians)"
            + (f"\n\n{e2e['cases'][0]['server']}; {e2e['cases'][0]['request']}." if e2e.get("cases") else "")
        )
        rows = []
        for name, row in e2e["variants"].items():
            bad = str(row["non_2xx"]) + (f"; {row['socket_errors'][0]}" if row["socket_errors"] else "")
            rows.append(
                [
                    _label(name),
                    f"{row['rps_median']:.0f}",
                    f"{row.get('rps_ratio', 1):.2f}x",
                    f"{row['p99_ms_median']:.2f}",
                    f"{row.get('p99_ratio', 1):.2f}x",
                    f"{row['server_cpu_us_median']:.0f}",
                    f"{row.get('cpu_ratio', 1):.2f}x",
                    bad,
                ]
            )
        header = ["variant", "requests/s", "vs bare", "p99 ms", "p99 vs bare"]
        header += ["server CPU µs/request", "CPU vs bare", "non-2xx"]
        parts.append(_table(header, rows))
        cases = e2e.get("cases", [])
        if cases:
            parts.append(_cases_section(cases))
        if e2e.get("profile"):
            parts.append(_profile_section(e2e["profile"]))

    stampede = results.get("stampede")
    if stampede:
        first = stampede[0]
        parts.append(
            f"### 3. Stampede: {first['requests']} concurrent requests, one session, expired token\n\n"
            f"Token endpoint latency {first['token_latency_ms']:.0f} ms; refresh tokens rotate, reuse "
            "revokes the grant."
        )
        rows = [
            [
                _label(s["variant"]),
                str(s["refresh_calls"]),
                str(s["invalid_grant"]),
                f"{s['answered_200']} / {s['requests']}",
                str(s["working_tokens"]),
                _yes(s["signed_in_after"]),
                f"{s['wall_ms']:.1f}",
            ]
            for s in stampede
        ]
        parts.append(
            _table(
                [
                    "variant",
                    "refresh calls",
                    "invalid_grant",
                    "answered 200",
                    "200s with a live token",
                    "still signed in after",
                    "wall ms",
                ],
                rows,
            )
        )

    duplicates = results.get("duplicate_callbacks")
    if duplicates:
        first = duplicates[0]
        parts.append(
            f"### 4. Duplicate callbacks: one callback URL loaded by {first['tabs']} tabs at once\n\n"
            f"Token endpoint latency {first['token_latency_ms']:.0f} ms; a reused code revokes the grant."
        )
        rows = [
            [
                _label(d["variant"]),
                str(d["exchange_calls"]),
                str(d["invalid_grant"]),
                f"{d['logged_in']} / {d['tabs']}",
                f"{d['working_tokens']} / {d['tabs']}",
                f"{d['wall_ms']:.1f}",
            ]
            for d in duplicates
        ]
        parts.append(
            _table(
                [
                    "variant",
                    "code exchanges",
                    "invalid_grant",
                    "tabs logged in",
                    "tabs with a live token",
                    "wall ms",
                ],
                rows,
            )
        )

    memory = results.get("memory")
    if memory:
        parts.append(_memory_section(memory))

    scaling = results.get("scaling")
    if scaling:
        parts.append(_scaling_section(scaling))

    counted = results.get("instructions")
    if counted and "skipped" in counted:
        parts.append(f"### 7. Instructions per request\n\nSkipped: {counted['skipped']}")
    elif counted:
        parts.append(_instructions_section(counted))

    targets = results.get("targets")
    if targets:
        parts.append("### Targets (issue 21)")
        parts.append(
            _table(
                ["target", "measured", "met"],
                [[t["target"], t["measured"], _yes(t["met"])] for t in targets],
            )
        )
    return "\n\n".join(parts) + "\n"


def _memory_section(memory: dict[str, Any]) -> str:
    rows: list[list[str]] = []
    mem = memory.get("memory_store")
    if mem:
        kinds = ", ".join(f"{k} {v:.0f}" for k, v in mem["by_kind_per_login"].items())
        rows.append(["MemoryStore: the session entry", f"{mem['session_bytes']:.0f}", "sealed JSON + entry"])
        rows.append(
            [
                "MemoryStore: all entries per login",
                f"{mem['store_bytes_per_login']:.0f}",
                f"until their TTLs: {kinds}; with the table and expiry heap",
            ]
        )
        caches = mem["hot_path_caches_per_session"]
        rows.append(
            [
                "guard's in-process hot-path caches",
                f"{caches['total']:.0f}",
                ", ".join(f"{k} {v:.0f}" for k, v in caches.items() if k != "total")
                + " (bounded: 10,000 cookies)",
            ]
        )
    red = memory.get("redis")
    if red:
        kinds = ", ".join(f"{k} {v:.0f}" for k, v in red["by_kind_per_login"].items())
        rows.append(
            [
                "Redis: the session key (MEMORY USAGE)",
                f"{red['session_bytes']:.0f}",
                f"value {red['session_value_bytes']:.0f} bytes",
            ]
        )
        rows.append(["Redis: all keys per login (MEMORY USAGE)", f"{red['keys_bytes_per_login']:.0f}", kinds])
        rows.append(
            ["Redis: used_memory growth per login", f"{red['used_memory_per_login']:.0f}", "INFO memory"]
        )
    n = (mem or red or {}).get("sessions", 0)
    return f"### 5. Memory per session ({n} sessions, each from a new browser)\n\n" + _table(
        ["where", "bytes", "notes"], rows
    )


def _range(values: list[float], unit: str = "", digits: int = 2) -> str:
    return f"{values[0]:.{digits}f}{unit}..{values[1]:.{digits}f}{unit}"


def _cases_section(cases: list[dict[str, Any]]) -> str:
    rows = []
    for case in cases:
        bare = case["variants"].get("bare")
        for name in ("guard-memory", "guard-before"):
            guard = case["variants"].get(name)
            if bare is None or guard is None:
                continue
            rows.append(
                [
                    case["server"],
                    case["request"],
                    "before" if name == "guard-before" else "now",
                    f"{bare['rps_median']:.0f}",
                    f"{guard['rps_ratio']:.2f}x ({_range(guard['rps_ratio_range'])})",
                    f"{bare['server_cpu_us_median']:.0f}",
                    f"+{guard['cpu_over_bare_us']:.0f} ({_range(guard['cpu_over_bare_us_range'], digits=0)})",
                ]
            )
    header = ["server", "request", "guard", "bare requests/s", "guard vs bare (range)"]
    header += ["bare CPU µs/request", "guard CPU over bare µs (range)"]
    return "What the request and the server change (guard, MemoryStore; same run):\n\n" + _table(header, rows)


def _short_paths(text: str) -> str:
    """Profile lines without this machine's directories (site-packages, the stdlib, the checkout)."""
    text = re.sub(r"/[^\s(]*/site-packages/", "", text)
    text = re.sub(r"/[^\s(]*/lib/(python3\.\d+/)", r"\1", text)
    return re.sub(r"/[^\s(]*?/(asgi_oauth_guard\w*/|benchmarks/)", r"\1", text)


def _profile_section(profile: dict[str, Any], lines: int = 22) -> str:
    parts = ["cProfile in the uvicorn process under wrk (by own time; cProfile inflates every call):"]
    for name, got in profile.items():
        body = _short_paths("\n".join(got["top"].splitlines()[:lines]))
        parts.append(
            f"{_label(name)}: {got['calls_per_request']:.0f} Python calls per request\n\n```\n{body}\n```"
        )
    return "\n\n".join(parts)


def _ratio(value: float, span: list[float]) -> str:
    return f"{value:.2f}x ({_range(span)})"


def _scaling_section(scaling: dict[str, Any]) -> str:
    store = {"memory": "MemoryStore", "redis": "RedisStore", "memory-before": "MemoryStore, before"}
    base = {"memory": "bare Starlette", "redis": "bare Starlette + one Redis GET"}
    parts = ["### 6. Cost as work grows (in-process, ratios per round to the app named)"]
    rows = [
        [
            store[r["store"]],
            f"{r['stored']:,}",
            f"{r['guard_us']:.1f}",
            base[r["store"]],
            _ratio(r["vs_bare"], r["vs_bare_range"]),
        ]
        for r in scaling["stored_sessions"]
    ]
    parts.append(
        "Stored sessions: requests from 100 signed-in users while N sessions are stored.\n\n"
        + _table(["store", "sessions stored", "guard µs", "compared with", "guard vs it (range)"], rows)
    )
    rows = [
        [
            store[r["store"]],
            f"{r['stored']:,}",
            f"{r['warm_us']:.1f}",
            f"{r['cold_us']:.1f}",
            _ratio(r["cold_vs_warm"], r["cold_vs_warm_range"]),
            f"{r['warm_vs_bare']:.2f}x / {r['cold_vs_bare']:.2f}x",
            f"{r['warm_gc_us']:.1f} / {r['cold_gc_us']:.1f}",
        ]
        for r in scaling["cold_path"]
    ]
    parts.append(
        "Cold path: each request from a random one of the stored sessions (the guard keeps 10,000), "
        "against the warm path (100 users) in the same rounds, after twice as many random requests as "
        "there are sessions (at most 200,000: caches full) and with no collection forced between rounds, "
        "as in a server that has been up for a while. GC: the µs per request the garbage "
        "collector took (`gc.callbacks`; the mean over rounds), included in the request's.\n\n"
        + _table(
            [
                "store",
                "sessions stored",
                "warm µs",
                "cold µs",
                "cold vs warm (range)",
                "warm / cold vs bare",
                "GC µs warm / cold",
            ],
            rows,
        )
    )
    rows = [
        [
            f"{r['others']:,}",
            f"{r['cookie_bytes']:,}",
            f"{r['guard_us']:.1f}",
            _ratio(r["vs_bare"], r["vs_bare_range"]),
        ]
        for r in scaling["cookie_sizes"]
    ]
    parts.append(
        "Cookie header size: the app's other cookies, sent to bare and guard alike.\n\n"
        + _table(["other cookies, bytes", "Cookie header bytes", "guard µs", "guard vs bare (range)"], rows)
    )
    s = scaling["sign_ins"]
    parts.append(
        f"Sign-ins ({s['sign_ins']} from new browsers: login, authorize, callback; discovery, keys cached): "
        f"the guard's own {s['guard_us']:.0f} µs each ({_range(s['guard_us_range'], digits=0)}), "
        f"**{s['per_second_per_core']:.0f} sign-ins per second per core**; the provider's "
        f"{s['provider_us']:.0f} µs (its transport and authorize step, in this process) taken out."
    )
    rows = [
        [
            store[r["store"]],
            f"{r['refreshes']} / {r['requests']}",
            f"{r['own_us']:.0f} ({_range(r['own_us_range'], digits=0)})",
            f"{r['provider_us']:.0f}",
            f"{r['warm_us']:.1f}",
        ]
        for r in scaling["refresh"]
    ]
    parts.append(
        "Refresh: requests whose access token is due, each refreshing it (lock, session read again, the "
        "refresh token's claim, its result, the session written, unlock).\n\n"
        + _table(
            ["store", "refreshes / requests", "own µs (range)", "provider µs taken out", "warm request µs"],
            rows,
        )
    )
    return "\n\n".join(parts)
