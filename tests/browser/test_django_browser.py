"""The Django example in Chromium: a sign-in on the provider's page, a refresh, a re-login, as in the demo.

The example (Django's ASGI application behind the guard, the embedded provider at /idp) is served by uvicorn
in a thread of this process, so the tests read the provider's records.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import uvicorn

from asgi_oauth_guard.testing import OAuthTestProvider
from examples import django_app
from examples._settings import Settings

from .test_browser import SIGN_IN_AS_ALICE, Demo, browser, context, expect, page  # noqa: F401

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


@pytest.fixture
def django_demo() -> Iterator[Demo]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings.from_env({"PUBLIC_URL": base})  # as `scripts/demo django` runs it
    provider = OAuthTestProvider(
        issuer=settings.embedded_issuer,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        access_token_ttl=settings.demo_token_lifetime,
        auto_approve=False,
    )
    config = uvicorn.Config(
        django_app.create_app(settings, idp=provider),
        lifespan="on",
        log_level="warning",
        ws="none",
        loop="asyncio",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start the Django example"
        time.sleep(0.02)  # polling readiness, bounded by the deadline
    try:
        yield Demo(base, provider)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_sign_in_refresh_and_relogin_on_the_django_example(page: Page, django_demo: Demo) -> None:  # noqa: F811
    demo = django_demo
    page.goto(f"{demo.base}/")
    expect(page.locator("h1")).to_have_text("asgi-oauth-guard: Django example")
    expect(page.locator("#status")).to_have_text("You are not signed in.")
    page.click("#sign-in")
    expect(page.locator("h1")).to_have_text("Sign in")  # the provider's page
    page.click(SIGN_IN_AS_ALICE)
    page.wait_for_url(f"{demo.base}/")
    expect(page.locator("#user")).to_have_text("Alice")
    assert demo.exchanges() == 1
    page.click("#expire")  # a sync Django view calls the provider with the user's token: a refresh
    expect(page.locator("#refreshes")).to_have_text("1")
    page.click("#revoke")
    expect(page.locator("#reason")).to_have_attribute("data-reason", "refresh_rejected")
    page.click("#sign-in")
    page.click(SIGN_IN_AS_ALICE)
    page.wait_for_url(f"{demo.base}/")
    expect(page.locator("#user")).to_have_text("Alice")
    assert demo.exchanges() == 2
