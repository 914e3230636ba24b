"""The guard's two cookies, with attributes built once: the session and the browser binding."""

from __future__ import annotations

from typing import Literal

from starlette.responses import Response
from starlette.types import Scope

from ._errors import ConfigurationError
from ._http import ForwardedTrust, request_origin, root_path

SameSite = Literal["lax", "strict", "none"]
BASE_NAME = "guard_session"


def default_cookie_name(*, secure: bool | None, domain: str | None, path: str) -> str:
    """The session cookie's name when none is configured: the strongest prefix the attributes allow.

    Browsers accept a ``__Host-`` cookie only with ``Secure``, no ``Domain`` and ``Path=/``, and a
    ``__Secure-`` one only with ``Secure``; in exchange no other site, subdomain or plain-http page can set
    or overwrite it (cookie tossing). ``secure=None`` (decided per request) gets no prefix: an http request
    could never carry the cookie again.
    """
    if secure is not True:
        return BASE_NAME
    if not domain and path == "/":
        return "__Host-" + BASE_NAME
    return "__Secure-" + BASE_NAME


def check_cookie_prefix(name: str, *, secure: bool | None, domain: str | None, path: str) -> None:
    """Refuse a prefixed name the browser would drop for its attributes: signing in would never stick."""
    if name.startswith("__Host-") and (secure is False or domain or path != "/"):
        raise ConfigurationError(
            f"cookie_name={name!r}: browsers keep __Host- cookies only when Secure, without "
            "cookie_domain and with cookie_path='/'"
        )
    if name.startswith(("__Host-", "__Secure-")) and secure is False:
        raise ConfigurationError(f"cookie_name={name!r}: a __Secure- or __Host- cookie needs cookie_secure")


def cookie_path(configured: str | None, scope: Scope, *, name: str) -> str:
    """The cookies' ``Path``, the one place it is decided: ``cookie_path`` when set; ``/`` for a ``__Host-``
    cookie name (browsers drop one with any other Path); else where the app is mounted (the root path), so
    an app under ``/app`` never sends its cookies to another app on the same host.

    Under a sub-path, ``__Host-`` (the default name on https) therefore wins over scoping to the mount:
    it stops sibling subdomains and plain-http pages from setting the cookie, which a Path never could."""
    if configured is not None:
        return configured
    if name.startswith("__Host-"):
        return "/"
    return root_path(scope) or "/"


class CookieJar:
    def __init__(
        self,
        *,
        session_name: str,
        path: str | None,
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
        self._path = path
        self._path_attrs: dict[str, str] = {}
        attrs = "; HttpOnly"
        if domain:
            attrs += f"; Domain={domain}"
        self._attrs = f"{attrs}; SameSite={same_site.capitalize()}"
        # The provider sends the browser back with a cross-site top-level GET: a Strict binding cookie
        # would never reach the callback, so it is Lax even when the session cookie is Strict.
        self._binding_attrs = f"{attrs}; SameSite={'None' if same_site == 'none' else 'Lax'}"
        self._session_age = f"; Max-Age={session_max_age}" if session_max_age else ""
        self._binding_age = f"; Max-Age={binding_max_age}"

    def _scoped(self, scope: Scope) -> str:
        """``; Path=...`` plus ``Secure`` for this request: one dictionary lookup for a known root path."""
        path = cookie_path(self._path, scope, name=self.session_name)
        attr = self._path_attrs.get(path)
        if attr is None:
            attr = f"; Path={path}"
            if len(self._path_attrs) < 64:  # root paths come from the server's configuration: a handful
                self._path_attrs[path] = attr
        secure = self._secure
        if secure is None:
            secure = request_origin(scope, self._trust).startswith("https:")
        return attr + "; Secure" if secure else attr

    def set_session(self, response: Response, scope: Scope, value: str) -> None:
        response.headers.append(
            "set-cookie",
            f"{self.session_name}={value}{self._scoped(scope)}{self._attrs}{self._session_age}",
        )

    def clear_session(self, response: Response, scope: Scope) -> None:
        response.headers.append(
            "set-cookie", f"{self.session_name}=; Max-Age=0{self._scoped(scope)}{self._attrs}"
        )

    def set_binding(self, response: Response, scope: Scope, value: str) -> None:
        response.headers.append(
            "set-cookie",
            f"{self.binding_name}={value}{self._scoped(scope)}{self._binding_attrs}{self._binding_age}",
        )
