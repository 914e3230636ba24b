"""The re-login response: what a request gets when the user must sign in (again), and the 503 of an outage."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from typing import Literal
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp

from ._http import full_path, headers_map, is_browser_navigation, root_path
from ._paths import Prefixes, route_path
from ._protocol import safe_next
from ._reasons import MESSAGES, Reason

__all__ = ["ReloginHandler", "ReloginMode"]

ReloginHandler = Callable[[Request, Reason], "ASGIApp | Awaitable[ASGIApp]"]
"""A callable that gets the request and the reason and returns an ASGI response (or awaits one)."""

ReloginMode = Literal["auto", "redirect", "page", "json"]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

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


def login_url(scope_or_root: str, login_path: str, *, next_path: str, reason: Reason | None = None) -> str:
    query = {"next": next_path}
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
    ) -> None:
        self._mode = mode
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
            return sign_in_page(
                reason, login_url(root_path(scope), self._login_path, next_path=target), status=401
            )
        return JSONResponse(
            {"error": "login_required", "reason": reason.value, "login_url": url},
            status_code=401,
            headers={**NO_STORE, "WWW-Authenticate": 'Bearer realm="app", error="login_required"'},
        )


def sign_in_page(reason: Reason, url: str, *, status: int = 200) -> Response:
    message = html.escape(MESSAGES[reason])
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}
a.button{{display:inline-block;padding:.6rem 1.2rem;background:#2456d6;color:#fff;border-radius:.4rem;
text-decoration:none}}</style></head>
<body><h1>Sign in</h1><p id="reason" data-reason="{reason.value}">{message}</p>
<p><a class="button" id="sign-in" href="{html.escape(url)}">Sign in again</a></p></body></html>"""
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


def sign_out_page(action: str, token: str | None, *, status: int = 200) -> Response:
    """The sign-out confirm page: a POST form (no script), so that a link or an image from another site
    signs no one out. ``status`` 403 when the request that got it came from another site."""
    hidden = f'<input type="hidden" name="confirm" value="{html.escape(token)}">' if token else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign out</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}
button{{padding:.6rem 1.2rem;background:#2456d6;color:#fff;border:0;border-radius:.4rem;font:inherit}}</style>
</head><body><h1>Sign out</h1><p>Do you want to sign out?</p>
<form method="post" action="{html.escape(action)}">{hidden}<button id="sign-out">Sign out</button></form>
</body></html>"""
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


def unavailable(request: Request, message: str, *, retry_after: int, api_prefixes: Prefixes) -> Response:
    """503 with ``Retry-After``: the provider or the store is down. The session is kept."""
    headers = {**NO_STORE, "Retry-After": str(retry_after)}
    if is_browser_navigation(request.scope, api_prefixes, headers_map(request.scope)):
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Try again shortly</title></head>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto">
<h1>Try again shortly</h1><p>{html.escape(message)}</p></body></html>"""
        return HTMLResponse(page, status_code=503, headers=headers)
    return JSONResponse(
        {"error": "temporarily_unavailable", "message": message}, status_code=503, headers=headers
    )


def bad_request(message: str) -> Response:
    return JSONResponse({"error": "invalid_request", "message": message}, status_code=400, headers=NO_STORE)
