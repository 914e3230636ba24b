"""An httpx Auth for the app's own calls to APIs: the current user's access token, refreshed once on 401."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from ._context import GuardState, current_state

__all__ = ["GuardAuth"]


class GuardAuth(httpx.Auth):
    """Attach the signed-in user's access token; when the API answers 401 ``invalid_token``,
    refresh the session once (shared with any concurrent refresh) and retry once.

    Without ``state=`` it uses the request the code runs in (:func:`current_state`).
    """

    def __init__(self, state: GuardState | None = None) -> None:
        self._state = state

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("GuardAuth works with httpx.AsyncClient only")
        yield request  # pragma: no cover

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        state = self._state or current_state()
        if state is None or state.identity is None:
            raise RuntimeError(
                "GuardAuth needs a signed-in user: use it while serving a request the guard passed"
            )
        identity = state.identity
        request.headers["Authorization"] = f"{identity.token_type} {identity.access_token}"
        response = yield request
        if response.status_code != 401 or "invalid_token" not in response.headers.get("www-authenticate", ""):
            return
        fresh = await state.guard.refresh_now(state, rejected_token=identity.access_token)
        request.headers["Authorization"] = f"{fresh.token_type} {fresh.access_token}"
        yield request
