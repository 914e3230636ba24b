"""Who may sign a user out: a POST from one of the app's own origins (logout CSRF).

Another site can make a browser load ``/auth/logout`` (an image, a link) or post a form to it, with the
user's cookies. So a GET only shows a confirm page with the POST form, and a POST signs out when its
``Origin`` (else ``Sec-Fetch-Site``) says it came from one of the app's own origins. A POST that says
neither comes from a browser too old to send them (or from no browser): it signs out only when its form
carries the confirm page's token, an HMAC of the session id that another site cannot read; else it gets
the confirm page, whose button then posts the token.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope

from ._crypto import Keyring, b64e
from ._http import root_path
from ._origins import OwnOrigins
from ._pages import Pages

__all__ = ["SignOutGate"]

MAX_FORM_BYTES = 4096


class SignOutGate:
    def __init__(self, *, origins: OwnOrigins, keyring: Keyring, logout_path: str, pages: Pages) -> None:
        self._origins = origins
        self._pages = pages
        self._keys = keyring
        self._logout_path = logout_path

    def token(self, sid: str) -> str:
        return b64e(self._keys.derive("sign-out", sid)[:16])

    async def refusal(self, scope: Scope, receive: Receive, sid: str | None) -> ASGIApp | None:
        """``None`` when this request may sign out the session ``sid`` (``None``: no session); else the
        answer to give instead, having changed nothing."""
        if scope["method"] != "POST":
            return await self._page(scope, sid, status=200)
        verdict = self._origins.verdict(scope)
        if verdict == "same":
            return None
        if verdict == "cross":
            return await self._page(scope, sid, status=403)
        if sid is None:
            return None  # no session to end: clearing a dead cookie is harmless
        sent = await _form_field(scope, receive, "confirm")
        if sent is not None and hmac.compare_digest(sent, self.token(sid)):
            return None
        return await self._page(scope, sid, status=200)

    async def _page(self, scope: Scope, sid: str | None, *, status: int) -> ASGIApp:
        """The confirm page: a POST form (no script), so that a link or an image from another site signs
        no one out. ``status`` 403 when the request that got it came from another site."""
        return await self._pages.page(
            Request(scope),
            "logout_confirm",
            message=self._pages.text("logout_confirm.message"),
            status=status,
            action_url=root_path(scope) + self._logout_path,
            hidden=(("confirm", self.token(sid)),) if sid is not None else (),
        )


async def _form_field(scope: Scope, receive: Receive, name: str) -> str | None:
    """One field of a small urlencoded form body; ``None`` when absent, or the body is not such a form."""
    content_type = b""
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = value.split(b";")[0].strip().lower()
    if content_type != b"application/x-www-form-urlencoded":
        return None
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_FORM_BYTES:
            return None
        if not message.get("more_body", False):
            break
    try:
        fields = parse_qsl(body.decode("ascii"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None
    values = [value for key, value in fields if key == name]
    return values[0] if len(values) == 1 else None
