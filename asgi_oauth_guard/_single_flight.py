"""One call in flight per key in this process: concurrent callers of the same key share its result.

The store lock does the same across processes; this keeps the callers of one process from queueing on
that lock one by one (each would poll the store), and from each waiting for a slot of the limiter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio

from ._errors import GuardError, ProviderUnavailable

T = TypeVar("T")


@dataclasses.dataclass
class _Flight(Generic[T]):
    done: anyio.Event
    result: T | None = None
    error: BaseException | None = None


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}

    async def run(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``'s result, or that of the call already in flight for ``key``. A guard error is raised
        to every caller; any other failure to the one that ran it (the others get ``ProviderUnavailable``:
        a cancelled caller's cancellation is its own)."""
        flight = self._flights.get(key)
        if flight is not None:
            await flight.done.wait()
            if flight.error is not None:
                if isinstance(flight.error, GuardError):
                    raise flight.error
                raise ProviderUnavailable("the token request this call waited for failed")
            return flight.result  # type: ignore[return-value]
        flight = _Flight(done=anyio.Event())
        self._flights[key] = flight
        try:
            flight.result = await call()
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            del self._flights[key]
            flight.done.set()
