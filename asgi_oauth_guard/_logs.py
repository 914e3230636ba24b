"""Making the guard's log lines show up under uvicorn, without taking over anyone's logging.

uvicorn's default logging configures its own loggers only: the "asgi_oauth_guard" logger then has no handler,
and Python's last-resort handler prints WARNING and above as bare messages, so sign-ins and refreshes vanish.
When the guard runs under uvicorn and nobody configured logging for it (no handler on it or on the root
logger, no level set), it adds one stderr handler of its own with level, name and time. Anything configured
(``--log-config``, ``logging.basicConfig``, a handler or level on "asgi_oauth_guard") is left as it is.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["FORMAT", "log_under_uvicorn"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_HANDLER_NAME = "asgi_oauth_guard.uvicorn"


def log_under_uvicorn() -> bool:
    """Add the guard's stderr handler when uvicorn's default logging is all there is. True when added."""
    guard = logging.getLogger("asgi_oauth_guard")
    if "uvicorn" not in sys.modules or not logging.getLogger("uvicorn").handlers:
        return False
    if guard.handlers or guard.level != logging.NOTSET or logging.getLogger().handlers:
        return False
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter(FORMAT))
    guard.addHandler(handler)
    guard.setLevel(logging.getLogger("uvicorn.error").getEffectiveLevel())  # as --log-level says
    return True
