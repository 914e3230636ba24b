"""Every page the guard shows people, in Chromium: reached the way people reach them, checked for
accessibility (lang, one h1, names and labels, contrast computed from the computed styles, visible focus) in
the light and the dark scheme, loading nothing from anywhere. ``DEMO_SCREENSHOTS=1`` saves each one to
``docs/img/page-<kind>.png`` (``scripts/screenshots`` does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route, Router

from asgi_oauth_guard import OAuthGuard, current_identity
from asgi_oauth_guard.testing import OAuthTestProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY
from .test_browser import SIGN_IN_AS_ALICE, browser, context, expect, page, screenshot, serve_in_thread

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = ["browser", "context", "page"]  # the fixtures of test_browser.py, shared

pytestmark = pytest.mark.browser


@dataclasses.dataclass
class Site:
    base: str
    guard: OAuthGuard
    provider: OAuthTestProvider


@contextlib.contextmanager
def serve_site() -> Iterator[Site]:
    """An app behind the guard (``relogin="page"``, ``/private`` needs a user), the test provider at
    ``/idp``, and ``/gallery/chooser`` showing the page no flow reaches yet (one provider only, so far)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    provider = OAuthTestProvider(
        issuer=base + "/idp", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, auto_approve=False
    )
    http = httpx.AsyncClient(transport=provider.transport())

    async def home(request: Request) -> HTMLResponse:
        identity = current_identity()
        return HTMLResponse(f'<p id="user">{identity.sub if identity else "anonymous"}</p>')

    guard = OAuthGuard(
        Starlette(routes=[Route("/", home), Route("/private", home)]),
        issuer=provider.issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        secret_key=SECRET_KEY,
        http_client=http,
        public_url=base,
        relogin="page",
        require_login=["/private"],
    )

    async def gallery(request: Request) -> Response:
        pages = guard._pages
        choices = [("Example ID", "/auth/login?provider=example"), ("Other ID", "/auth/login?provider=o")]
        answer = await pages.page(request, "chooser", message=pages.text("chooser.message"), choices=choices)
        assert isinstance(answer, Response)
        return answer

    async def refused(request: Request) -> Response:
        # What a sign-in the app's on_login turned away shows (its flow is in tests/test_on_login.py).
        message = "This account is suspended. Write to support@example.test."
        answer = await guard._pages.refused(request, message, sign_in_url="/auth/login?next=%2F")
        assert isinstance(answer, Response)
        return answer

    @contextlib.asynccontextmanager
    async def closing(app: object) -> AsyncIterator[None]:
        yield
        await http.aclose()

    app = Router(
        routes=[
            Mount("/idp", app=provider),
            Route("/gallery/chooser", gallery),
            Route("/gallery/refused", refused),
        ],
        default=guard,
        lifespan=closing,
    )
    with serve_in_thread(app, sock):
        yield Site(base, guard, provider)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with serve_site() as served:
        yield served


# Measured in the page from its computed styles: lang, headings, names, contrast of every text against
# the background it is painted on (alpha-blended up the tree), and the focus ring of the focused element.
AUDIT = """() => {
  const rgba = (value) => {
    const m = value.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, below) => {
    const a = top[3] + below[3] * (1 - top[3]);
    if (a === 0) return [0, 0, 0, 0];
    return [0, 1, 2].map(i => (top[i] * top[3] + below[i] * below[3] * (1 - top[3])) / a).concat([a]);
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) layers.push(rgba(getComputedStyle(e).backgroundColor));
    let color = [255, 255, 255, 1];  // the canvas
    const root = getComputedStyle(document.documentElement).colorScheme;
    if (matchMedia('(prefers-color-scheme: dark)').matches && root.includes('dark')) color = [18, 18, 18, 1];
    for (const layer of layers.reverse()) color = over(layer, color);
    return color;
  };
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => {
    const [l1, l2] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (l1 + 0.05) / (l2 + 0.05);
  };
  const texts = [];
  for (const el of document.body.querySelectorAll('*')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    const bg = background(el);
    texts.push({tag: el.tagName, text: el.textContent.trim().slice(0, 40),
                ratio: ratio(over(rgba(style.color), bg), bg), size: parseFloat(style.fontSize)});
  }
  const unnamed = [...document.querySelectorAll('a, button, input, select, textarea')]
    .filter(el => !(el.innerText || el.getAttribute('aria-label') || (el.labels && el.labels.length)))
    .map(el => el.outerHTML);
  const unlabelled = [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).map(el => el.outerHTML);
  const f = document.activeElement;
  let focus = null;
  if (f && f !== document.body) {
    const s = getComputedStyle(f);
    const ring = rgba(s.outlineColor);
    focus = {tag: f.tagName, style: s.outlineStyle, width: parseFloat(s.outlineWidth),
             ratio: ratio(ring, background(f.parentElement))};
  }
  return {lang: document.documentElement.lang, h1: document.querySelectorAll('h1').length,
          title: document.title, texts, unnamed, unlabelled, focus,
          main: document.querySelectorAll('main').length,
          scripts: document.scripts.length, home: !!document.querySelector('a#home')};
}"""


def audit(page: Page, where: str) -> dict[str, Any]:
    """The accessibility checks, in both color schemes; returns the light scheme's measures."""
    results = {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.reload()  # focus navigation starts from the top again
        page.keyboard.press("Tab")  # the first control takes the focus, as with the keyboard
        found: dict[str, Any] = page.evaluate(AUDIT)
        results[scheme] = found
        assert found["lang"], where
        assert found["h1"] == 1 and found["main"] == 1 and found["title"], where
        assert found["unnamed"] == [] and found["unlabelled"] == [], (where, found)
        assert found["scripts"] == 0, where  # nothing needs JavaScript
        assert found["home"], f"{where}: no link back to the app"
        for text in found["texts"]:  # WCAG AA: 4.5:1 for body text (3:1 only from 24px)
            needed = 3.0 if text["size"] >= 24 else 4.5
            assert text["ratio"] >= needed, (where, scheme, text)
        focus = found["focus"]
        assert focus is not None and focus["tag"] in ("A", "BUTTON"), (where, found)
        assert focus["style"] != "none" and focus["width"] >= 2 and focus["ratio"] >= 3, (
            where,
            scheme,
            focus,
        )
    page.emulate_media(color_scheme="light")
    return results["light"]


def check(page: Page, kind: str, name: str) -> None:
    expect(page.locator("#reason")).to_have_attribute("data-kind", kind)
    audit(page, name)
    page.reload()  # without the focus the audit left
    screenshot(page, f"page-{name}.png")
    if name == "sign-in":
        page.emulate_media(color_scheme="dark")
        screenshot(page, "page-sign-in-dark.png")
        page.emulate_media(color_scheme="light")


def test_every_guard_page_is_accessible_and_loads_nothing(page: Page, site: Site) -> None:
    base = site.base
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    page.goto(f"{base}/private")  # relogin="page": the sign-in page
    check(page, "sign_in", "sign-in")
    expect(page.locator("#sign-in")).to_have_text("Sign in")

    page.goto(f"{base}/auth/login?reason=access_denied")
    check(page, "cancelled", "cancelled")

    page.goto(f"{base}/auth/login?reason=state_expired")
    check(page, "failed", "failed")

    page.goto(f"{base}/auth/callback")  # nothing came with the visit
    check(page, "failed", "callback-empty")
    expect(page.locator("#reason")).to_contain_text("Start the sign-in from the app")

    page.goto(f"{base}/auth/callback?error=unauthorized_client&state=x")
    check(page, "misconfigured", "misconfigured")
    expect(page.locator("h1")).to_have_text("Sign-in is misconfigured")

    page.goto(f"{base}/auth/callback?error=temporarily_unavailable&state=x")
    check(page, "unavailable", "unavailable")

    page.goto(f"{base}/auth/login?reason=logged_out")
    check(page, "signed_out", "signed-out")

    page.goto(f"{base}/auth/logout")  # a GET: the confirm page, whose button posts
    check(page, "logout_confirm", "logout-confirm")
    expect(page.locator("form#sign-out, form button#sign-out")).to_have_count(1)

    page.goto(f"{base}/gallery/chooser")
    check(page, "chooser", "chooser")

    page.goto(f"{base}/gallery/refused")
    check(page, "refused", "refused")
    expect(page.locator("#reason")).to_contain_text("This account is suspended.")

    assert all(r.startswith(base) for r in requests), requests  # no external asset on any page
    documents = {r.split("?")[0] for r in requests}
    assert not any(r.endswith((".css", ".js", ".png", ".svg", ".woff2", ".ico")) for r in documents), requests


def test_the_pages_buttons_work_with_the_keyboard_and_without_javascript(site: Site, browser: Any) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{site.base}/private")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")  # "Sign in" -> the provider's page
        expect(page.locator(SIGN_IN_AS_ALICE)).to_be_visible()
        page.click(SIGN_IN_AS_ALICE)
        page.wait_for_url(f"{site.base}/private")
        expect(page.locator("#user")).to_have_text("alice")
    finally:
        context.close()


def test_a_page_hook_and_translated_texts_replace_the_guards_pages(page: Page, site: Site) -> None:
    pages = site.guard._pages
    saved = pages._texts, pages._hook
    try:
        pages._texts = {**pages._texts, "lang": "fr", "failed.title": "La connexion n'a pas abouti"}
        page.goto(f"{site.base}/auth/login?reason=state_expired")
        expect(page.locator("h1")).to_have_text("La connexion n'a pas abouti")
        assert audit(page, "translated")["lang"] == "fr"
        pages._hook = lambda p: HTMLResponse(f"<h1>{p.kind}:{p.reason}</h1>", status_code=p.status)
        page.goto(f"{site.base}/auth/login?reason=code_expired")
        expect(page.locator("h1")).to_have_text("failed:code_expired")
    finally:
        pages._texts, pages._hook = saved
