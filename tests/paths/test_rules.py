"""The path rules: every reading of a path a framework or proxy could route, prefixes on segment boundaries."""

from __future__ import annotations

import pytest

from asgi_oauth_guard._paths import PathRules, Prefixes, route_path, spellings

RULES = PathRules(require_all=True, require=(), public=["/public", "/static/"])
ADMIN = PathRules(require_all=False, require=["/admin", "/api/"], public=["/admin/help"])


@pytest.mark.parametrize(
    ("path", "protected"),
    [
        ("/", True),
        ("/public", False),
        ("/public/", False),
        ("/public/page", False),
        ("/publicity", True),
        ("/static", False),
        ("/static/app.css", False),
        ("/staticky", True),
        ("/PUBLIC", True),  # public paths compare as written
        ("/public/../api/me", True),  # a proxy resolving dots routes /api/me
        ("/public/..\\api/me", True),
        ("/public/%2e%2e/api/me", True),  # %252e from the client, decoded once by the server
        ("/public/.%2e/api/me", True),
        ("/public/..;/api/me", True),  # servlet-style ;params
        ("/public/./page", False),
        ("//public", True),  # as written (Starlette) it is not under /public
        ("/public//page", False),
        ("/public/page/..", False),
    ],
)
def test_require_all_with_public_paths(path: str, protected: bool) -> None:
    assert RULES.requires_login(path) is protected


@pytest.mark.parametrize(
    ("path", "protected"),
    [
        ("/admin", True),
        ("/admin/", True),
        ("/admin/users", True),
        ("/administrator", False),
        ("/ADMIN/users", True),  # case-insensitive routers
        ("/Admin", True),
        ("//admin", True),  # werkzeug merges slashes
        ("/x/../admin", True),
        ("/admin./users", True),  # Windows strips trailing dots
        ("/admin%20/users", True),
        ("/admin\\users", True),
        ("/api", True),  # "/api/" covers /api too
        ("/api/me", True),
        ("/apis", False),
        ("/admin/help", False),
        ("/admin/help/../users", True),
        ("/home", False),
        ("/home/..", False),
        ("/home/../admin", True),
        ("admin", True),  # not a path: read as /admin too
    ],
)
def test_require_prefixes(path: str, protected: bool) -> None:
    assert ADMIN.requires_login(path) is protected


def test_no_rule_protects_nothing() -> None:
    rules = PathRules(require_all=False, require=(), public=["/x"])
    assert not rules.requires_login("/anything/../at/all")


def test_a_slash_prefix_covers_everything() -> None:
    assert Prefixes("public_paths", ["/"]).covers("/any/path")
    assert PathRules(require_all=True, require=(), public=["/"]).requires_login("/a") is False


def test_plain_paths_have_one_spelling() -> None:
    for path in ("/", "/api/me", "/a-b_c~d/e.f", "/.well-known-not"):
        assert spellings(path) == (path,)
    assert "/api/me" in spellings("/public/../api/me")
    assert "/a/b" in spellings("/a%2Fb") and "/a/b" in spellings("//a//b")


def test_spellings_are_bounded() -> None:
    assert len(spellings("/%2e%2e\\" * 200 + ";x/.")) <= 64


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/app/auth/login", "/app", "/auth/login"),  # the root path in path (ASGI spec, current servers)
        ("/auth/login", "/app", "/auth/login"),  # older servers: not in path
        ("/app", "/app", "/"),
        ("/application", "/app", "/application"),  # not on a segment boundary
        ("/app/x", "/app/", "/x"),
        ("/x", "", "/x"),
    ],
)
def test_route_path_counts_the_root_path_once(path: str, root: str, expected: str) -> None:
    assert route_path({"path": path, "root_path": root}) == expected
