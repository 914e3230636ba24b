"""A MemoryStore lives in one process: say so when the app seems to run in several.

With several worker processes on a MemoryStore, a sign-in started in one worker and finished in another
finds no record of itself, and a session made in one worker is unknown to the others: users are sent to
sign in again and again, and nothing in the logs says why. So, on a MemoryStore:

- at start-up, when the server tells the process it has siblings, a WARNING;
- on each callback for an unknown sign-in and each signed cookie for an unknown session, a WARNING naming
  the likely cause and the fix, at most once a minute.

What a worker can see of its siblings: ``WEB_CONCURRENCY`` (read by gunicorn and uvicorn as the default
number of workers, and set by many platforms), and the server's command line: gunicorn's workers are forked
from the arbiter and keep its ``sys.argv``; uvicorn's are spawned by ``multiprocessing``, which hands the
parent's ``sys.argv`` to the child. Hypercorn the same. So ``--workers N``, ``-w N`` are seen in each worker.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence

logger = logging.getLogger("asgi_oauth_guard")

_SERVERS = ("gunicorn", "uvicorn", "hypercorn")
_FIX = (
    "each worker process has its own MemoryStore, so a sign-in or a session made in one worker is unknown "
    "to the others. Give the guard a store that all workers share: store=RedisStore.from_url(...) "
    "(or PostgresStore.from_url(...)), or run one worker process"
)


def sibling_workers(
    env: Mapping[str, str] | None = None, argv: Sequence[str] | None = None
) -> tuple[int, str] | None:
    """How many worker processes the server says it runs, and where it says so; ``None`` if one or unknown."""
    env = os.environ if env is None else env
    argv = sys.argv if argv is None else argv
    concurrency = env.get("WEB_CONCURRENCY", "").strip()
    if concurrency.isdigit() and int(concurrency) > 1:
        return int(concurrency), f"WEB_CONCURRENCY={concurrency}"
    program = " ".join(argv[:3]).lower()  # the server's script, or python -m <server>
    if not any(server in program for server in _SERVERS):
        return None
    for i, arg in enumerate(argv):
        value: str | None = None
        if arg in ("--workers", "-w") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        elif arg.startswith("-w") and arg[2:].isdigit():
            value = arg[2:]
        if value is not None and value.isdigit() and int(value) > 1:
            return int(value), f"{arg.partition('=')[0][:9]} {value}"
    return None


class WorkerAdvice:
    """The warnings of a guard on a MemoryStore (``active``); does nothing for a shared store."""

    def __init__(
        self,
        *,
        active: bool,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        env: Mapping[str, str] | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        self.active = active
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        if active:
            siblings = sibling_workers(env, argv)
            if siblings is not None:
                logger.warning(
                    "OAuthGuard runs on a MemoryStore in one of %d worker processes (%s): %s.",
                    siblings[0],
                    siblings[1],
                    _FIX,
                )

    def unknown(self, what: str) -> None:
        """A sign-in (``"sign-in"``) or a session (``"session"``) this process does not know; rate-limited."""
        if not self.active:
            return
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            return
        self._last = now
        logger.warning(
            "a %s this process does not know (MemoryStore). If several worker processes serve this app, "
            "that is the likely cause: %s. (Also seen after a restart, which empties a MemoryStore; "
            "this warning repeats at most every %.0f s.)",
            "callback for a sign-in" if what == "sign-in" else "signed cookie for a session",
            _FIX,
            self._interval,
        )
