"""Property tests: whatever a client sends to any route, the guard answers sanely and leaks nothing.

Requests are raw ASGI calls built by hand, so arbitrary bytes (non-UTF-8 query strings, odd header
values, broken cookies) reach the guard exactly as a server would hand them over. One guard, its test
provider and a signed-in browser live in an event loop on a blocking portal (per backend, per module);
each example is one call into it. No faults are injected here, so no 5xx is acceptable except the 503s
the protocol prescribes: a callback the provider reports as failing (``error=temporarily_unavailable``)
and a speculative load of the callback (``HEAD``, ``Sec-Purpose: prefetch``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import anyio
import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.types import Message

from asgi_oauth_guard import MemoryStore, OAuthGuard, current_identity
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET, ISSUER, SECRET_KEY

APP = "app.test"
LOGIN, CALLBACK, LOGOUT = "/auth/login", "/auth/callback", "/auth/logout"
ROUTES = [LOGIN, CALLBACK, LOGOUT, "/me", "/api/me", "/public", "/"]
NEAR_ROUTES = ["/auth/login/", "/AUTH/LOGIN", "/auth/callback/x", "/auth", "/me/../auth/logout", "/pub\u00e9"]
SESSION, BINDING = "guard_session", "guard_session_tx"
# A session cookie: `guard_session=<something>` (the logout's `guard_session=` clears it and is fine).
SESSION_SET = re.compile(rb"^\s*guard_session=[^;\s]")
SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclasses.dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header_values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name]


async def whoami(request: Request) -> JSONResponse:
    identity = current_identity()
    return JSONResponse({"user": identity.sub if identity is not None else None})


async def public(request: Request) -> PlainTextResponse:
    return PlainTextResponse("public")


class World:
    """A guard (trusting forwarded headers from 127.0.0.0/8), its provider, and one signed-in browser."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.provider = OAuthTestProvider(
            issuer=ISSUER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=self.clock
        )
        self.http = httpx.AsyncClient(transport=self.provider.transport())
        app = Starlette(
            routes=[
                Route("/", whoami),
                Route("/me", whoami),
                Route("/api/me", whoami, methods=["GET", "POST"]),
                Route("/public", public),
            ]
        )
        self.guard = OAuthGuard(
            app,
            issuer=ISSUER,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            secret_key=SECRET_KEY,
            http_client=self.http,
            clock=self.clock,
            store=MemoryStore(clock=self.clock),
            require_login=["/me", "/api/"],
            trusted_proxies=["127.0.0.0/8"],
            http_timeout=1,
        )
        self.browser = httpx.AsyncClient(
            transport=httpx.ASGITransport(self.guard),
            base_url=f"http://{APP}",
            headers={"accept": "text/html"},
        )
        self.session = ""
        self.binding = ""
        self.session_cookies: set[str] = set()

    async def aclose(self) -> None:
        await self.browser.aclose()
        await self.http.aclose()

    async def start_login(self, next_path: str = "/me") -> str:
        """A login in the world's browser, up to the provider's redirect back: the callback URL."""
        response = await self.browser.get(LOGIN, params={"next": next_path})
        assert response.status_code == 303
        self.binding = self.browser.cookies[BINDING]
        return await self.provider.complete_authorization(response.headers["location"])

    async def signed_in(self) -> None:
        """Make sure the browser holds a working session (a fuzzed logout may have ended it)."""
        if self.session:
            opened = self.guard._keyring.open_session_cookie(self.session)
            assert opened is not None
            found = await self.guard._sessions.load(*opened)
            if found is not None and found.tokens is not None:
                return
        callback = await self.start_login()
        done = await self.browser.get(callback)
        assert done.status_code == 303, done.text
        self.session = self.browser.cookies[SESSION]
        self.session_cookies.add(self.session)

    def secrets(self) -> list[str]:
        """What must never show in a page, or in a header other than the one that carries it by design."""
        verifiers = [c.params.get("code_verifier", "") for c in self.provider.calls]
        values = [CLIENT_SECRET, SECRET_KEY, *self.provider.issued_secrets(), *verifiers]
        return [v for v in values if len(v) >= 8]

    async def call(
        self,
        *,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
        scheme: str,
    ) -> Answer:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": scheme,
            "path": path,
            "raw_path": quote(path).encode("ascii"),
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": client,
            "server": (APP, 443 if scheme == "https" else 80),
        }
        messages: list[Message] = []
        done = anyio.Event()
        received = False

        async def receive() -> Message:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            messages.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done.set()

        # Nothing is injected here, so nothing should wait: a duplicate waiting for an outcome that is
        # never recorded would show as a timeout.
        with anyio.fail_after(3):
            await self.guard(scope, receive, send)
        assert messages and messages[0]["type"] == "http.response.start", messages
        bodies = messages[1:]
        assert bodies and all(m["type"] == "http.response.body" for m in bodies)
        assert not bodies[-1].get("more_body", False)
        status = messages[0]["status"]
        assert isinstance(status, int)
        headers_out = [(bytes(k), bytes(v)) for k, v in messages[0].get("headers", [])]
        return Answer(status, headers_out, b"".join(m.get("body", b"") for m in bodies))


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def portal(request: pytest.FixtureRequest) -> Iterator[BlockingPortal]:
    with start_blocking_portal(backend=request.param) as portal:
        yield portal


@pytest.fixture(scope="module")
def world(portal: BlockingPortal) -> Iterator[World]:
    world = portal.call(_make_world)
    try:
        yield world
    finally:
        portal.call(world.aclose)


async def _make_world() -> World:
    world = World()
    await world.signed_in()
    return world


# -- what the guard must never do ----------------------------------------------------------------------


def check(
    world: World,
    answer: Answer,
    *,
    path: str,
    method: str,
    headers: list[tuple[bytes, bytes]],
    query: bytes,
    may_set_session: bool = False,
) -> None:
    status = answer.status
    prefetch = any(
        k in (b"sec-purpose", b"purpose", b"x-moz")
        and (b"prefetch" in v.lower() or b"prerender" in v.lower())
        for k, v in headers
    )
    provider_outage = bool(re.search(rb"(^|&)error=(temporarily_unavailable|server_error)(&|$)", query))
    if status >= 500:
        expected_503 = path == CALLBACK and (method == "HEAD" or prefetch or provider_outage)
        assert status == 503 and expected_503, f"{status} for {method} {path}: {answer.body[:300]!r}"
        assert answer.header_values(b"retry-after"), "a 503 without Retry-After"
    assert 200 <= status < 600
    assert b"Traceback" not in answer.body and b'File "' not in answer.body

    for name, value in answer.headers:
        assert b"\r" not in value and b"\n" not in value and b"\x00" not in value, (name, value)

    secrets = world.secrets()
    body = answer.body.decode("latin-1")
    leaked = [s for s in secrets if s in body]
    assert not leaked, f"a secret in the body of {status} {method} {path}"
    for name, value in answer.headers:
        text = value.decode("latin-1")
        assert not [s for s in secrets if s in text], f"a secret in the {name!r} header"
    for cookie in world.session_cookies:
        assert cookie not in body, "a session cookie echoed in a body"
        for name, value in answer.headers:
            if name.lower() != b"set-cookie":
                assert cookie not in value.decode("latin-1"), f"a session cookie echoed in {name!r}"

    session_set = [v for v in answer.header_values(b"set-cookie") if SESSION_SET.match(v)]
    if session_set:
        assert may_set_session and path == CALLBACK and status == 303, (
            f"a session cookie set by {status} {method} {path}"
        )
    for value in answer.header_values(b"set-cookie"):
        if value.startswith(BINDING.encode() + b"="):
            # set at sign-in start, and renewed with the session cookie after a successful sign-in
            renewed = path == CALLBACK and bool(session_set)
            assert (path == LOGIN or renewed) and status == 303, (
                f"a binding cookie set by {status} {method} {path}"
            )
        assert b"HttpOnly" in value and b"SameSite=Lax" in value

    for location in answer.header_values(b"location"):
        target = location.decode("latin-1")
        if target.startswith(ISSUER + "/authorize?"):
            assert path == LOGIN
            continue
        # Anything else stays on this site: a path, never //host, /\host or a scheme.
        assert target.startswith("/") and not target.startswith(("//", "/\\")), target
        assert not urlsplit(target).netloc


# -- what a client may send ------------------------------------------------------------------------------

NAMES = ["state", "code", "iss", "error", "error_description", "next", "reason", "session_state", "x"]
text_values = st.text(max_size=40) | st.sampled_from(
    [
        "",
        "/",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "temporarily_unavailable",
        "server_error",
        "access_denied",
        ISSUER,
        "https://evil.example",
        "login_required",
        "state_expired",
        "code_reused",
        "%ff",
        "%00",
        "/%0d%0aSet-Cookie:x=1",
    ]
)
huge = st.integers(min_value=2000, max_value=20_000).map(lambda n: "A" * n)


@st.composite
def query_strings(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["raw", "pairs", "pairs", "huge"]))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    pairs = draw(
        st.lists(st.tuples(st.sampled_from(NAMES) | st.text(max_size=10), text_values | huge), max_size=8)
    )
    if kind == "huge":
        pairs += [(f"p{i}", "v") for i in range(draw(st.integers(15, 60)))]
    encoded = urlencode(pairs).encode("ascii")
    if draw(st.booleans()):
        encoded += draw(st.binary(max_size=20))  # stray raw bytes, as a broken client sends them
    return encoded


HEADER_NAMES = [
    b"host",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"x-forwarded-for",
    b"forwarded",
    b"accept",
    b"sec-purpose",
    b"purpose",
    b"x-moz",
    b"sec-fetch-mode",
    b"x-requested-with",
    b"content-type",
    b"authorization",
    b"referer",
    b"origin",
    b"cookie",
]
HEADER_VALUES = [
    b"app.test",
    b"evil.example",
    b"https",
    b"http",
    b"https, http",
    b"text/html",
    b"application/json",
    b"prefetch",
    b"prefetch;prerender",
    b"navigate",
    b"XMLHttpRequest",
    b"",
    b"*/*",
    b"[::1]:8080",
    b"app.test:99999",
    b"\xff\xfe",
    b"a" * 5000,
    b"evil.example, app.test",
]
header_values = st.sampled_from(HEADER_VALUES) | st.binary(max_size=200)
header_lists = st.lists(
    st.tuples(
        st.sampled_from(HEADER_NAMES) | st.binary(min_size=1, max_size=12).map(bytes.lower), header_values
    ),
    max_size=8,
)
clients = st.sampled_from([("127.0.0.1", 50000), ("203.0.113.9", 50000), ("not-an-ip", 1), None])
methods = st.sampled_from(
    ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"]
) | (st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ-_!#", min_size=1, max_size=12))
paths = st.sampled_from(ROUTES + NEAR_ROUTES)


@st.composite
def cookie_headers(draw: st.DrawFn, world: World) -> list[tuple[bytes, bytes]]:
    """Cookie headers: none, the real ones, truncated or tampered copies, garbage, duplicates, huge ones."""

    def variant(name: str, value: str) -> str:
        kind = draw(st.sampled_from(["real", "truncated", "tampered", "garbage", "quoted", "empty"]))
        if kind == "truncated" and value:
            return value[: draw(st.integers(0, len(value) - 1))]
        if kind == "tampered" and value:
            at = draw(st.integers(0, len(value) - 1))
            return value[:at] + draw(st.sampled_from("A.-_z0~%")) + value[at + 1 :]
        if kind == "garbage":
            return draw(st.text(max_size=600) | huge)
        if kind == "quoted":
            return f'"{value}"'
        return "" if kind == "empty" else value

    parts = []
    for name, value in ((SESSION, world.session), (BINDING, world.binding)):
        for _ in range(draw(st.integers(0, 2))):
            parts.append(f"{name}={variant(name, value)}")
    parts += draw(
        st.lists(st.sampled_from(["a=b", "guard_session", ";;", "=x", "guard_session_txx=1"]), max_size=3)
    )
    parts = draw(st.permutations(parts))
    separator = draw(st.sampled_from(["; ", ";", ", "]))
    raw = separator.join(parts).encode("latin-1", "replace")
    if not raw:
        return []
    headers = [(b"cookie", raw)]
    if draw(st.booleans()):
        headers.append((b"cookie", draw(st.binary(max_size=100))))
    return headers


def drive(portal: BlockingPortal, world: World, **request: Any) -> Answer:
    return portal.call(lambda: world.call(**request))


def ensure_signed_in(portal: BlockingPortal, world: World) -> None:
    portal.call(world.signed_in)


def base_headers(world: World, *, signed_in: bool) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", APP.encode()), (b"accept", b"text/html")]
    if signed_in:
        headers.append((b"cookie", f"{SESSION}={world.session}; {BINDING}={world.binding}".encode()))
    return headers


# -- the properties --------------------------------------------------------------------------------------


@SETTINGS
@given(
    path=paths,
    query=query_strings(),
    signed_in=st.booleans(),
    method=st.sampled_from(["GET", "GET", "POST", "HEAD"]),
)
def test_any_query_string_at_any_route(
    portal: BlockingPortal, world: World, path: str, query: bytes, signed_in: bool, method: str
) -> None:
    ensure_signed_in(portal, world)
    headers = base_headers(world, signed_in=signed_in)
    answer = drive(
        portal,
        world,
        method=method,
        path=path,
        query=query,
        headers=headers,
        client=("203.0.113.9", 1),
        scheme="http",
    )
    check(world, answer, path=path, method=method, headers=headers, query=query)


@SETTINGS
@given(
    data=st.data(), path=paths, extra=header_lists, client=clients, scheme=st.sampled_from(["http", "https"])
)
def test_any_headers_at_any_route(
    portal: BlockingPortal,
    world: World,
    data: st.DataObject,
    path: str,
    extra: list[tuple[bytes, bytes]],
    client: tuple[str, int] | None,
    scheme: str,
) -> None:
    ensure_signed_in(portal, world)
    signed_in = data.draw(st.booleans())
    headers = [
        h for h in base_headers(world, signed_in=signed_in) if data.draw(st.booleans()) or h[0] == b"cookie"
    ]
    headers = data.draw(st.permutations(headers + extra))
    query = b"next=%2Fme&state=s&code=c" if data.draw(st.booleans()) else b""
    method = data.draw(st.sampled_from(["GET", "GET", "POST", "HEAD"]))
    if data.draw(st.sampled_from([False, False, False, True])):
        world.clock.advance(3590)  # the session's access token is due: a refresh under odd headers
    answer = drive(
        portal, world, method=method, path=path, query=query, headers=headers, client=client, scheme=scheme
    )
    check(world, answer, path=path, method=method, headers=headers, query=query)


@SETTINGS
@given(data=st.data(), path=paths, method=st.sampled_from(["GET", "GET", "POST", "HEAD"]))
def test_any_cookies_at_any_route(
    portal: BlockingPortal, world: World, data: st.DataObject, path: str, method: str
) -> None:
    ensure_signed_in(portal, world)
    headers = [
        (b"host", APP.encode()),
        (b"accept", data.draw(st.sampled_from([b"text/html", b"application/json"]))),
    ]
    headers += data.draw(cookie_headers(world))
    query = b"next=%2Fme" if path != CALLBACK else b"state=s&code=c"
    answer = drive(
        portal,
        world,
        method=method,
        path=path,
        query=query,
        headers=headers,
        client=("127.0.0.1", 1),
        scheme="http",
    )
    check(world, answer, path=path, method=method, headers=headers, query=query)


@SETTINGS
@given(path=paths, method=methods, signed_in=st.booleans(), json=st.booleans())
def test_any_method_at_any_route(
    portal: BlockingPortal, world: World, path: str, method: str, signed_in: bool, json: bool
) -> None:
    ensure_signed_in(portal, world)
    headers = base_headers(world, signed_in=signed_in)
    if json:
        headers.append((b"accept", b"application/json"))
    query = b"next=%2Fme&state=s&code=c"
    answer = drive(
        portal, world, method=method, path=path, query=query, headers=headers, client=None, scheme="https"
    )
    check(world, answer, path=path, method=method, headers=headers, query=query)
    if path in (LOGIN, CALLBACK) and method not in ("GET", "HEAD"):
        assert answer.status == 405
    if path == LOGOUT and method not in ("GET", "HEAD", "POST"):
        assert answer.status == 405


HOSTS = [APP.encode(), APP.encode(), APP.encode(), b"bad host!", b"app_backend:8000", b"", b"\xff", None]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_real_callback_with_anything_around_it_exchanges_its_code_at_most_once(
    portal: BlockingPortal, world: World, data: st.DataObject
) -> None:
    """A fresh login's real callback, its code good, expired or revoked, sent one to three times with
    fuzzed methods, parameters, Host and other headers, and cookies: the code reaches the provider at
    most once, every answer comes at once, and a session cookie is only ever the one this login created,
    given to the browser that started it."""
    ensure_signed_in(portal, world)
    callback = portal.call(world.start_login)
    params = dict(parse_qsl(urlsplit(callback).query))
    code = params["code"]
    refusal = data.draw(st.sampled_from(["none", "none", "expired", "revoked"]))
    if refusal == "expired":
        world.provider.expire_codes()
    elif refusal == "revoked":
        world.provider.revoke_grants("alice")
    created: set[str] = set()
    for _ in range(data.draw(st.integers(1, 3))):
        sent = dict(params)
        for name in data.draw(st.lists(st.sampled_from(["code", "state", "iss", "error", "x"]), max_size=2)):
            change = data.draw(st.sampled_from(["drop", "garble"]))
            if change == "drop":
                sent.pop(name, None)
            else:
                sent[name] = data.draw(text_values)
        query = urlencode(sent).encode("ascii")
        if data.draw(st.booleans()):
            query += b"&" + data.draw(
                st.sampled_from([b"code=x", b"state=y", b"iss=https%3A%2F%2Fevil.example", b"z=\xff"])
            )
        host = data.draw(st.sampled_from(HOSTS))
        headers = [] if host is None else [(b"host", host)]
        binding = data.draw(st.sampled_from(["real", "real", "real", "none", "tampered", "other"]))
        cookies = []
        if binding == "real":
            cookies.append(f"{BINDING}={world.binding}")
        elif binding == "tampered":
            cookies.append(f"{BINDING}={world.binding[:-2]}xx")
        elif binding == "other":
            other = world.guard._keyring.new_binding_cookie()[1]
            cookies.append(f"{BINDING}={other}")
        if data.draw(st.booleans()):
            cookies.append(f"{SESSION}={world.session}")
        if cookies:
            headers.append((b"cookie", "; ".join(cookies).encode()))
        if data.draw(st.booleans()):
            headers += data.draw(header_lists)
        method = data.draw(st.sampled_from(["GET", "GET", "GET", "HEAD", "POST"]))
        answer = drive(
            portal,
            world,
            method=method,
            path=CALLBACK,
            query=query,
            headers=headers,
            client=data.draw(clients),
            scheme="http",
        )
        check(world, answer, path=CALLBACK, method=method, headers=headers, query=query, may_set_session=True)
        for value in answer.header_values(b"set-cookie"):
            if SESSION_SET.match(value):
                assert binding == "real", "a session given to a browser that did not start this login"
                created.add(value.split(b";")[0].split(b"=", 1)[1].decode())
    sends = [c for c in world.provider.calls if c.endpoint == "token" and c.params.get("code") == code]
    assert len(sends) <= 1, "an authorization code was sent twice"
    assert len(created) <= 1, "one login gave two different sessions"
    world.session_cookies |= created
