"""The guard's in-process caches: plain dicts, bounded, the oldest entries dropped first.

Dropping one entry per insert (``cache.pop(next(iter(cache)))``) is quadratic in disguise: a dict keeps
deleted slots at its front until it is resized, and ``next(iter(...))`` walks them all, a few microseconds
per insert at 10,000 entries: on every request of a session this process has not seen. Dropping the oldest
tenth at once costs the same walk once per thousand inserts.
"""

from __future__ import annotations

import itertools
from typing import TypeVar

CACHE_SIZE = 10_000  # entries in each of the guard's caches (cookies, sessions, published identities)

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> None:
    """``cache[key] = value``, first dropping the oldest tenth of ``cache`` if it holds ``limit`` entries."""
    if len(cache) >= limit and key not in cache:
        for old in list(itertools.islice(cache, max(1, limit // 10))):
            del cache[old]
    cache[key] = value
