"""The uvicorn factory for the end-to-end section: ``uvicorn --factory benchmarks._serve:create_app``.

Reads ``BENCH_VARIANT``, ``BENCH_COOKIE_FILE``, (for guard-redis) ``BENCH_REDIS_URL`` and, optionally,
``BENCH_SETTINGS`` (JSON: more keyword arguments for the guard). At lifespan startup it signs a user in
through the app itself and writes the Cookie header to the file.

With ``BENCH_PROFILE`` set to a file name, SIGUSR1 starts a cProfile of the server process and SIGUSR2
stops it and writes the functions by own time to that file: the benchmark profiles only the load it
drives, not startup or sign-in.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

warnings.simplefilter("ignore", DeprecationWarning)  # Authlib 1.9 warns on import; expected here

from . import _apps  # noqa: E402

PROFILE_TOP = int(os.environ.get("BENCH_PROFILE_TOP", "30"))


def create_app() -> ASGIApp:
    variant = os.environ["BENCH_VARIANT"]
    cookie_file = Path(os.environ["BENCH_COOKIE_FILE"])
    settings = json.loads(os.environ.get("BENCH_SETTINGS") or "{}")
    provider = _apps.make_provider()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        cookie = "" if variant == "bare" else await _apps.sign_in(built, provider)
        partial = cookie_file.with_suffix(".partial")
        partial.write_text(cookie)
        partial.replace(cookie_file)
        yield
        await built.aclose()

    built = _apps.make(
        variant, provider, redis_url=os.environ.get("BENCH_REDIS_URL"), lifespan=lifespan, **settings
    )
    if os.environ.get("BENCH_PROFILE"):
        _profile_on_signals(Path(os.environ["BENCH_PROFILE"]))
    return built.app


def _profile_on_signals(out: Path) -> None:
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()

    def start(signum: int, frame: object) -> None:
        profiler.enable()

    def stop(signum: int, frame: object) -> None:
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(PROFILE_TOP)
        partial = out.with_suffix(".partial")
        partial.write_text(f"total_calls {stats.total_calls}\n{text.getvalue()}")  # type: ignore[attr-defined]
        partial.replace(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
