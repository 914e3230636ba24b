"""The uvicorn factory for the end-to-end section: ``uvicorn --factory benchmarks._serve:create_app``.

Reads ``BENCH_VARIANT``, ``BENCH_COOKIE_FILE`` and (for guard-redis) ``BENCH_REDIS_URL``. At lifespan
startup it signs a user in through the app itself and writes the Cookie header to the file.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

warnings.simplefilter("ignore", DeprecationWarning)  # Authlib 1.9 warns on import; expected here

from . import _apps  # noqa: E402


def create_app() -> ASGIApp:
    variant = os.environ["BENCH_VARIANT"]
    cookie_file = Path(os.environ["BENCH_COOKIE_FILE"])
    provider = _apps.make_provider()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        cookie = "" if variant == "bare" else await _apps.sign_in(built, provider)
        partial = cookie_file.with_suffix(".partial")
        partial.write_text(cookie)
        partial.replace(cookie_file)
        yield
        await built.aclose()

    built = _apps.make(variant, provider, redis_url=os.environ.get("BENCH_REDIS_URL"), lifespan=lifespan)
    return built.app
