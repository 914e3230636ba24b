from __future__ import annotations

import collections
import dataclasses
from types import TracebackType

import anyio

from ._records import ENDPOINTS, Endpoint

__all__ = ["Faults", "Hold", "check_endpoint"]


def check_endpoint(endpoint: str) -> Endpoint:
    for known in ENDPOINTS:
        if endpoint == known:
            return known
    raise ValueError(f"unknown endpoint {endpoint!r}; use one of {', '.join(ENDPOINTS)}")


class Hold:
    """A gate inside the provider: matching calls block in it until `release()`.

    Made by `OAuthTestProvider.hold(endpoint=...)`. Use it to line up concurrent calls deterministically::

        hold = provider.hold(endpoint="token")
        async with anyio.create_task_group() as tg:
            tg.start_soon(refresh_one)
            tg.start_soon(refresh_two)
            await hold.wait_entered(2)   # both calls are now inside the provider
            hold.release()

    It is also a context manager that releases on exit, so a failing test never leaves calls blocked.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint: Endpoint = endpoint
        self._entered = 0
        self._released = False
        self._release_event: anyio.Event | None = None
        self._waiters: list[tuple[int, anyio.Event]] = []

    @property
    def entered(self) -> int:
        """How many matching calls have entered so far, counting those let through after release."""
        return self._entered

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Let every blocked call, and every later one, through."""
        self._released = True
        if self._release_event is not None:
            self._release_event.set()

    async def wait_entered(self, n: int = 1) -> None:
        """Return once `n` calls have entered the hold. Wrap in `anyio.fail_after` to bound the wait."""
        if self._entered >= n:
            return
        event = anyio.Event()
        self._waiters.append((n, event))
        await event.wait()

    async def _block(self) -> None:
        self._entered += 1
        ready = [w for w in self._waiters if w[0] <= self._entered]
        self._waiters = [w for w in self._waiters if w[0] > self._entered]
        for _, event in ready:
            event.set()
        if self._released:
            return
        if self._release_event is None:
            self._release_event = anyio.Event()
        await self._release_event.wait()

    def __enter__(self) -> Hold:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Hold endpoint={self.endpoint!r} entered={self._entered} released={self._released}>"


@dataclasses.dataclass
class Faults:
    """The queued faults of one provider; each queue entry is spent by one call."""

    fail: dict[str, collections.deque[int]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(collections.deque)
    )
    timeout: dict[str, int] = dataclasses.field(default_factory=lambda: collections.defaultdict(int))
    slow: dict[str, collections.deque[float]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(collections.deque)
    )
    connect_error: int = 0
    holds: list[Hold] = dataclasses.field(default_factory=list)

    def take_fail(self, endpoint: str) -> int | None:
        queue = self.fail.get(endpoint)
        return queue.popleft() if queue else None

    def take_timeout(self, endpoint: str) -> bool:
        if self.timeout.get(endpoint, 0) > 0:
            self.timeout[endpoint] -= 1
            return True
        return False

    def take_slow(self, endpoint: str) -> float | None:
        queue = self.slow.get(endpoint)
        return queue.popleft() if queue else None

    def take_connect_error(self) -> bool:
        if self.connect_error > 0:
            self.connect_error -= 1
            return True
        return False

    def holds_for(self, endpoint: str) -> list[Hold]:
        # Released holds stay: calls still pass through them and count as entered.
        return [h for h in self.holds if h.endpoint == endpoint]
