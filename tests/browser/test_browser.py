"""The demo in a real browser: Debian's Chromium driven by Playwright, against the demo app served by uvicorn.

The demo app (the Starlette example, the embedded provider with its sign-in page) runs in a thread of this
process, so the tests read the provider's records. Set ``DEMO_SCREENSHOTS=1`` to save the home page's
screenshots to ``docs/img/`` (``scripts/screenshots`` does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn

from asgi_oauth_guard.testing import OAuthTestProvider
from examples import starlette_app
from examples._demo import DemoClock
from examples._settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MISSING = (
    "The browser tests need Playwright for Python and Debian's Chromium at /usr/bin/chromium: "
    "run the test command from the README (it installs the test extras and chromium), "
    "e.g. pip install -e '.[test]' && apt-get install chromium"
)
SIGN_IN_AS_ALICE = 'button[name="sub"][value="alice"]'


@dataclasses.dataclass
class Demo:
    base: str
    provider: OAuthTestProvider

    def exchanges(self) -> int:
        return self.provider.count(endpoint="token", grant_type="authorization_code")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.fail(MISSING, pytrace=False)
    if not (Path(CHROMIUM).exists() and shutil.which(CHROMIUM)):
        pytest.fail(MISSING, pytrace=False)
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as exc:
            pytest.fail(f"{MISSING}\n\nChromium did not start: {exc}", pytrace=False)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def serve_demo(public_host: str = "127.0.0.1", example: ModuleType = starlette_app) -> Iterator[Demo]:
    """The demo app (``example``, the Starlette one by default) served by uvicorn on a loopback socket opened
    here, in a thread of this process, with ``PUBLIC_URL`` on ``public_host`` (``localhost`` is the same
    socket under another origin)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://{public_host}:{sock.getsockname()[1]}"
    settings = Settings.from_env({"PUBLIC_URL": base})  # as scripts/demo runs it: a sign-in page, 30 s tokens
    clock = DemoClock()  # as the demo's: the experiments move it forward, for the guard and the provider
    provider = OAuthTestProvider(
        issuer=settings.embedded_issuer,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        access_token_ttl=settings.demo_token_lifetime,
        auto_approve=False,
        clock=clock,
    )
    with serve_in_thread(example.create_app(settings, idp=provider, clock=clock), sock):
        yield Demo(base, provider)


@contextlib.contextmanager
def serve_in_thread(app: Any, sock: socket.socket) -> Iterator[None]:
    """``app`` served by uvicorn on ``sock`` in a thread of this process, until the block ends."""
    config = uvicorn.Config(app, lifespan="on", log_level="warning", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start serving the app"
        time.sleep(0.02)  # polling readiness, bounded by the deadline
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def demo() -> Iterator[Demo]:
    with serve_demo() as served:
        yield served


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 900, "height": 520})
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def expect(target: Any) -> Any:
    from playwright.sync_api import expect

    return expect(target)


def screenshot(page: Page, name: str) -> None:
    if os.environ.get("DEMO_SCREENSHOTS") == "1":
        path = ROOT / "docs" / "img" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)


def sign_in(page: Page, demo: Demo, next_path: str = "/") -> None:
    page.goto(f"{demo.base}/auth/login?next={next_path}")
    page.click(SIGN_IN_AS_ALICE)
    page.wait_for_url(f"{demo.base}{next_path}")


def test_sign_in_by_clicking(page: Page, demo: Demo) -> None:
    page.goto(f"{demo.base}/")
    expect(page.locator("#status")).to_have_text("You are not signed in.")
    screenshot(page, "demo-signed-out.png")
    page.click("#sign-in")
    expect(page.locator("h1")).to_have_text("Sign in")  # the provider's page
    page.click(SIGN_IN_AS_ALICE)
    page.wait_for_url(f"{demo.base}/")
    expect(page.locator("#user")).to_have_text("Alice")
    expect(page.locator("#refreshes")).to_have_text("0")
    screenshot(page, "demo-signed-in.png")
    assert demo.exchanges() == 1


def test_double_click_on_the_providers_button_exchanges_once(page: Page, demo: Demo) -> None:
    page.goto(f"{demo.base}/auth/login?next=/")
    # Depending on timing, Chromium posts the form once or twice; a second post gets a second code for the
    # same state, which the guard does not exchange: it answers with the first exchange's session.
    page.dblclick(SIGN_IN_AS_ALICE)
    page.wait_for_url(f"{demo.base}/")
    expect(page.locator("#user")).to_have_text("Alice")
    page.reload()
    expect(page.locator("#user")).to_have_text("Alice")
    assert demo.exchanges() == 1


def test_back_onto_the_callback_after_login_lands_on_next(page: Page, demo: Demo) -> None:
    callbacks: list[str] = []
    page.on("request", lambda r: callbacks.append(r.url) if "/auth/callback?" in r.url else None)
    sign_in(page, demo, "/public")
    assert len(callbacks) == 1
    page.goto(callbacks[0])  # as the back button or a restored tab does
    page.wait_for_url(f"{demo.base}/public")
    page.goto(f"{demo.base}/")
    expect(page.locator("#user")).to_have_text("Alice")
    assert demo.exchanges() == 1


def test_two_tabs_log_in_at_once(context: BrowserContext, demo: Demo) -> None:
    first, second = context.new_page(), context.new_page()
    first.goto(f"{demo.base}/auth/login?next=/")
    second.goto(f"{demo.base}/auth/login?next=/public")
    for tab in (first, second):  # submit both sign-in forms without waiting for either
        tab.evaluate(f"document.querySelector('{SIGN_IN_AS_ALICE}').click()")
    first.wait_for_url(f"{demo.base}/")
    second.wait_for_url(f"{demo.base}/public")
    for tab in (first, second):
        tab.goto(f"{demo.base}/")
        expect(tab.locator("#user")).to_have_text("Alice")
    assert demo.exchanges() == 2


def test_expiring_the_token_refreshes_it(page: Page, demo: Demo) -> None:
    sign_in(page, demo)
    page.click("#expire")
    expect(page.locator("#refreshes")).to_have_text("1")
    expect(page.locator("#user")).to_have_text("Alice")


def test_revoking_the_grant_asks_to_sign_in_again(page: Page, demo: Demo) -> None:
    sign_in(page, demo)
    page.click("#revoke")
    expect(page.locator("#reason")).to_have_attribute("data-reason", "refresh_rejected")
    expect(page.locator("#reason")).to_contain_text("no longer valid")
    screenshot(page, "demo-relogin.png")
    page.click("#sign-in")
    page.click(SIGN_IN_AS_ALICE)
    page.wait_for_url(f"{demo.base}/")
    expect(page.locator("#user")).to_have_text("Alice")
    assert demo.exchanges() == 2


FIRST_MESSAGE = """url => new Promise(resolve => {
  const socket = new WebSocket(url);
  socket.onmessage = event => { resolve(event.data); socket.close(); };
  socket.onclose = event => resolve("closed " + event.code);
})"""


def test_the_pages_socket_and_sign_out_button_work_and_another_origins_page_gets_neither(
    page: Page, demo: Demo
) -> None:
    """Chromium sends Origin itself. http://localhost:port is the same server seen as another origin."""
    sign_in(page, demo)
    socket_url = demo.base.replace("http://", "ws://") + "/ws"
    assert page.evaluate(FIRST_MESSAGE, socket_url) == "alice"
    other = demo.base.replace("127.0.0.1", "localhost")
    page.goto(f"{other}/public")
    assert page.evaluate(FIRST_MESSAGE, socket_url) == "closed 1006"  # refused at the handshake
    page.set_content(
        f'<form method="post" action="{demo.base}/auth/logout"><button id="go">go</button></form>'
    )
    with page.expect_response(f"{demo.base}/auth/logout") as answer:
        page.click("#go")
    assert answer.value.status == 403
    page.goto(f"{demo.base}/")
    expect(page.locator("#user")).to_have_text("Alice")  # still signed in
    page.click("#sign-out")
    page.wait_for_url(f"{demo.base}/")
    expect(page.locator("#status")).to_have_text("You are not signed in.")
    assert demo.provider.count(endpoint="revoke") == 1


def test_a_sign_in_started_on_127_0_0_1_with_localhost_as_public_url_succeeds_first_time(page: Page) -> None:
    # PUBLIC_URL=http://localhost:PORT while uvicorn prints http://127.0.0.1:PORT: the sign-in moves to the
    # public origin first, so the sign-in cookie is set where the callback reads it.
    with serve_demo(public_host="localhost") as demo:
        other = demo.base.replace("localhost", "127.0.0.1")
        page.goto(f"{other}/")
        expect(page.locator("#status")).to_have_text("You are not signed in.")
        page.click("#sign-in")
        expect(page.locator("h1")).to_have_text("Sign in")  # the provider's page, on the public origin
        assert page.url.startswith(f"{demo.base}/idp/")
        page.click(SIGN_IN_AS_ALICE)
        page.wait_for_url(f"{demo.base}/")
        expect(page.locator("#user")).to_have_text("Alice")
        assert demo.exchanges() == 1


def provider_counts(provider: OAuthTestProvider) -> dict[str, int]:
    """The provider's own records, counted here (not by the demo's code)."""
    calls = provider.calls
    return {
        "exchanges": sum(c.endpoint == "token" and c.grant_type == "authorization_code" for c in calls),
        "refreshes": sum(
            c.endpoint == "token" and c.grant_type == "refresh_token" and c.status > 0 for c in calls
        ),
        "invalid_grant": sum(c.endpoint == "token" and c.error == "invalid_grant" for c in calls),
        "revocations": sum(c.endpoint == "revoke" for c in calls),
    }


PROVIDER_LABELS = {
    "exchanges": "code exchanges",
    "refreshes": "refresh requests",
    "invalid_grant": "invalid_grant answers",
    "revocations": "revocations",
}
# What each experiment must make the guard do, beside what the provider records.
EXPECTED = {
    "duplicate-callbacks": {"exchanges": 1, "duplicates": 4},
    "stampede": {"refreshes": 1, "shared": 49},
    "revoke": {"refresh_failures": 1, "relogins": 1},
    "sign-out-elsewhere": {"sign_outs": 1},
    "provider-down": {"refresh_failures": 2},
}
GUARD_LABELS = {
    "exchanges": "code exchanges",
    "duplicates": "duplicates absorbed",
    "refreshes": "refreshes",
    "shared": "shared refreshes",
    "refresh_failures": "failed refreshes",
    "relogins": "re-logins",
    "sign_outs": "sign-outs",
}


def try_experiment(page: Page, demo: Demo, name: str) -> None:
    """Click the experiment's button; the result panel's counts are the provider's own records of it."""
    before = provider_counts(demo.provider)
    page.click(f"#try-{name}")
    expect(page.locator("#result")).to_have_attribute("data-experiment", name, timeout=30_000)
    after = provider_counts(demo.provider)
    for key, label in PROVIDER_LABELS.items():
        expect(page.locator(f"#result-provider-{key}")).to_have_text(
            f"provider {label}: {after[key] - before[key]}"
        )
    for key, value in EXPECTED[name].items():
        expect(page.locator(f"#result-guard-{key}")).to_have_text(f"{GUARD_LABELS[key]}: {value}")
    # The running totals (polled each second) are the provider's too, and the guard's agree with them.
    for key in PROVIDER_LABELS:
        expect(page.locator(f"#provider-{key}")).to_have_text(str(after[key]))
    expect(page.locator("#guard-exchanges")).to_have_text(str(after["exchanges"]))
    expect(page.locator("#guard-sign_outs")).to_have_text(str(after["revocations"]))


def save_timeline(page: Page, name: str) -> None:
    if os.environ.get("DEMO_SCREENSHOTS") == "1":
        svg = page.locator("#result-timeline svg").evaluate("svg => svg.outerHTML")
        (ROOT / "docs" / "img" / name).write_text(svg + "\n")


def test_each_demo_experiment_shows_the_providers_own_counts(page: Page, demo: Demo) -> None:
    sign_in(page, demo)
    expect(page.locator("#guard-exchanges")).to_have_text("1")
    expect(page.locator("#timeline li[data-kind=login]")).to_have_count(1)

    try_experiment(page, demo, "duplicate-callbacks")
    expect(page.locator("#result-did")).to_contain_text("Grant alive: yes")
    screenshot(page, "demo-experiment-duplicates.png")
    save_timeline(page, "timeline-duplicate-callbacks.svg")
    expect(page.locator("#timeline li[data-kind=duplicate_absorbed]")).to_have_count(4)

    try_experiment(page, demo, "stampede")
    expect(page.locator("#result-did")).to_contain_text("50 of 50 answered 200")
    screenshot(page, "demo-experiment-stampede.png")
    save_timeline(page, "timeline-stampede.svg")

    try_experiment(page, demo, "revoke")
    page.goto(f"{demo.base}/")  # what the page's next poll does: it reloads, asked to sign in again
    expect(page.locator("#reason")).to_have_attribute("data-reason", "refresh_rejected")

    sign_in(page, demo)
    try_experiment(page, demo, "sign-out-elsewhere")
    page.goto(f"{demo.base}/")
    expect(page.locator("#status")).to_have_text("You are not signed in.")

    sign_in(page, demo)
    page.eval_on_selector("#try-provider-down", "button => { button.dataset.seconds = '1'; }")
    try_experiment(page, demo, "provider-down")
    expect(page.locator("#result-did")).to_contain_text("kept the session")
    # The experiment's answer says the provider is down (the page shows that, not a poll's older "up").
    assert page.evaluate("JSON.parse(sessionStorage.getItem('demo-result')).provider_down") is True
    # The demo's poll brings the provider back after 1 s; the page then says up, and only then can the
    # next request's refresh succeed.
    expect(page.locator("#provider-state")).to_have_text("up", timeout=30_000)
    page.wait_for_function(
        "async () => !(await (await fetch('demo/events')).json()).provider_down", polling=200, timeout=30_000
    )
    assert not demo.provider.down
    page.goto(f"{demo.base}/")  # the expired token is refreshed now: the session lived through it
    expect(page.locator("#user")).to_have_text("Alice")
    assert provider_counts(demo.provider)["exchanges"] == demo.exchanges() == 4
