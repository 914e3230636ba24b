"""The Django example: ``uvicorn examples.django_app:app`` (settings: see ``examples/_settings.py``).

A whole Django project in one file, configured in code (``settings.configure``). Django's ASGI application
runs behind the guard (``integrations.django.wrap``); views, sync and async, read the user with
``get_identity`` and ``require_identity``. Django runs sync views in a thread with the request's context,
so the guard's identity is there too.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextvars import ContextVar

import django
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.core.asgi import get_asgi_application
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET, require_POST
from starlette.routing import Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_oauth_guard import current_state
from asgi_oauth_guard.integrations.django import get_identity, login_required, require_identity, wrap
from asgi_oauth_guard.testing import OAuthTestProvider

from ._pages import home_page, me_json, public_page
from ._settings import Settings, Setup, setup
from ._socket import whoami_socket

if not django_settings.configured:
    django_settings.configure(
        DEBUG=False,
        ROOT_URLCONF=__name__,
        # Django answers only these hosts; the guard builds its own URLs from PUBLIC_URL. Name your hosts.
        ALLOWED_HOSTS=["*"],
        SECRET_KEY="django-example-has-no-sessions-of-its-own",
        MIDDLEWARE=["asgi_oauth_guard.integrations.django.GuardMiddleware"],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()

# One process may build several apps (the tests do): each request finds its own app's resources here.
_example: ContextVar[tuple[Setup, Callable[[], float]]] = ContextVar("django_example")


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    env, clock = _example.get()
    state = current_state()  # the guard's ContextVar, seen in this sync view's thread
    assert state is not None
    page = home_page(
        "Django",
        get_identity(request),
        state.reason,
        now=clock(),
        demo=env.idp is not None,
        root=_root(request),
    )
    return HttpResponse(page)


@require_GET
@login_required
async def me(request: HttpRequest) -> JsonResponse:
    env, clock = _example.get()
    return JsonResponse(me_json(require_identity(request), now=clock(), show_token=env.idp is not None))


@require_GET
def public(request: HttpRequest) -> HttpResponse:
    return HttpResponse(public_page("Django", root=_root(request)))


def _root(request: HttpRequest) -> str:
    """Where the app is mounted (``SCRIPT_NAME``, from the ASGI root path): links start there."""
    return str(request.META.get("SCRIPT_NAME", "")).rstrip("/")


def demo_only(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """The demo's buttons exist only with the embedded provider."""

    @functools.wraps(view)
    def checked(request: HttpRequest) -> HttpResponse:
        if _example.get()[0].idp is None:
            raise Http404
        return view(request)

    return checked


@demo_only
@require_POST
@login_required
def expire_token(request: HttpRequest) -> HttpResponse:
    env, _ = _example.get()
    async_to_sync(env.expire_token)()
    return HttpResponseRedirect(_root(request) + "/", status=303)


@demo_only
@require_POST
@login_required
def revoke_grant(request: HttpRequest) -> HttpResponse:
    env, _ = _example.get()
    async_to_sync(env.revoke_grant)(require_identity(request).sub)
    return HttpResponseRedirect(_root(request) + "/", status=303)


urlpatterns = [
    path("", home),
    path("api/me", me),
    path("public", public),
    path("demo/expire", expire_token),
    path("demo/revoke", revoke_grant),
]


def create_app(
    settings: Settings | None = None,
    *,
    idp: OAuthTestProvider | None = None,
    clock: Callable[[], float] = time.time,
) -> ASGIApp:
    env = setup(settings, idp=idp, clock=clock)
    django_app = get_asgi_application()

    async def this_example(scope: Scope, receive: Receive, send: Send) -> None:
        token = _example.set((env, env.clock))
        try:
            await django_app(scope, receive, send)
        finally:
            _example.reset(token)

    # Django's ASGI app has no WebSockets: /ws is a Starlette endpoint next to it, behind the same guard.
    websockets = Router([WebSocketRoute("/ws", whoami_socket)])
    return env.serve(wrap(this_example, websockets=websockets, **env.guard_options()))


app = create_app()
