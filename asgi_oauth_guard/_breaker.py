"""A circuit breaker for the provider refusing this client itself (``invalid_client``,
``unauthorized_client``: a wrong secret after a deploy, a client disabled at the provider).

Such a refusal says nothing about any user, so no session ends over it; but every refresh would meet the
same refusal, so after one the process sends no refresh for ``cooldown`` seconds, then lets one probe
through: its success closes the breaker, another refusal opens it again.
"""

from __future__ import annotations

from collections.abc import Callable


class ClientBreaker:
    def __init__(self, *, cooldown: float, clock: Callable[[], float]) -> None:
        self._cooldown = cooldown
        self._clock = clock
        self._open_until: float | None = None
        self._probing = False

    @property
    def open(self) -> bool:
        return self._open_until is not None

    def allow(self) -> bool:
        """Whether a refresh may go to the provider now. Past the cooldown, one caller (the probe) may."""
        if self._open_until is None:
            return True
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True
        return True

    def refused(self) -> None:
        """The provider refused this client: no refresh for the cooldown."""
        self._open_until = self._clock() + self._cooldown
        self._probing = False

    def answered(self) -> None:
        """The provider answered something about the user (tokens, or their grant refused): all is well."""
        self._open_until = None
        self._probing = False

    def inconclusive(self) -> None:
        """The call failed otherwise (the provider down): the next caller may probe."""
        self._probing = False
