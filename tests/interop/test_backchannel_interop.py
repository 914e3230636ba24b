"""Back-channel logout from panva's oidc-provider (its ``backchannelLogout`` feature), into the Starlette
example served by two uvicorn workers on one redis-server.

The provider is this module's own, with the client's ``backchannel_logout_uri`` registered. That URI points
at a small recorder in front of the app (the app's port is not known when the provider starts), which
keeps every logout token the provider sent, so the test can replay one.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from ..redis_server import RedisServer
from .conftest import InteropProvider, running_oidc_provider, unique_user
from .guard_app import Browser, Journal, ServedApp, select, served_example

pytestmark = pytest.mark.anyio

ROUTE = "/auth/backchannel-logout"
BATCH = 8  # API calls per look at which workers answered
MAX_REQUESTS = 400  # per check, at most, until both workers have answered


class Recorder:
    """An HTTP server that forwards POSTs to the app's back-channel route and keeps their bodies."""

    def __init__(self) -> None:
        self.target = ""
        self.bodies: list[bytes] = []
        self.statuses: list[int] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                recorder.bodies.append(body)
                answer = httpx.post(
                    recorder.target + ROUTE,
                    content=body,
                    headers={"content-type": self.headers.get("content-type", "")},
                    timeout=10,
                )
                recorder.statuses.append(answer.status_code)
                self.send_response(answer.status_code)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{ROUTE}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def tokens(self) -> list[str]:
        return [parse_qs(body.decode())["logout_token"][0] for body in self.bodies]


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    rec.thread.start()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


@pytest.fixture(scope="module")
def bcl_provider(recorder: Recorder) -> Iterator[InteropProvider]:
    with running_oidc_provider(extra_env={"BACKCHANNEL_LOGOUT_URI": recorder.url}) as provider:
        yield provider


@pytest.fixture(scope="module")
def app(
    bcl_provider: InteropProvider, recorder: Recorder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    logs = tmp_path_factory.mktemp("backchannel")
    redis = RedisServer(logs / "redis")
    redis.start()
    try:
        with served_example(bcl_provider, store="redis", store_url=redis.url, workers=2, logs=logs) as served:
            recorder.target = served.base
            yield served
    finally:
        redis.stop()


@pytest.fixture
async def browsers(app: ServedApp, bcl_provider: InteropProvider) -> AsyncIterator[list[Browser]]:
    made: list[Browser] = []
    yield made
    for browser in made:
        await browser.aclose()


async def statuses_by_worker(app: ServedApp, browser: Browser) -> dict[int, set[int]]:
    """API calls of this browser, each on a new connection, until both workers answered some (bounded):
    the statuses each worker answered."""
    found: dict[int, set[int]] = {}
    for _ in range(MAX_REQUESTS // BATCH):
        mark = app.log_mark()
        for _ in range(BATCH):
            await browser.client.get(
                app.url("/api/me"), headers={"accept": "application/json", "connection": "close"}
            )
        with app.log_path.open("rb") as log:
            log.seek(mark)
            lines = log.read().decode(errors="replace").splitlines()
        for line in lines:
            match = re.match(r'(\d+) INFO uvicorn\.access .*"GET /api/me HTTP/1\.1" (\d+)', line)
            if match:
                found.setdefault(int(match[1]), set()).add(int(match[2]))
        if len(found) == 2:
            break
    return found


async def assert_everywhere(app: ServedApp, browser: Browser, status: int) -> None:
    by_worker = await statuses_by_worker(app, browser)
    assert len(by_worker) == 2, f"one worker served all {MAX_REQUESTS} calls: {by_worker}"
    assert all(s == {status} for s in by_worker.values()), by_worker


async def end_provider_session(browser: Browser, provider: InteropProvider) -> None:
    """The user signs out at the provider itself (its end_session page and confirmation form)."""
    page = await browser.client.get(provider.url("/session/end"), params={"client_id": provider.client_id})
    assert page.status_code == 200, page.text[:300]
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', page.text)
    assert xsrf, page.text[:500]
    done = await browser.client.post(
        provider.url("/session/end/confirm"), data={"xsrf": xsrf[1], "logout": "yes"}
    )
    assert done.status_code in (200, 303), done.text[:300]


async def admin_backchannel_logout(
    provider: InteropProvider, sub: str, *, age: int = 0
) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            provider.url("/admin/backchannel-logout"), params={"sub": sub, "age": age}
        )
    response.raise_for_status()
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def post_token(app: ServedApp, token: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(app.url(ROUTE), data={"logout_token": token})


async def test_the_providers_back_channel_logout_ends_the_session_in_both_workers(
    app: ServedApp, bcl_provider: InteropProvider, recorder: Recorder, browsers: list[Browser]
) -> None:
    journal = Journal(bcl_provider)
    user, other = unique_user("bcl"), unique_user("bystander")
    laptop, phone, bystander = (Browser(app, bcl_provider, u) for u in (user, user, other))
    browsers += [laptop, phone, bystander]
    for browser in (laptop, phone, bystander):
        await browser.login("/api/me")
    await assert_everywhere(app, laptop, 200)

    mark = await journal.mark()
    await end_provider_session(laptop, bcl_provider)  # the provider's session of the laptop only
    sent = select(await journal.since(mark), "backchannel.success")
    assert [e["sub"] for e in sent] == [user], [e.get("error") for e in await journal.since(mark)]
    assert recorder.statuses[-1] == 200
    await assert_everywhere(app, laptop, 401)
    await assert_everywhere(app, phone, 200)  # the same user's other provider session lives on

    # the provider ends every session of the user (an admin at the provider, a password change)
    results = await admin_backchannel_logout(bcl_provider, user)
    assert results and all(r["delivered"] for r in results), results
    await assert_everywhere(app, phone, 401)
    await assert_everywhere(app, bystander, 200)


async def test_replayed_unsigned_stale_and_foreign_logout_tokens_end_nothing(
    app: ServedApp, bcl_provider: InteropProvider, recorder: Recorder, browsers: list[Browser]
) -> None:
    user = unique_user("bcl")
    browser = Browser(app, bcl_provider, user)
    browsers.append(browser)
    await browser.login("/api/me")
    assert (await admin_backchannel_logout(bcl_provider, user))[0]["delivered"]
    delivered = recorder.tokens()[-1]
    header = json.loads(base64.urlsafe_b64decode(delivered.split(".")[0] + "=="))
    claims = json.loads(
        base64.urlsafe_b64decode(delivered.split(".")[1] + "=" * (-len(delivered.split(".")[1]) % 4))
    )
    assert header["typ"] == "logout+jwt" and claims["sub"] == user and claims["sid"]
    await browser.login("/api/me")  # signed in again: nothing below may end this session

    replay = await post_token(app, delivered)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_request", replay.text

    # stale: issued by the provider itself, as if an hour ago; it reports the app's refusal
    stale = await admin_backchannel_logout(bcl_provider, user, age=3600)
    assert stale and not any(r["delivered"] for r in stale), stale
    assert recorder.statuses[-1] == 400

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    fresh = {**claims, "jti": "a-new-jti", "iat": int(claims["iat"]) + 1}
    unsigned = f"{part({'alg': 'none', 'typ': 'logout+jwt'})}.{part(fresh)}."
    key = RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}, auto_kid=True)
    foreign = jwt.encode({"alg": "RS256", "typ": "logout+jwt", "kid": key.kid}, fresh, key)
    for token in (unsigned, foreign):
        refused = await post_token(app, token)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request", refused.text

    await assert_everywhere(app, browser, 200)
