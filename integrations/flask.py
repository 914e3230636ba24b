"""Flask: run a Flask app under the guard through asgiref's ``WsgiToAsgi``, and read the user in views.

    from asgi_oauth_guard.integrations.flask import require_user, wrap

    flask_app = Flask(__name__)

    @flask_app.get("/profile")
    def profile() -> dict[str, str]:
        return {"sub": require_user().sub}  # anonymous users get the guard's re-login response

    app = wrap(flask_app, issuer=..., client_id=..., ...)  # serve with: uvicorn module:app --reload

``flask run`` serves the Flask app without the guard (it speaks WSGI): a view that reads the user then
raises an error that says to serve ``app`` with uvicorn instead.

asgiref runs each view in a worker thread with a copy of the request's context, so the guard's ContextVar
(:func:`~asgi_oauth_guard.current_identity`) is visible in the view. asgiref supports asyncio only, and runs
WSGI views one at a time on its thread-sensitive thread.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any, NoReturn, TypeVar, cast

import flask
from asgiref.sync import async_to_sync
from asgiref.wsgi import WsgiToAsgi
from starlette.requests import Request
from starlette.types import ASGIApp, Scope

from asgi_oauth_guard import (
    GuardState,
    Identity,
    OAuthGuard,
    ProviderUnavailable,
    ReloginRequired,
    StoreUnavailable,
    current_state,
)

from ._asgi import GuardError, IsolatedApp, collect, reason_of, render

__all__ = [
    "current_token",
    "current_user",
    "login_required",
    "require_recent_sign_in",
    "require_user",
    "wrap",
]

View = TypeVar("View", bound=Callable[..., Any])

_scope: ContextVar[Scope | None] = ContextVar("asgi_oauth_guard_flask_scope", default=None)


class _FlaskApp(IsolatedApp):
    """``WsgiToAsgi`` run as an :class:`IsolatedApp` (WSGI has no lifespan, no WebSockets), with the scope
    kept for the re-login response."""

    def __init__(self, wsgi_app: flask.Flask, websockets: ASGIApp | None = None) -> None:
        super().__init__(WsgiToAsgi(wsgi_app), websockets)  # type: ignore[no-untyped-call]
        self.wsgi_app = wsgi_app

    def prepare(self, context: contextvars.Context, scope: Scope) -> None:
        context.run(_scope.set, scope)


def wrap(flask_app: flask.Flask, *, websockets: ASGIApp | None = None, **guard_settings: Any) -> OAuthGuard:
    """The Flask app as an ASGI app behind :class:`~asgi_oauth_guard.OAuthGuard` (same keyword settings).

    WSGI has no WebSockets: give ``websockets`` an ASGI app to serve them next to Flask, behind the same
    guard, such as ``Router([WebSocketRoute("/ws", endpoint)])`` with Starlette's ``requires_login``."""
    return OAuthGuard(_FlaskApp(flask_app, websockets), **guard_settings)


def current_user() -> Identity | None:
    """The signed-in user of the request this view serves, or ``None``."""
    return _state().identity


def require_user() -> Identity:
    """The signed-in user of the request this view serves; for an anonymous one, the view stops here and
    the request gets the guard's re-login response (a redirect, or a 401 JSON for API calls)."""
    state = _state()
    if state.identity is None:
        _abort(state, reason_of(state))
    return state.identity


def require_recent_sign_in(*, max_age: int | None = None, acr_values: Sequence[str] = ()) -> Identity:
    """The signed-in user, who authenticated at the provider at most ``max_age`` seconds ago (and with
    one of ``acr_values``, when given): step-up for a sensitive view. Otherwise the view stops here: page
    loads go to a sign-in that asks the provider for it, then back; API calls get a 401
    ``insufficient_user_authentication``. The provider's ``login_params`` must allow ``max_age`` (and
    these ``acr_values``); the guard checks the new ID token's ``auth_time`` and ``acr``."""
    identity = require_user()
    state = _state()
    scope = _scope.get()
    if scope is None:
        raise RuntimeError("require_recent_sign_in needs the app built by integrations.flask.wrap()")
    if state.guard.needs_step_up(identity, max_age=max_age, acr_values=acr_values):
        response = state.guard.step_up_response(
            Request(scope), identity, max_age=max_age, acr_values=acr_values
        )
        status, headers, body = async_to_sync(collect)(response, scope)
        flask.abort(flask.Response(body, status=status, headers=headers))
    return identity


def current_token() -> str | None:
    """The signed-in user's access token (refreshed by the guard if it was due), or ``None``."""
    identity = _state().identity
    return identity.access_token if identity is not None else None


def login_required(view: View) -> View:
    """Answer the guard's re-login response instead of calling ``view`` for anonymous users.

    Browsers get a redirect to the login path with ``next`` and ``reason``, API calls a 401 JSON, exactly as
    the guard answers them itself. A :class:`~asgi_oauth_guard.ReloginRequired` raised in the view gets the
    same answer with its reason; a provider or store outage raised there gets the guard's 503, not a 500.
    """

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        state = _state()
        if state.identity is None:
            return _relogin(state, reason_of(state))
        try:
            return view(*args, **kwargs)
        except (ReloginRequired, ProviderUnavailable, StoreUnavailable) as exc:
            return _relogin(state, exc)

    return cast(View, guarded)


def _state() -> GuardState:
    state = current_state()
    if state is None:
        raise RuntimeError(
            "no OAuthGuard serves this request: `flask run` and app.run() serve the Flask app alone (WSGI), "
            "without the guard. Build the ASGI app with asgi_oauth_guard.integrations.flask.wrap(flask_app, "
            "...) and serve that with uvicorn, e.g. `uvicorn yourmodule:app --reload` in development"
        )
    return state


def _relogin(state: GuardState, error: GuardError) -> flask.Response:
    """The guard's re-login response, built by the guard on the server's event loop, as a Flask response."""
    scope = _scope.get()
    if scope is None:
        raise RuntimeError("login_required needs the app built by asgi_oauth_guard.integrations.flask.wrap()")
    status, headers, body = async_to_sync(render)(state, scope, error)
    return flask.Response(body, status=status, headers=headers)


def _abort(state: GuardState, error: GuardError) -> NoReturn:
    flask.abort(_relogin(state, error))
