"""The guard's two cookies, with attributes built once: the session and the browser binding."""

from __future__ import annotations

from typing import Literal

from starlette.responses import Response
from starlette.types import Scope

from ._http import ForwardedTrust, request_origin

SameSite = Literal["lax", "strict", "none"]


class CookieJar:
    def __init__(
        self,
        *,
        session_name: str,
        path: str,
        domain: str | None,
        secure: bool | None,
        same_site: SameSite,
        session_max_age: int | None,
        binding_max_age: int,
        trust: ForwardedTrust,
    ) -> None:
        self.session_name = session_name
        self.binding_name = session_name + "_tx"
        self._secure = secure
        self._trust = trust
        attrs = f"; Path={path}; HttpOnly"
        if domain:
            attrs += f"; Domain={domain}"
        self._attrs = f"{attrs}; SameSite={same_site.capitalize()}"
        # The provider sends the browser back with a cross-site top-level GET: a Strict binding cookie
        # would never reach the callback, so it is Lax even when the session cookie is Strict.
        self._binding_attrs = f"{attrs}; SameSite={'None' if same_site == 'none' else 'Lax'}"
        self._session_age = f"; Max-Age={session_max_age}" if session_max_age else ""
        self._binding_age = f"; Max-Age={binding_max_age}"

    def _secure_for(self, scope: Scope) -> str:
        secure = self._secure
        if secure is None:
            secure = request_origin(scope, self._trust).startswith("https:")
        return "; Secure" if secure else ""

    def set_session(self, response: Response, scope: Scope, value: str) -> None:
        response.headers.append(
            "set-cookie",
            f"{self.session_name}={value}{self._attrs}{self._session_age}{self._secure_for(scope)}",
        )

    def clear_session(self, response: Response, scope: Scope) -> None:
        response.headers.append(
            "set-cookie", f"{self.session_name}=; Max-Age=0{self._attrs}{self._secure_for(scope)}"
        )

    def set_binding(self, response: Response, scope: Scope, value: str) -> None:
        response.headers.append(
            "set-cookie",
            f"{self.binding_name}={value}{self._binding_attrs}{self._binding_age}{self._secure_for(scope)}",
        )
