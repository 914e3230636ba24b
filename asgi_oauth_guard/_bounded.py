"""The guard's in-process cache: a plain dict, bounded, the oldest entries dropped first.

Dropping one entry per insert (``cache.pop(next(iter(cache)))``) is quadratic in disguise: a dict keeps
deleted slots at its front until it is resized, and ``next(iter(...))`` walks them all, a few microseconds
per insert at 10,000 entries: on every request of a session this process has not seen. Dropping the oldest
tenth at once costs the same walk once per thousand inserts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, TypeVar

CACHE_SIZE = 10_000  # entries in the guard's hot-path cache (published states, by session cookie)

V = TypeVar("V")


def make_room(cache: dict[Any, V], limit: int, kept: Callable[[V], bool]) -> None:
    """Make room in ``cache`` if it holds ``limit`` entries: drop its oldest tenth, but for the entries
    ``kept`` says to keep (it may change them, as a second chance clears a mark), which go to the back.
    When ``kept`` kept them all, the next tenth goes whatever it says, so the cache stays bounded."""
    if len(cache) < limit:
        return
    tenth = max(1, limit // 10)
    for key in list(itertools.islice(cache, tenth)):
        value = cache.pop(key)
        if kept(value):
            cache[key] = value
    if len(cache) >= limit:
        for key in list(itertools.islice(cache, tenth)):
            del cache[key]
