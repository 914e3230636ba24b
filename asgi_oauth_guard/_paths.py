"""Which paths need a signed-in user, decided on every way the app behind the guard could route a path.

Servers hand the app ``scope["path"]`` percent-decoded once and otherwise as the client wrote it. Frameworks
then route it differently: Starlette matches it as is, werkzeug (Flask) merges repeated slashes, a proxy in
front may have resolved dot segments or turned backslashes into slashes, a Windows-style server strips
trailing dots, a Java-style one drops ``;params``, a downstream router may decode ``%2F`` a second time.
Rather than guess one of them, :func:`spellings` gives every reading of a path, and :class:`PathRules` asks
for a login when *any* reading is protected (fail closed). Plain paths (the very most) have one reading and
cost one precompiled regex search.

Prefixes match on segment boundaries: ``"/public"`` (or ``"/public/"``, the same) covers ``/public`` and
``/public/...``, never ``/publicity``. ``"/"`` covers every path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import unquote

from starlette.types import Scope

from ._errors import ConfigurationError

__all__ = ["PathRules", "Prefixes", "route_path", "spellings"]

# What makes a path readable in more than one way: a percent sign left after the server's decoding, a
# backslash, a ";param", repeated slashes, a segment starting with a dot, a segment ending in a dot or space.
_SUSPECT = re.compile(r"[%\\;]|//|/\.|[. ](?:/|$)")
_SLASHES = re.compile(r"/{2,}")
# Browsers never send these; a route path with one is someone probing, so only a couple of decodings.
_MAX_SPELLINGS = 64


def route_path(scope: Scope) -> str:
    """The path the app routes: ``scope["path"]`` without the ``root_path`` (the mount prefix).

    ASGI servers and Starlette's ``Mount`` put the root path in ``scope["path"]`` (the ASGI spec); older
    servers did not. Like Starlette and asgiref, strip it when the path starts with it on a segment boundary,
    so the root path is counted exactly once either way."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root:
        root = root.rstrip("/")
        if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
            return path[len(root) :] or "/"
    return path


def _decoded(path: str) -> str:
    return unquote(path) if "%" in path else path


def _slashed(path: str) -> str:
    return path.replace("\\", "/")


def _trimmed(path: str) -> str:
    """Segments as Windows (trailing dots and spaces) and servlet containers (``;params``) read them."""
    segments = []
    for segment in path.split("/"):
        segment = segment.split(";", 1)[0]
        if segment not in (".", ".."):
            segment = segment.rstrip(". ")
        segments.append(segment)
    return "/".join(segments)


def _merged(path: str) -> str:
    return _SLASHES.sub("/", path)


def _resolved(path: str) -> str:
    """RFC 3986 remove_dot_segments, as proxies and URL libraries apply it."""
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if segment == "..":
            if len(out) > 1:
                out.pop()
        elif segment != "." or i == 0:
            out.append(segment)
        if segment in (".", "..") and i == len(segments) - 1:
            out.append("")
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


_STEPS: tuple[Callable[[str], str], ...] = (_decoded, _slashed, _trimmed, _merged, _resolved)


def spellings(path: str) -> tuple[str, ...]:
    """Every path the app could route for this one: the path itself, and each combination of the readings
    above that changes it (applied in a fixed order: decode, backslashes, trim, merge, resolve)."""
    if path.startswith("/") and _SUSPECT.search(path) is None:
        return (path,)
    found = [path] if path.startswith("/") else [path, "/" + path]
    for step in _STEPS:
        for candidate in list(found):
            changed = step(candidate)
            if changed not in found and len(found) < _MAX_SPELLINGS:
                found.append(changed)
    return tuple(found)


class Prefixes:
    """A set of path prefixes, each matching on segment boundaries; built once, matched with one call."""

    def __init__(self, setting: str, prefixes: Iterable[str], *, fold_case: bool = False) -> None:
        roots: list[str] = []
        for prefix in prefixes:
            if not isinstance(prefix, str) or not prefix.startswith("/"):
                raise ConfigurationError(
                    f"{setting}= entries must be paths starting with '/', such as '/health', got {prefix!r}"
                )
            root = prefix.rstrip("/")
            if (root and root != _merged(_resolved(_trimmed(root)))) or "?" in root or "%" in root:
                raise ConfigurationError(
                    f"{setting}= entry {prefix!r} is not a plain path: write it as the app routes it, "
                    "without '//', dot segments, '%', '?', ';' or a trailing dot"
                )
            roots.append(root.lower() if fold_case else root)
        self._everything = "" in roots
        self._exact = frozenset(root for root in roots if root)
        self._under = tuple(root + "/" for root in roots if root)
        self._fold = fold_case

    def __bool__(self) -> bool:
        return self._everything or bool(self._exact)

    def covers(self, path: str) -> bool:
        if self._fold:
            path = path.lower()
        return self._everything or path in self._exact or path.startswith(self._under)

    def covers_any(self, path: str) -> bool:
        """Whether any reading of ``path`` (:func:`spellings`) is covered."""
        return any(self.covers(spelling) for spelling in spellings(path))


class PathRules:
    """``require_login``, ``public_paths``: whether a route path needs a signed-in user.

    Protected when any reading of the path is protected. A reading is protected when it is not under a
    public path (compared as written: ``/PUBLIC`` is not ``/public``) and ``require_login`` covers it
    (compared ignoring case, for routers and file systems that ignore case)."""

    def __init__(self, *, require_all: bool, require: Sequence[str], public: Sequence[str]) -> None:
        self._all = require_all
        self._require = Prefixes("require_login", require, fold_case=True)
        self._public = Prefixes("public_paths", public)
        self._active = require_all or bool(self._require)

    def requires_login(self, path: str) -> bool:
        if not self._active:
            return False
        if path.startswith("/") and _SUSPECT.search(path) is None:  # a plain path: its only reading
            return not self._public.covers(path) and (self._all or self._require.covers(path))
        for spelling in spellings(path):
            if not self._public.covers(spelling) and (self._all or self._require.covers(spelling)):
                return True
        return False
