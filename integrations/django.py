"""Django: serve Django's ASGI application behind the guard, read the user in views, guard views.

    # asgi.py: serve with uvicorn project.asgi:application (--reload in development)
    from django.core.asgi import get_asgi_application
    from asgi_oauth_guard.integrations.django import wrap

    application = wrap(get_asgi_application(), issuer=..., client_id=..., ...)

    # views.py: sync and async views alike
    from asgi_oauth_guard.integrations.django import login_required, require_identity, require_recent_sign_in

    @login_required  # anonymous users get the guard's re-login response
    def profile(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"sub": require_identity(request).sub})

    @login_required  # step-up: a sign-in at most 5 minutes old (login_params must allow max_age)
    def close_account(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"sub": require_recent_sign_in(request, max_age=300).sub})

Django runs sync views in a thread with a copy of the request's context (asgiref), so the guard's identity is
there too. ``manage.py runserver`` serves Django over WSGI, without the guard: a view that reads the user
then raises an error that says to serve the ASGI application with uvicorn.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from starlette.types import ASGIApp, Scope

from asgi_oauth_guard import (
    SCOPE_KEY,
    GuardState,
    Identity,
    OAuthGuard,
    ProviderUnavailable,
    Reason,
    ReloginRequired,
    StoreUnavailable,
    current_state,
)

from ._asgi import GuardError, IsolatedApp, Rendered, StepUpRequired, reason_of, render

__all__ = [
    "GuardMiddleware",
    "LoginRequired",
    "StepUpRequired",
    "get_identity",
    "login_required",
    "require_identity",
    "require_recent_sign_in",
    "wrap",
]

View = TypeVar("View", bound=Callable[..., Any])
_ANSWERED = (ReloginRequired, ProviderUnavailable, StoreUnavailable, StepUpRequired)


class LoginRequired(Exception):
    """Raised by :func:`require_identity` for an anonymous request; :func:`login_required` and
    :class:`GuardMiddleware` answer it with the guard's re-login response."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(f"a signed-in user is required ({reason.value})")
        self.reason = reason


def wrap(django_app: ASGIApp, *, websockets: ASGIApp | None = None, **guard_settings: Any) -> OAuthGuard:
    """Django's ASGI application (``get_asgi_application()``) behind :class:`~asgi_oauth_guard.OAuthGuard`
    (same keyword settings). Django's ASGI app serves no WebSockets: give ``websockets`` an ASGI app to
    serve them behind the same guard (Channels, or a Starlette ``Router`` of ``WebSocketRoute``)."""
    return OAuthGuard(IsolatedApp(django_app, websockets), **guard_settings)


def get_identity(request: HttpRequest) -> Identity | None:
    """The signed-in user of this request, or ``None``."""
    return _state(request).identity


def require_identity(request: HttpRequest) -> Identity:
    """The signed-in user of this request; for an anonymous one, raise :class:`LoginRequired` (answered with
    the guard's re-login response by :func:`login_required` or :class:`GuardMiddleware`)."""
    state = _state(request)
    if state.identity is None:
        raise LoginRequired(reason_of(state))
    return state.identity


def require_recent_sign_in(
    request: HttpRequest, *, max_age: int | None = None, acr_values: Sequence[str] = ()
) -> Identity:
    """The signed-in user, who authenticated at the provider at most ``max_age`` seconds ago (and with one
    of ``acr_values``, when given): step-up for a sensitive view. Otherwise raise :class:`StepUpRequired`
    (or :class:`LoginRequired` for an anonymous request), answered by :func:`login_required` or
    :class:`GuardMiddleware`. The provider's ``login_params`` must allow ``max_age`` (and these
    ``acr_values``); the guard checks the new ID token's ``auth_time`` and ``acr``."""
    identity = require_identity(request)
    if _state(request).guard.needs_step_up(identity, max_age=max_age, acr_values=acr_values):
        raise StepUpRequired(identity, max_age=max_age, acr_values=tuple(acr_values))
    return identity


def login_required(view: View) -> View:
    """Answer the guard's re-login response instead of calling ``view`` (sync or async) for anonymous users.

    Browsers get a redirect to the login path with ``next`` and ``reason``, API calls a 401 JSON. A
    :class:`~asgi_oauth_guard.ReloginRequired` raised in the view (by ``GuardAuth``) gets the re-login
    response for its reason; a provider or store outage raised there gets the guard's 503, not a 500.
    """
    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def guarded_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            state = _state(request)
            if state.identity is None:
                return _response(await render(state, _scope(request), reason_of(state)))
            try:
                return await view(request, *args, **kwargs)
            except (LoginRequired, *_ANSWERED) as exc:
                return _response(await render(state, _scope(request), _error(exc)))

        return cast(View, guarded_async)

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        state = _state(request)
        if state.identity is None:
            return _answer(state, request, reason_of(state))
        try:
            return view(request, *args, **kwargs)
        except (LoginRequired, *_ANSWERED) as exc:
            return _answer(state, request, _error(exc))

    return cast(View, guarded)


class GuardMiddleware:
    """In ``MIDDLEWARE``: a :class:`LoginRequired` (from :func:`require_identity`) or a guard error raised in
    any view gets the guard's answer, as under :func:`login_required`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponseBase | None:
        if not isinstance(exception, (LoginRequired, *_ANSWERED)):
            return None
        return _answer(_state(request), request, _error(exception))


def _state(request: HttpRequest) -> GuardState:
    scope = getattr(request, "scope", None)
    state = scope.get(SCOPE_KEY) if isinstance(scope, dict) else current_state()
    if not isinstance(state, GuardState):
        raise RuntimeError(
            "no OAuthGuard serves this request: `manage.py runserver` serves Django over WSGI, without the "
            "guard. Serve the ASGI application built by asgi_oauth_guard.integrations.django.wrap("
            "get_asgi_application(), ...) with uvicorn, e.g. `uvicorn project.asgi:application --reload`"
        )
    return state


def _scope(request: HttpRequest) -> Scope:
    scope: Scope = request.scope  # an ASGIRequest's
    return scope


def _error(exc: Exception) -> GuardError | StepUpRequired:
    return exc.reason if isinstance(exc, LoginRequired) else cast(GuardError | StepUpRequired, exc)


def _answer(state: GuardState, request: HttpRequest, error: GuardError | StepUpRequired) -> HttpResponse:
    """From sync code (a view's thread): the guard builds its answer on the server's event loop."""
    return _response(async_to_sync(render)(state, _scope(request), error))


def _response(rendered: Rendered) -> HttpResponse:
    status, headers, body = rendered
    response = HttpResponse(body, status=status)
    for name, value in headers:
        if name.lower() != "content-length":
            response.headers[name] = value
    return response
