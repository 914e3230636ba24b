"""At most N refreshes in flight in this process, so that many sessions due at once (after an outage, a
deploy, a morning) do not hit the provider with thousands of token requests at the same instant.

A refresh starts only with a free slot. When every slot is taken, a session whose access token is still
valid is served with it and refreshes on a later request (it was only due, within the leeway); one whose
token has expired waits for a slot, in order, as long as the refresher's wait allows. So the queue
costs latency for expired sessions only, never a wave of 503s for sessions that still have a token.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio


class RefreshLimiter:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrent_refreshes must be at least 1, got {limit!r}")
        self.limit = limit
        self._limiter: anyio.CapacityLimiter | None = None  # made on first use, inside the event loop
        self.in_flight = 0
        self.peak = 0  # the most refreshes ever in flight at once (for tests and metrics)
        self.served_while_full = 0  # requests served their still-valid token because every slot was taken

    def _slots(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.limit)
        return self._limiter

    @property
    def full(self) -> bool:
        return self.in_flight >= self.limit or self._slots().available_tokens < 1

    @contextlib.asynccontextmanager
    async def slot(self, *, within: float) -> AsyncIterator[None]:
        """Hold one slot for the duration; waits (in order) while every slot is taken, up to ``within``
        seconds (then ``TimeoutError``)."""
        slots = self._slots()
        with anyio.fail_after(within):
            await slots.acquire()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            slots.release()
