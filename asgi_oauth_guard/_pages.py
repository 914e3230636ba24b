"""The pages the guard shows people: one design, replaceable by a hook, with texts that can be translated.

Every page is plain semantic HTML with its styles inline (no external asset, no JavaScript), a ``lang``, one
``h1``, a link back to the app, visible focus, AA contrast in light and dark schemes. API clients never get
these: they get JSON with the same meaning.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp

from ._errors import ConfigurationError
from ._http import headers_map, is_browser_navigation, root_path
from ._paths import Prefixes
from ._reasons import MESSAGES, Reason

__all__ = ["DEFAULT_PAGE_TEXTS", "Page", "PageHook", "PageKind"]

PageKind = Literal[
    "chooser",
    "sign_in",
    "cancelled",
    "failed",
    "misconfigured",
    "signed_out",
    "logout_confirm",
    "unavailable",
    "refused",
]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# The guard's pages load nothing and run nothing: a strict policy costs nothing and blunts any injection.
# It replaces the frame-ancestors policy _headers.own adds to the guard's other answers, so it says it too.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"

DEFAULT_PAGE_TEXTS: Mapping[str, str] = {
    "lang": "en",
    "home": "Back to the app",
    "sign_in.title": "Sign in",
    "sign_in.button": "Sign in",
    "sign_in.again": "Sign in again",
    "cancelled.title": "Sign-in cancelled",
    "failed.title": "Sign-in did not complete",
    "failed.callback_empty": (
        "This address is where the sign-in service sends you back after you sign in, and nothing came "
        "with this visit. Start the sign-in from the app."
    ),
    "failed.bad_request": "The sign-in response could not be read. Start the sign-in again.",
    "failed.bad_link": "This sign-in or sign-out link could not be read. Start again from the app.",
    "failed.wrong_issuer": "The sign-in response came from an unexpected issuer. Start the sign-in again.",
    "misconfigured.title": "Sign-in is misconfigured",
    "misconfigured.message": (
        "Sign-in is not set up correctly for this site, so it cannot work right now. Signing in again "
        "will not help: the site's administrators can see what to fix in its logs."
    ),
    "signed_out.title": "Signed out",
    "logout_confirm.title": "Sign out?",
    "logout_confirm.message": "Do you want to sign out of this site?",
    "logout_confirm.button": "Sign out",
    "refused.title": "Sign-in refused",
    "refused.step_up": (
        "The sign-in service did not confirm the recent or stronger sign-in this page needs. "
        "Please sign in again."
    ),
    "chooser.title": "Choose how to sign in",
    "chooser.message": "Sign in with one of these:",
    "unavailable.title": "Try again shortly",
    "unavailable.button": "Try again",
    "unavailable.provider": "Sign-in is briefly unavailable. Try again shortly.",
    "unavailable.session_kept": "Sign-in is briefly unavailable; your session is kept. Try again shortly.",
    "unavailable.provider_trouble": "The sign-in service is having trouble. Please try again in a moment.",
    "unavailable.no_answer": "The sign-in service did not answer. Please sign in again in a moment.",
    "unavailable.busy": "Too many sign-ins are being completed at once. Reload the page.",
    "unavailable.completing": "The sign-in is still being completed. Reload the page.",
    **{f"reason.{reason.value}": text for reason, text in MESSAGES.items()},
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Page:
    """A page the guard is about to show: what a ``pages=`` hook gets.

    ``kind`` says which page; ``reason`` why the user must sign in (again), when that is the cause;
    ``message`` the sentence the guard would show (already translated by ``page_texts``); ``status`` the
    HTTP status it would answer. ``sign_in_url`` is the link to sign in (again), ``home_url`` the app,
    ``action_url`` a form's target (sign-out confirmation) and ``hidden`` its hidden fields (name, value),
    ``choices`` the providers to choose from (name and sign-in URL). ``request`` is the request answered.
    """

    kind: PageKind
    reason: Reason | None
    message: str
    status: int
    request: Request
    home_url: str
    sign_in_url: str | None = None
    action_url: str | None = None
    hidden: tuple[tuple[str, str], ...] = ()
    choices: tuple[tuple[str, str], ...] = ()


PageHook = Callable[[Page], "ASGIApp | Awaitable[ASGIApp] | None"]
"""A callable that gets a :class:`Page` and returns an ASGI response (or awaits one); ``None`` keeps the
guard's own page for that kind."""

_REASON_KINDS: Mapping[Reason, PageKind] = {
    Reason.login_required: "sign_in",
    Reason.session_expired: "sign_in",
    Reason.refresh_rejected: "sign_in",
    Reason.reauthentication_required: "sign_in",
    Reason.mfa_required: "sign_in",
    Reason.access_denied: "cancelled",
    Reason.logged_out: "signed_out",
    Reason.state_expired: "failed",
    Reason.code_reused: "failed",
    Reason.code_expired: "failed",
    Reason.redirect_uri_mismatch: "failed",
}


class Pages:
    """Builds the guard's pages (or the hook's), and their JSON twins for API clients."""

    def __init__(
        self, *, hook: PageHook | None, texts: Mapping[str, str] | None, api_prefixes: Prefixes
    ) -> None:
        if hook is not None and not callable(hook):
            raise ConfigurationError("pages= must be a callable that gets a Page and returns a response")
        unknown = sorted(set(texts or {}) - set(DEFAULT_PAGE_TEXTS))
        if unknown:
            raise ConfigurationError(
                f"page_texts= has unknown message ids {unknown}; "
                f"known ids: {', '.join(sorted(DEFAULT_PAGE_TEXTS))}"
            )
        if any(not isinstance(v, str) for v in (texts or {}).values()):
            raise ConfigurationError("page_texts= values must be strings")
        self._hook = hook
        self._texts = {**DEFAULT_PAGE_TEXTS, **(texts or {})}
        self._api_prefixes = api_prefixes

    def text(self, message_id: str) -> str:
        return self._texts[message_id]

    def wants_page(self, request: Request) -> bool:
        return is_browser_navigation(request.scope, self._api_prefixes, headers_map(request.scope))

    async def page(
        self,
        request: Request,
        kind: PageKind,
        *,
        message: str,
        status: int = 200,
        reason: Reason | None = None,
        sign_in_url: str | None = None,
        action_url: str | None = None,
        hidden: Sequence[tuple[str, str]] = (),
        choices: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> ASGIApp:
        page = Page(
            kind=kind,
            reason=reason,
            message=message,
            status=status,
            request=request,
            home_url=(root_path(request.scope) or "") + "/",
            sign_in_url=sign_in_url,
            action_url=action_url,
            hidden=tuple(hidden),
            choices=tuple(choices),
        )
        if self._hook is not None:
            result = self._hook(page)
            if isinstance(result, Awaitable):
                result = await result
            if result is not None:
                return result
        body = render(page, self._texts)
        return HTMLResponse(
            body,
            status_code=status,
            headers={**NO_STORE, "Content-Security-Policy": PAGE_CSP, **(headers or {})},
        )

    async def for_reason(
        self, request: Request, reason: Reason, *, sign_in_url: str, status: int = 200
    ) -> ASGIApp:
        """The page of a reason to sign in (again): sign in, cancelled, failed, signed out."""
        return await self.page(
            request,
            _REASON_KINDS[reason],
            message=self.text(f"reason.{reason.value}"),
            status=status,
            reason=reason,
            sign_in_url=sign_in_url,
        )

    async def unavailable(
        self, request: Request, message_id: str, *, retry_after: int, sign_in_url: str | None = None
    ) -> ASGIApp:
        """503 with ``Retry-After``: the provider or the store is down. The session is kept.

        The page's button reloads the page, or starts a new sign-in (``sign_in_url``) where reloading
        would only repeat the answer (a callback whose code may be spent)."""
        headers = {**NO_STORE, "Retry-After": str(retry_after)}
        message = self.text(message_id)
        if self.wants_page(request):
            return await self.page(
                request, "unavailable", message=message, status=503, headers=headers, sign_in_url=sign_in_url
            )
        return JSONResponse(
            {"error": "temporarily_unavailable", "message": message}, status_code=503, headers=headers
        )

    async def misconfigured(self, request: Request) -> ASGIApp:
        """502: the provider refuses the app's sign-in settings (the log says what to fix); retrying will not
        help. Not a 500: the guard itself never answers one, so a 500 always points at the app."""
        message = self.text("misconfigured.message")
        if self.wants_page(request):
            return await self.page(request, "misconfigured", message=message, status=502)
        return JSONResponse({"error": "misconfigured", "message": message}, status_code=502, headers=NO_STORE)

    async def refused(self, request: Request, message: str, *, sign_in_url: str) -> ASGIApp:
        """403: the app (its ``on_login``) or a step-up check turned this sign-in away; ``message`` says
        why, to the user. JSON ``{"error": "access_denied", "message": ...}`` for API clients."""
        if self.wants_page(request):
            return await self.page(
                request, "refused", message=message, status=403, sign_in_url=sign_in_url, headers=NO_STORE
            )
        return JSONResponse({"error": "access_denied", "message": message}, status_code=403, headers=NO_STORE)

    async def bad_request(
        self, request: Request, message: str, *, page_message_id: str = "failed.bad_request", sign_in_url: str
    ) -> ASGIApp:
        """400: JSON with ``message`` for API clients; for people, the "did not complete" page."""
        if self.wants_page(request):
            return await self.page(
                request, "failed", message=self.text(page_message_id), status=400, sign_in_url=sign_in_url
            )
        return bad_request(message)


def bad_request(message: str) -> Response:
    return JSONResponse({"error": "invalid_request", "message": message}, status_code=400, headers=NO_STORE)


_STYLE = """
:root{color-scheme:light dark;--bg:#f4f5f7;--card:#fff;--text:#1b1f24;--muted:#4a5260;--accent:#1d4ed8;
--on-accent:#fff;--line:#d5d9e0;--focus:#1b1f24}
@media (prefers-color-scheme:dark){:root{--bg:#0f1115;--card:#1a1d23;--text:#e8eaed;--muted:#b4bac4;
--accent:#8ab4f8;--on-accent:#0f1115;--line:#343a44;--focus:#e8eaed}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;padding:1.5rem;
background:var(--bg);color:var(--text);font:1rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{width:100%;max-width:30rem;background:var(--card);border:1px solid var(--line);border-radius:.75rem;
padding:2rem}
h1{margin:0 0 .75rem;font-size:1.5rem;line-height:1.25}
p{margin:0 0 1.25rem}
.actions{display:flex;flex-wrap:wrap;gap:.75rem 1.25rem;align-items:center;margin:1.5rem 0 0}
.button{display:inline-block;padding:.625rem 1.25rem;border:0;border-radius:.5rem;background:var(--accent);
color:var(--on-accent);font:inherit;font-weight:600;text-decoration:none;cursor:pointer}
a{color:var(--accent)}
ul{padding:0;list-style:none;margin:0}li{margin:0 0 .5rem}
:focus-visible{outline:3px solid var(--focus);outline-offset:3px}
.button:focus-visible{outline-offset:3px}
"""


def render(page: Page, texts: Mapping[str, str]) -> str:
    """The guard's own HTML for ``page``."""
    e = html.escape
    title = texts[f"{page.kind}.title"]
    reason = f' data-reason="{e(page.reason.value)}"' if page.reason is not None else ""
    parts = [f'<p id="reason" data-kind="{page.kind}"{reason}>{e(page.message)}</p>']
    actions = []
    if page.kind == "chooser":
        items = "".join(
            f'<li><a class="button" href="{e(url)}">{e(name)}</a></li>' for name, url in page.choices
        )
        parts.append(f'<ul aria-label="{e(texts["chooser.message"])}">{items}</ul>')
    elif page.kind == "logout_confirm" and page.action_url is not None:
        fields = "".join(
            f'<input type="hidden" name="{e(name)}" value="{e(value)}">' for name, value in page.hidden
        )
        actions.append(
            f'<form method="post" action="{e(page.action_url)}">{fields}'
            f'<button class="button" id="sign-out" type="submit">{e(texts["logout_confirm.button"])}</button>'
            "</form>"
        )
    elif page.sign_in_url is not None:
        label = texts["sign_in.button"] if page.reason is Reason.login_required else texts["sign_in.again"]
        actions.append(f'<a class="button" id="sign-in" href="{e(page.sign_in_url)}">{e(label)}</a>')
    elif page.kind == "unavailable":
        actions.append(f'<a class="button" id="retry" href="">{e(texts["unavailable.button"])}</a>')
    actions.append(f'<a id="home" href="{e(page.home_url)}">{e(texts["home"])}</a>')
    parts.append(f'<div class="actions">{"".join(actions)}</div>')
    return (
        f'<!doctype html>\n<html lang="{e(texts["lang"])}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark"><meta name="robots" content="noindex">'
        f"<title>{e(title)}</title><style>{_STYLE}</style></head>\n"
        f'<body><main aria-labelledby="title"><h1 id="title">{e(title)}</h1>{"".join(parts)}</main>'
        "</body></html>"
    )
