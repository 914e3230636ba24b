"""Fixtures for testing an app behind the guard with the embedded provider. Enable them in a conftest.py:

    pytest_plugins = ["asgi_oauth_guard.testing.pytest_plugin"]

``oauth_clock``: a :class:`FakeClock` at the current time. ``oauth_provider``: a fresh
:class:`OAuthTestProvider` on that clock (issuer ``https://idp.example.test``, client ``guard-client`` /
``guard-secret``, user ``alice``); ``oauth_provider.transport()`` is the ``httpx`` transport to give the
guard under test. With :func:`~asgi_oauth_guard.testing.signed_in` and an app of your own, no fixture is
needed: it makes a provider that matches the app's guard. See docs/testing.md.
"""

from __future__ import annotations

import time

import pytest

from ._clock import FakeClock
from ._provider import OAuthTestProvider

__all__ = ["oauth_clock", "oauth_provider"]


@pytest.fixture
def oauth_clock() -> FakeClock:
    """A clock that moves only with ``oauth_clock.advance(seconds)``; give it to the guard as ``clock=``."""
    return FakeClock(start=time.time())


@pytest.fixture
def oauth_provider(oauth_clock: FakeClock) -> OAuthTestProvider:
    """The embedded OAuth 2.0 / OpenID Connect provider, on ``oauth_clock``."""
    return OAuthTestProvider(clock=oauth_clock)
