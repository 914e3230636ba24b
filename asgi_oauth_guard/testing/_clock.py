from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that moves only when told to.

    Call it (or `now()`) for the current time in epoch seconds; `advance(seconds)` moves it forward.
    Pass it as `clock=` to the provider and to the code under test so token lifetimes expire on demand,
    without sleeping.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def now(self) -> float:
        """The current time, in epoch seconds."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError(f"FakeClock only moves forward; advance({seconds!r}) would go back in time")
        self._now += seconds
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
