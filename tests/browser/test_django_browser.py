"""The Django example in Chromium: a sign-in on the provider's page, a refresh, a re-login, as in the demo.

The example (Django's ASGI application behind the guard, the embedded provider at /idp) is served by uvicorn
in a thread of this process, so the tests read the provider's records.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from examples import django_app

from .test_browser import SIGN_IN_AS_ALICE, Demo, browser, context, expect, page, serve_demo  # noqa: F401

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


@pytest.fixture
def django_demo() -> Iterator[Demo]:
    with serve_demo(example=django_app) as served:  # as `scripts/demo django` runs it
        yield served


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
