"""The guard's own log handler: added under uvicorn's default logging only, never over anyone's config."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pytest
import uvicorn

from asgi_oauth_guard._logs import FORMAT, log_under_uvicorn


@pytest.fixture
def bare_logging() -> Iterator[None]:
    """As uvicorn's default config leaves it: a handler on "uvicorn", none on the root or the guard."""
    assert uvicorn.Config  # imported: the app runs under uvicorn
    guard, server, errors = (logging.getLogger(n) for n in ("asgi_oauth_guard", "uvicorn", "uvicorn.error"))
    saved = (guard.handlers[:], guard.level, server.handlers[:], server.level, errors.level)
    guard.handlers[:] = []
    guard.setLevel(logging.NOTSET)
    server.handlers[:] = [logging.NullHandler()]
    server.setLevel(logging.INFO)  # uvicorn's default --log-level
    errors.setLevel(logging.NOTSET)  # other tests' uvicorn servers may have set it
    try:
        yield
    finally:
        guard.handlers[:] = saved[0]
        guard.setLevel(saved[1])
        server.handlers[:] = saved[2]
        server.setLevel(saved[3])
        errors.setLevel(saved[4])


@contextlib.contextmanager
def no_root_handlers() -> Iterator[None]:
    """Without pytest's capture handler on the root logger, for the length of a test's body."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = []
    try:
        yield
    finally:
        root.handlers[:] = saved


@pytest.mark.usefixtures("bare_logging")
def test_under_uvicorns_default_logging_the_guard_adds_one_handler_with_level_name_and_time() -> None:
    guard = logging.getLogger("asgi_oauth_guard")
    with no_root_handlers():
        assert log_under_uvicorn() is True
        assert log_under_uvicorn() is False  # a second guard adds nothing
    assert len(guard.handlers) == 1 and guard.level == logging.INFO
    formatter = guard.handlers[0].formatter
    assert formatter is not None and formatter._fmt == FORMAT
    assert "%(asctime)s" in FORMAT and "%(levelname)s" in FORMAT and "%(name)s" in FORMAT


@pytest.mark.usefixtures("bare_logging")
@pytest.mark.parametrize("configured", ["root handler", "guard handler", "guard level", "no uvicorn"])
def test_any_logging_configuration_is_left_alone(configured: str) -> None:
    guard = logging.getLogger("asgi_oauth_guard")
    if configured == "root handler":
        assert logging.getLogger().handlers  # as after logging.basicConfig or --log-config
        assert log_under_uvicorn() is False and guard.handlers == []
        return
    if configured == "guard handler":
        guard.addHandler(logging.NullHandler())
    elif configured == "guard level":
        guard.setLevel(logging.WARNING)
    else:
        logging.getLogger("uvicorn").handlers[:] = []  # another server
    before = guard.handlers[:]
    with no_root_handlers():
        assert log_under_uvicorn() is False
    assert guard.handlers == before
