"""JSON for the guard's own records (sessions, logins, their outcomes): orjson when it is installed (the
``speedups`` extra), else the standard library. Each reads what the other wrote, so workers with and
without the extra share one store during a rolling deploy.

orjson reads a 2 KB session in a third of the time and writes it in a fifteenth, on the path of a session
a process has not seen yet (a busy app's common case behind a load balancer without affinity). What it
does not take is left to the standard library: writing an integer beyond 64 bits or a key that is not a
string, reading ``NaN``, ``Infinity`` or an integer beyond 64 bits. One difference is kept: orjson writes a
``NaN`` or infinite float as ``null`` where the standard library writes ``NaN`` (not JSON); neither occurs
in what the guard writes, and a provider's claim holding one is read back as ``None``.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the extra is installed in the test suite; tests patch it out
    _orjson = None  # type: ignore[assignment]

__all__ = ["dumps", "loads", "using_orjson"]


def using_orjson() -> bool:
    """Whether records are read and written with orjson (the benchmark reports orjson's version too)."""
    return _orjson is not None


def dumps(value: Any) -> bytes:
    """Compact JSON bytes of ``value`` (dicts, lists, strings, numbers, booleans, ``None``)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(value)
        except TypeError:  # an integer beyond 64 bits, a key that is not a string: as json writes them
            pass
    return json.dumps(value, separators=(",", ":")).encode()


def loads(data: bytes | memoryview | str) -> Any:
    """The value of JSON ``data``; raises ``ValueError`` (``json.JSONDecodeError``) when it is not JSON."""
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:  # NaN, Infinity, integers beyond 64 bits: json reads them
            pass
    return json.loads(bytes(data) if isinstance(data, memoryview) else data)
