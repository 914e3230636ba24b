"""Path spellings against the real frameworks under uvicorn: never a protected view for an anonymous user.

Each framework serves the same routes; each view answers ``view=<name>`` and the ``rest`` of the path it
matched. The guard in front is configured two ways (told apart by the Host header): ``require_login=True``
with ``public_paths=["/public"]``, and ``require_login=["/admin", "/api/"]`` with
``public_paths=["/admin/help"]``. Hypothesis writes spellings of the routes (slashes, dot segments,
percent-encodings, backslashes, case, trailing dots, ``;params``), sends them byte for byte, and checks:
whenever the framework served a resource that the configuration protects, the guard had demanded a login
(so the framework never served it). The resource a view serves is its route's path, plus its ``rest``
resolved as a file server resolves it (``/admin/{rest}`` with rest ``help/../users`` serves
``/admin/users``); "protects" is the configuration's plain meaning (prefixes on segment boundaries).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse as FastAPIText
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_oauth_guard import OAuthGuard, Provider
from asgi_oauth_guard.integrations.flask import wrap

from ..conftest import SECRET_KEY
from .served import RawResponse, raw_request, serve

# Route name -> the path it is written at; ``rest`` routes take any path below.
ROUTES = {
    "home": "/",
    "public": "/public",
    "public_rest": "/public/{rest}",
    "admin": "/admin",
    "admin_help": "/admin/help",
    "admin_rest": "/admin/{rest}",
    "api_me": "/api/me",
    "anything": "/{rest}",  # a catch-all, as single-page apps and CMSs have
}
CONFIGS: dict[str, dict[str, Any]] = {
    "all.test": {"require_login": True, "public_paths": ["/public"]},
    "prefix.test": {"require_login": ["/admin", "/api/"], "public_paths": ["/admin/help"]},
}
BARE = "bare.test"  # the framework without the guard: what it serves for a spelling


def starlette_app() -> ASGIApp:
    def view(name: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> PlainTextResponse:
            return PlainTextResponse(f"view={name}\nrest={request.path_params.get('rest', '')}")

        return endpoint

    converted = {name: path.replace("{rest}", "{rest:path}") for name, path in ROUTES.items()}
    return Starlette(routes=[Route(path, view(name)) for name, path in converted.items()])


def fastapi_app() -> ASGIApp:
    app = FastAPI()
    for name, path in ROUTES.items():

        def endpoint(request: Request, name: str = name) -> FastAPIText:
            return FastAPIText(f"view={name}\nrest={request.path_params.get('rest', '')}")

        app.add_api_route(path.replace("{rest}", "{rest:path}"), endpoint, methods=["GET"], name=name)
    return app


def flask_app() -> flask.Flask:
    app = flask.Flask(__name__)
    for name, path in ROUTES.items():
        app.add_url_rule(path.replace("{rest}", "<path:rest>"), name, _flask_view(name))
    return app


def _flask_view(name: str) -> Callable[..., str]:
    def endpoint(rest: str = "") -> str:
        return f"view={name}\nrest={rest}"

    return endpoint


def by_host(inner: ASGIApp | flask.Flask) -> ASGIApp:
    """The framework's app behind each configuration of the guard, chosen by Host; Flask through
    ``integrations.flask.wrap``, as Flask apps are served."""
    provider = Provider(
        issuer="https://idp.example.test",
        authorization_endpoint="https://idp.example.test/authorize",
        token_endpoint="https://idp.example.test/token",
    )
    settings: dict[str, Any] = {
        "provider": provider,
        "client_id": "client",
        "client_secret": "secret",
        "secret_key": SECRET_KEY,
        "scopes": ["profile"],
    }
    guards: dict[str, OAuthGuard] = {
        host: wrap(inner, **settings, **options)
        if isinstance(inner, flask.Flask)
        else OAuthGuard(inner, **settings, **options)
        for host, options in CONFIGS.items()
    }
    bare = guards["all.test"].app  # the same app without a guard in front

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        host = dict(scope["headers"]).get(b"host", b"").decode()
        await (bare if host == BARE else guards[host])(scope, receive, send)

    return app


FRAMEWORKS: dict[str, Callable[[], ASGIApp | flask.Flask]] = {
    "starlette": starlette_app,
    "fastapi": fastapi_app,
    "flask": flask_app,
}


@pytest.fixture(scope="module", params=list(FRAMEWORKS))
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    with serve(by_host(FRAMEWORKS[request.param]())) as port:
        yield port


def get(port: int, host: str, target: str) -> RawResponse:
    return raw_request(port, target, headers=[("host", host), ("accept", "text/html")])


def demanded_login(response: RawResponse) -> bool:
    location = response.header("location") or ""
    return response.status == 303 and location.startswith("/auth/login?")


def served(response: RawResponse) -> str | None:
    """The resource the framework served: its route's path with ``rest`` resolved, or None (no view)."""
    found = re.fullmatch(r"view=(\w+)\nrest=(.*)", response.text, re.S) if response.status == 200 else None
    if found is None:
        return None
    route, rest = ROUTES[found.group(1)], found.group(2).replace("\\", "/")
    return posixpath.normpath("/" + route.replace("{rest}", rest).lstrip("/")) if rest else route


def plainly_protected(host: str, path: str) -> bool:
    """What the configuration says, read plainly: prefixes on segment boundaries, as written."""

    def under(prefixes: list[str]) -> bool:
        return any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in prefixes)

    options = CONFIGS[host]
    if under(options["public_paths"]):
        return False
    return options["require_login"] is True or under(options["require_login"])


BASES = ["/", "/admin", "/admin/users", "/admin/help", "/api/me", "/public", "/public/page", "/other"]
PREFIXES = ["/public/..", "/public/%2e%2e", "/public/%252e%252e", "/admin/help/..", "/public/..;", "/x/.."]


def _encode(char: str, upper: bool) -> str:
    code = f"%{ord(char):02X}"
    return code if upper else code.lower()


@st.composite
def spellings(draw: st.DrawFn) -> str:
    """A spelling of one of the routes, as an attacker (or a sloppy client) could write it."""
    path = draw(st.sampled_from(BASES))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(
            st.sampled_from(
                [
                    "slashes",
                    "dot",
                    "dotdot",
                    "prefix",
                    "encode",
                    "double",
                    "backslash",
                    "case",
                    "trail",
                    "end",
                ]
            )
        )
        slashes = [i for i, c in enumerate(path) if c == "/"]
        at = draw(st.sampled_from(slashes)) if slashes else 0
        if op == "slashes":
            path = path[:at] + "/" * draw(st.integers(2, 3)) + path[at + 1 :]
        elif op == "dot":
            path = path[: at + 1] + draw(st.sampled_from(["./", "%2e/", "%2E/"])) + path[at + 1 :]
        elif op == "dotdot":
            path = (
                path[: at + 1]
                + draw(st.sampled_from(["x/../", "public/../", "x/%2e%2e/", "x%2F..%2F"]))
                + (path[at + 1 :])
            )
        elif op == "prefix":
            path = draw(st.sampled_from(PREFIXES)) + path
        elif op == "encode" and path:
            i = draw(st.integers(0, len(path) - 1))
            if path[i] not in "%":
                path = path[:i] + _encode(path[i], draw(st.booleans())) + path[i + 1 :]
        elif op == "double":
            path = path.replace("%", "%25", 1)
        elif op == "backslash" and at > 0:
            path = path[:at] + draw(st.sampled_from(["\\", "%5C", "%5c"])) + path[at + 1 :]
        elif op == "case":
            letters = [i for i, c in enumerate(path) if c.isalpha()]
            if letters:
                i = draw(st.sampled_from(letters))
                path = path[:i] + path[i].swapcase() + path[i + 1 :]
        elif op == "trail":
            end = path.find("/", at + 1)
            end = len(path) if end < 0 else end
            path = path[:end] + draw(st.sampled_from([".", "%2e", "%20", ";x", ";", "..."])) + path[end:]
        elif op == "end":
            path += draw(st.sampled_from(["/", "/.", "/..", "//", "/%2e", "/.."]))
    return path


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=spellings())
def test_no_spelling_reaches_a_protected_view_anonymously(port: int, target: str) -> None:
    for host in CONFIGS:
        response = get(port, host, target)
        assert response.status != 500, (host, target)
        resource = served(response)
        assert resource is None or not plainly_protected(host, resource), (
            f"{host}{target} served {resource!r} anonymously"
        )


# Spellings for which every framework serves a protected resource that the guard's old matching
# (`path.startswith(prefix)` on the raw path) let through: the property above fails on them without the fix.
KNOWN = [
    ("prefix.test", "/admin/help/../users"),
    ("prefix.test", "/admin/help%2F..%2Fusers"),
    ("all.test", "/public/../admin"),
]


@pytest.mark.parametrize(("host", "target"), KNOWN)
def test_known_tricky_spellings(port: int, host: str, target: str) -> None:
    resource = served(get(port, BARE, target))
    assert resource is not None and plainly_protected(host, resource), resource  # a real bypass, unguarded
    assert demanded_login(get(port, host, target)), (host, target, resource)


@pytest.mark.parametrize("target", ["/public", "/public/page", "/public/./page", "/public//page"])
def test_public_spellings_stay_public(port: int, target: str) -> None:
    response = get(port, "all.test", target)
    assert not demanded_login(response) and response.status in (200, 308), (target, response.status)


def test_segment_boundaries(port: int) -> None:
    assert demanded_login(get(port, "all.test", "/publicity"))
    assert served(get(port, "prefix.test", "/administrator")) == "/administrator"
    assert demanded_login(get(port, "prefix.test", "//admin"))
