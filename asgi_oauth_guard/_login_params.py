"""Per-request sign-in parameters, allow-listed: more scopes, ``login_hint``, ``prompt``, and step-up
(``max_age``, ``acr_values``), and the check that the provider gave what a step-up asked for.

A login link is anyone's to write: the login route reads only the parameters the app allowed, with values
it checks (lengths, scope and ``acr`` names from the app's lists, ``prompt`` values from OIDC Core 3.1.2.1,
``max_age`` a bounded integer). A parameter the app did not allow is not sent to the provider.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp

from ._errors import ConfigurationError
from ._http import BadRequest, full_path, headers_map, is_browser_navigation, root_path
from ._pages import NO_STORE
from ._paths import Prefixes, route_path
from ._protocol import safe_next
from ._relogin import login_url

if TYPE_CHECKING:
    from ._context import Identity
    from .providers._registry import Providers

__all__ = [
    "PROMPTS",
    "LoginLinks",
    "LoginParams",
    "Requested",
    "check_step_up",
    "link_params",
    "read_requested",
]

logger = logging.getLogger("asgi_oauth_guard")

PROMPTS = frozenset({"none", "login", "consent", "select_account"})  # OIDC Core 3.1.2.1
MAX_LOGIN_HINT = 256
MAX_AGE_LIMIT = 366 * 24 * 3600  # a year: beyond it "max_age" means nothing a provider keeps
# The provider's clock against ours, for auth_time: the same tolerance as the ID token's iat.
AUTH_TIME_SKEW = 60.0
_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")  # RFC 6749 scope-token characters, bounded
_ALL = ("scope", "login_hint", "prompt", "max_age", "acr_values")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoginParams:
    """What a login link may ask of the provider beyond its fixed settings; nothing by default.

    Args:
        scopes: Scopes a link may add to the provider's (incremental consent: ``?scope=calendar.read``).
        login_hint: A link may name the user to sign in (``?login_hint=alice@example.com``).
        prompt: The ``prompt`` values a link may ask for: some of ``"none"``, ``"login"``, ``"consent"``,
            ``"select_account"``.
        max_age: A link may ask for a sign-in no older than this many seconds (``?max_age=300``); the
            returned ID token's ``auth_time`` is checked against it.
        acr_values: The authentication context classes a link may ask for (``?acr_values=mfa``); the
            returned ID token's ``acr`` must be one of those asked.
    """

    scopes: frozenset[str] = frozenset()
    login_hint: bool = False
    prompt: frozenset[str] = frozenset()
    max_age: bool = False
    acr_values: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("scopes", "prompt", "acr_values"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise ConfigurationError(
                    f"LoginParams({name}=...) must be a set of names, such as frozenset({{'x'}}), "
                    f"not {type(value).__name__}"
                )
            items = frozenset(value)
            if any(not isinstance(v, str) or not _TOKEN.fullmatch(v) for v in items):
                raise ConfigurationError(f"LoginParams({name}=...) must hold names without spaces")
            object.__setattr__(self, name, items)  # frozen: normalised once, here
        if not self.prompt <= PROMPTS:
            raise ConfigurationError(
                f"LoginParams(prompt=...) takes values of {', '.join(sorted(PROMPTS))}; "
                f"got {', '.join(sorted(self.prompt - PROMPTS))}"
            )
        if not isinstance(self.login_hint, bool) or not isinstance(self.max_age, bool):
            raise ConfigurationError("LoginParams(login_hint=..., max_age=...) are True or False")

    def allows(self, name: str) -> bool:
        """Whether a link may carry query parameter ``name``."""
        return {
            "scope": bool(self.scopes),
            "login_hint": self.login_hint,
            "prompt": bool(self.prompt),
            "max_age": self.max_age,
            "acr_values": bool(self.acr_values),
        }[name]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Requested:
    """One sign-in's per-request parameters, checked against the allow-list."""

    scopes: tuple[str, ...] = ()
    login_hint: str | None = None
    prompt: tuple[str, ...] = ()
    max_age: int | None = None
    acr_values: tuple[str, ...] = ()

    def scope(self, base: Sequence[str]) -> str:
        """The ``scope`` to ask for: the provider's, and the extra ones asked for."""
        return " ".join([*base, *(s for s in self.scopes if s not in base)])

    def merged(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The authorization request's extra parameters with these added. ``prompt`` values join the
        ones already there (a consent the guard needs for an offline grant stays asked); ``none`` gives
        way to any other, since the provider could only answer it with an error."""
        params = dict(extra)
        if self.prompt:
            words = [*params.get("prompt", "").split(), *self.prompt]
            joined = list(dict.fromkeys(words))
            if len(joined) > 1 and "none" in joined:
                joined.remove("none")
            params["prompt"] = " ".join(joined)
        if self.login_hint is not None:
            params["login_hint"] = self.login_hint
        if self.max_age is not None:
            params["max_age"] = str(self.max_age)
        if self.acr_values:
            params["acr_values"] = " ".join(self.acr_values)
        return params


def read_requested(query: Mapping[str, str], allowed: LoginParams) -> Requested:
    """The per-request parameters of a login link. One the app did not allow is dropped (it never reaches
    the provider); a value that breaks the allow-list or its form is a :class:`BadRequest`."""
    dropped = [name for name in _ALL if name in query and not allowed.allows(name)]
    if dropped:
        logger.info("a sign-in link asked for %s, not allowed here: not sent", ", ".join(dropped))
    get = {name: query[name] for name in _ALL if name in query and allowed.allows(name)}
    try:
        return _checked(
            allowed,
            scopes=get["scope"].split() if "scope" in get else (),
            login_hint=get.get("login_hint"),
            prompt=get["prompt"].split() if "prompt" in get else (),
            max_age=get.get("max_age"),
            acr_values=get["acr_values"].split() if "acr_values" in get else (),
        )
    except ValueError as exc:
        raise BadRequest(f"this sign-in link asks for what the app does not allow: {exc}") from None


def link_params(
    allowed: LoginParams,
    *,
    scopes: Sequence[str] = (),
    login_hint: str | None = None,
    prompt: Sequence[str] | str | None = None,
    max_age: int | None = None,
    acr_values: Sequence[str] = (),
) -> dict[str, str]:
    """The query of a login link asking for these (``OAuthGuard.login_url``). Asking for what the
    provider's allow-list lacks is the app's mistake: a :class:`ConfigurationError` naming it, since the
    login route would drop or refuse it."""
    words = prompt.split() if isinstance(prompt, str) else list(prompt or ())
    for name, given in (
        ("scope", scopes),
        ("login_hint", login_hint is not None),
        ("prompt", words),
        ("max_age", max_age is not None),
        ("acr_values", acr_values),
    ):
        if given and not allowed.allows(name):
            raise ConfigurationError(
                f"login_url({'scopes' if name == 'scope' else name}=...): the provider's login_params= "
                "does not allow it, so the login route would not send it"
            )
    if isinstance(scopes, str) or isinstance(acr_values, str):
        raise ConfigurationError("login_url(scopes=..., acr_values=...) take lists, not strings")
    if max_age is not None and (not isinstance(max_age, int) or isinstance(max_age, bool)):
        raise ConfigurationError("login_url(max_age=...) takes a whole number of seconds")
    try:
        requested = _checked(
            allowed,
            scopes=scopes,
            login_hint=login_hint,
            prompt=words,
            max_age=str(max_age) if max_age is not None else None,
            acr_values=acr_values,
        )
    except ValueError as exc:
        raise ConfigurationError(f"login_url(): {exc}") from None
    query: dict[str, str] = {}
    if requested.scopes:
        query["scope"] = " ".join(requested.scopes)
    query.update(Requested(login_hint=requested.login_hint, prompt=requested.prompt).merged({}))
    if requested.max_age is not None:
        query["max_age"] = str(requested.max_age)
    if requested.acr_values:
        query["acr_values"] = " ".join(requested.acr_values)
    return query


def _checked(
    allowed: LoginParams,
    *,
    scopes: Iterable[str],
    login_hint: str | None,
    prompt: Iterable[str],
    max_age: str | None,
    acr_values: Iterable[str],
) -> Requested:
    scope_list = list(dict.fromkeys(scopes))
    if not set(scope_list) <= allowed.scopes:
        raise ValueError("a scope this app does not offer")
    if login_hint is not None and (
        not login_hint
        or len(login_hint) > MAX_LOGIN_HINT
        or not login_hint.isprintable()
        or login_hint != login_hint.strip()
    ):
        raise ValueError(f"login_hint must be 1-{MAX_LOGIN_HINT} printable characters")
    prompts = list(dict.fromkeys(prompt))
    if not set(prompts) <= allowed.prompt:
        raise ValueError(f"prompt may be {', '.join(sorted(allowed.prompt)) or 'nothing'}")
    if "none" in prompts and len(prompts) > 1:
        raise ValueError("prompt=none stands alone (OIDC Core 3.1.2.1)")
    age: int | None = None
    if max_age is not None:
        if not max_age.isascii() or not max_age.isdigit() or len(max_age) > 8:
            raise ValueError("max_age is a whole number of seconds")
        age = int(max_age)
        if age > MAX_AGE_LIMIT:
            raise ValueError(f"max_age is at most {MAX_AGE_LIMIT} seconds")
    acr = list(dict.fromkeys(acr_values))
    if not set(acr) <= allowed.acr_values:
        raise ValueError("an acr value this app does not offer")
    return Requested(
        scopes=tuple(scope_list),
        login_hint=login_hint,
        prompt=tuple(prompts),
        max_age=age,
        acr_values=tuple(acr),
    )


def check_step_up(
    claims: Mapping[str, Any], *, max_age: int | None, acr_values: Sequence[str], started_at: float
) -> str | None:
    """What the ID token lacks of the step-up its login asked for (OIDC Core 3.1.2.1, 5.5.1.1), or
    ``None``: with ``max_age``, an ``auth_time`` no older than ``max_age`` before the login started; with
    ``acr_values``, an ``acr`` among them. A provider that ignored the request would otherwise send the
    user round a loop of sign-ins that never satisfy the route that asked."""
    if max_age is not None:
        auth_time = claims.get("auth_time")
        if not isinstance(auth_time, (int, float)) or isinstance(auth_time, bool):
            return "the ID token has no auth_time although max_age was asked"
        if auth_time + max_age + AUTH_TIME_SKEW < started_at:
            return (
                f"the user authenticated {started_at - auth_time:.0f} s before the sign-in started, "
                f"more than the max_age of {max_age} s asked"
            )
    if acr_values and claims.get("acr") not in acr_values:
        return "the ID token's acr is not one of the acr_values asked"
    return None


class LoginLinks:
    """The app's side: login links asking for per-request parameters, and the step-up a route demands
    (``OAuthGuard.login_url``, ``needs_step_up``, ``step_up_response``)."""

    def __init__(
        self,
        *,
        providers: Providers,
        login_path: str,
        api_prefixes: Prefixes,
        allowed: LoginParams,
        clock: Callable[[], float],
    ) -> None:
        self._providers = providers
        self._login_path = login_path
        self._api_prefixes = api_prefixes
        self._allowed = allowed
        self._clock = clock

    def url(
        self,
        *,
        next: str,
        provider: str | None,
        root_path: str,
        **asked: Any,
    ) -> str:
        target = safe_next(next, default="")
        if not target:
            raise ConfigurationError(f"login_url(next={next!r}): next must be a path on this site")
        client = self._providers.get(provider)
        if client is None:
            raise ConfigurationError(
                f"login_url(provider={provider!r}): this guard has {', '.join(self._providers.names)}"
            )
        if provider is None and len(self._providers) > 1:
            if any(value is not None and value != () and value != [] for value in asked.values()):
                raise ConfigurationError(
                    f"login_url(provider=...): name one of {', '.join(self._providers.names)}: what a "
                    "link may ask for is each provider's own"
                )
            query: dict[str, str] = {}  # the chooser
        else:
            query = link_params(client.provider.login_params or self._allowed, **asked)
        name = client.name if provider is not None else None
        base = login_url(root_path, self._login_path, next_path=target, provider=name)
        return f"{base}&{urlencode(query)}" if query else base

    def needs_step_up(
        self, identity: Identity, *, max_age: int | None = None, acr_values: Sequence[str] = ()
    ) -> bool:
        """Whether ``identity``'s sign-in is older than ``max_age`` seconds (with the provider's clock
        given ``AUTH_TIME_SKEW``), or its ``acr`` is not one of ``acr_values``."""
        if max_age is not None:
            auth_time = identity.auth_time
            if auth_time is None or self._clock() - auth_time > max_age + AUTH_TIME_SKEW:
                return True
        return bool(acr_values) and identity.acr not in acr_values

    def response(
        self,
        request: Request,
        identity: Identity,
        *,
        max_age: int | None = None,
        acr_values: Sequence[str] = (),
    ) -> ASGIApp:
        """The answer to a request whose route demands a fresher or stronger sign-in than ``identity``'s:
        page loads go to a sign-in that asks for it; API calls get RFC 9470's 401
        ``insufficient_user_authentication`` with the ``login_url``."""
        scope = request.scope
        url = self.url(
            next=safe_next(full_path(scope), default=safe_next(root_path(scope) + route_path(scope))),
            provider=identity.provider if len(self._providers) > 1 else None,
            root_path=root_path(scope),
            max_age=max_age,
            acr_values=tuple(acr_values),
        )
        if is_browser_navigation(scope, self._api_prefixes, headers_map(scope)):
            return RedirectResponse(url, status_code=303, headers=NO_STORE)
        challenge = 'Bearer error="insufficient_user_authentication"'
        if max_age is not None:
            challenge += f', max_age="{max_age}"'
        if acr_values:
            challenge += f', acr_values="{" ".join(acr_values)}"'
        return JSONResponse(
            {"error": "insufficient_user_authentication", "login_url": url},
            status_code=401,
            headers={**NO_STORE, "WWW-Authenticate": challenge},
        )
