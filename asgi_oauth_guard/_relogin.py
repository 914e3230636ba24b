"""The re-login response: what a request gets when the user must sign in (again)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp

from ._http import full_path, headers_map, is_browser_navigation, root_path
from ._pages import NO_STORE, Pages
from ._paths import Prefixes, route_path
from ._protocol import safe_next
from ._reasons import Reason

__all__ = ["NO_STORE", "ReloginHandler", "ReloginMode"]

ReloginHandler = Callable[[Request, Reason], "ASGIApp | Awaitable[ASGIApp]"]
"""A callable that gets the request and the reason and returns an ASGI response (or awaits one)."""

ReloginMode = Literal["auto", "redirect", "page", "json"]

# After these, sending the browser straight back to the provider could loop (a provider that keeps refusing,
# a store that loses transactions): the login route shows a page with a button instead.
STOP_REASONS = frozenset(
    {
        Reason.state_expired,
        Reason.access_denied,
        Reason.code_reused,
        Reason.code_expired,
        Reason.redirect_uri_mismatch,
        Reason.logged_out,
    }
)


def login_url(
    scope_or_root: str,
    login_path: str,
    *,
    next_path: str,
    reason: Reason | None = None,
    provider: str | None = None,
) -> str:
    query = {"next": next_path}
    if provider is not None:
        query["provider"] = provider
    if reason is not None:
        query["reason"] = reason.value
    return f"{scope_or_root}{login_path}?{urlencode(query)}"


class Relogin:
    """Builds the configured re-login response."""

    def __init__(
        self,
        *,
        mode: ReloginMode | ReloginHandler,
        login_path: str,
        api_prefixes: Prefixes,
        pages: Pages,
    ) -> None:
        self._mode = mode
        self._pages = pages
        self._login_path = login_path
        self._api_prefixes = api_prefixes

    async def response(self, request: Request, reason: Reason, *, next_path: str | None = None) -> ASGIApp:
        if callable(self._mode):
            result = self._mode(request, reason)
            return await result if isinstance(result, Awaitable) else result
        scope = request.scope
        # The page to come back to; when it could not be a next (too long, say), its path alone, or "/".
        target = (
            next_path
            if next_path is not None
            else safe_next(full_path(scope), default=safe_next(root_path(scope) + route_path(scope)))
        )
        url = login_url(root_path(scope), self._login_path, next_path=target, reason=reason)
        browser = is_browser_navigation(scope, self._api_prefixes, headers_map(scope))
        mode = self._mode
        if mode == "auto":
            mode = "redirect" if browser else "json"
        if mode == "redirect":
            return RedirectResponse(url, status_code=303, headers=NO_STORE)
        if mode == "page" and browser:
            return await self._pages.for_reason(
                request,
                reason,
                sign_in_url=login_url(root_path(scope), self._login_path, next_path=target),
                status=401,
            )
        return JSONResponse(
            {"error": "login_required", "reason": reason.value, "login_url": url},
            status_code=401,
            headers={**NO_STORE, "WWW-Authenticate": 'Bearer realm="app", error="login_required"'},
        )
