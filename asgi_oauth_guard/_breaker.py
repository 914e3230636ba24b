"""A circuit breaker for the provider refusing this client itself (``invalid_client``,
``unauthorized_client``: a wrong secret after a deploy, a client disabled at the provider).

Such a refusal says nothing about any user, so no session ends over it; but every refresh would meet the
same refusal, so after one the process sends no refresh for ``cooldown`` seconds, then lets one probe
through: its success closes the breaker, another refusal opens it again.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio


class ClientBreaker:
    def __init__(self, *, cooldown: float, clock: Callable[[], float]) -> None:
        self._cooldown = cooldown
        self._clock = clock
        self._open_until: float | None = None
        self._probe: anyio.Event | None = None

    @property
    def open(self) -> bool:
        return self._open_until is not None

    async def allow(self) -> bool:
        """Whether a refresh may go to the provider now. Past the cooldown one caller probes, and the
        callers that come meanwhile wait for its answer (bounded by the token call's timeout): when the
        configuration is fixed, every user's next request works at once."""
        while self._open_until is not None:
            if self._probe is not None:
                await self._probe.wait()
                continue
            if self._clock() < self._open_until:
                return False
            self._probe = anyio.Event()
            return True
        return True

    def refused(self) -> None:
        """The provider refused this client: no refresh for the cooldown."""
        self._open_until = self._clock() + self._cooldown
        self._settle()

    def answered(self) -> None:
        """The provider answered something about the user (tokens, or their grant refused): all is well."""
        self._open_until = None
        self._settle()

    def inconclusive(self) -> None:
        """The call failed otherwise (the provider down): the next caller may probe."""
        self._settle()

    def _settle(self) -> None:
        if self._probe is not None:
            self._probe.set()
            self._probe = None
