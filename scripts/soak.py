#!/usr/bin/env python3
"""A chaos soak: simulated users against guarded app workers on one Redis, with a faulty provider.

    scripts/soak.py --users 50 --tabs 3 --seconds 120 --workers 4 --seed 7

Starts a redis-server, the test provider and ``--workers`` app worker processes (uvicorn), with the
process helpers of the multiprocess tests (``tests/multiprocess``, ``tests/redis_server.py``). Every
simulated user signs in on the provider's page, double-clicks the callback now and then, presses back onto
it, and has several tabs calling the app's API and pages at once while its access token lives a few seconds,
each request through a random worker; now and then one tab signs out while the others are mid-request (and
their refreshes mid-flight), and the session cookie it had is kept, as a thief would. Meanwhile faults are
injected at the provider: 5xx answers, timeouts (stalled, unprocessed), slow answers, outages, and an admin
revoking users' grants.

Invariants checked and reported:

- no 5xx but 503, and every 503 answered while an injected fault was in play;
- no user told to sign in again, except users whose grant was revoked, and each of those is told so
  (on the first request whose refresh the provider refuses), and never served once its token has expired;
- every authorization code sent to the provider once (none when the guard's one try at it went unanswered);
- no refresh token presented twice to the provider;
- no session back after its sign-out: the copied cookie gets the re-login response from every worker, at
  once and at the end (after any refresh that was in flight has finished);
- no session lost that no rule ended (a user told to sign in again is one whose grant was revoked, or who
  signed out);
- at the end: no request waiting or refresh in flight in any worker, every in-process cache within its cap,
  every Redis key with a TTL and no lock left, the number of keys bounded by the sign-ins, not the requests.

Prints a report; exits 1 on any violation, 2 if the processes could not start.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import anyio  # noqa: E402
import httpx  # noqa: E402
import pytest  # noqa: E402  (the process helpers report a failed start with pytest.fail)
from redis.asyncio import Redis  # noqa: E402

from tests.conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY  # noqa: E402
from tests.multiprocess.conftest import PUBLIC_HOST, PUBLIC_URL, Server, no_cookies  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402

HTML = "text/html"
JSON = "application/json"
CACHE_CAP = 10_000  # the guard's in-process caches (published states, and cookies seen once)
RSS_GROWTH_LIMIT_KIB = 200 * 1024
FAULT_KINDS = ("fail", "timeout", "slow", "revoke", "down", "backchannel", "end_sessions")
FAULT_WEIGHTS = (3, 2, 3, 2, 1, 2, 2)


@dataclasses.dataclass(frozen=True)
class Config:
    users: int
    tabs: int
    seconds: float
    workers: int
    seed: int
    token_ttl: float
    http_timeout: float
    fault_every: float


@dataclasses.dataclass
class User:
    sub: str
    rng: random.Random
    cookies: dict[str, str] = dataclasses.field(default_factory=dict)
    active: bool = False
    revoked_at: float | None = None  # an admin revoked this user's grants; no re-login response seen yet
    revoking: anyio.Event | None = None  # set once a revocation picked during this visit has taken effect
    signed_out: bool = False  # told to sign in again (only ever after a revocation)
    logged_out: bool = False  # signed out in one tab during this visit; the others stop
    history: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (callback, next) signed in
    next_path: str = "/"

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def absorb(self, response: httpx.Response) -> str | None:
        """Keep the cookies the response sets, as a browser would; the session cookie set, if any."""
        session = None
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if not value or "max-age=0" in header.lower():
                self.cookies.pop(name, None)
                continue
            self.cookies[name] = value
            if name == "guard_session":
                session = value
        return session


@dataclasses.dataclass(frozen=True)
class Unavailable:
    """A 503 the users saw: [started, ended], and the callback it answered (duplicates share one outcome)."""

    started: float
    ended: float
    what: str
    callback: str | None


class Soak:
    def __init__(
        self, config: Config, provider_url: str, worker_urls: list[str], redis_url: str, prefix: str
    ):
        self.config = config
        self.provider_url = provider_url
        self.worker_urls = worker_urls
        self.origin = PUBLIC_URL.rstrip("/")  # the workers' public_url: their pages' origin
        self.redis_url = redis_url
        self.prefix = prefix
        self.rng = random.Random(config.seed)  # noqa: S311 - a simulation, not cryptography
        self.users = [
            User(sub=f"user{i:03d}", rng=random.Random(config.seed * 1_000_003 + i))  # noqa: S311
            for i in range(config.users)
        ]
        self.counts: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()
        self.violations: list[str] = []
        self.unavailable: list[Unavailable] = []
        self.codes: list[tuple[str, str]] = []  # (user, code digest)
        self.revocations: list[tuple[str, float]] = []
        self.relogin_delays: list[float] = []
        self.signed_out_cookies: list[tuple[str, str]] = []  # (user, the session cookie it signed out)
        self.deadline = 0.0
        limits = httpx.Limits(
            max_connections=config.users * (config.tabs + 2) + 20, max_keepalive_connections=100
        )
        self.http = httpx.AsyncClient(cookies=no_cookies(), timeout=60, limits=limits, headers=PUBLIC_HOST)

    def violation(self, message: str) -> None:
        if len(self.violations) < 1000:
            self.violations.append(message)

    # -- the provider's controls ---------------------------------------------------------------------

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(method, f"{self.provider_url}/__soak__/{path}", json=body)
        response.raise_for_status()
        return response.json()

    # -- one request, as a browser tab sends it --------------------------------------------------------

    async def send(
        self, user: User, what: str, method: str, path: str, *, accept: str, callback: str | None = None
    ) -> httpx.Response | None:
        url = self.rng.choice(self.worker_urls) + path
        # The workers sit behind the app's public origin (a proxy would pass its Host on): without it,
        # sign-ins started at a worker's loopback address move to the public origin first.
        headers = {"accept": accept, "host": urlsplit(PUBLIC_URL).netloc}
        if method == "POST":
            headers["origin"] = self.origin  # a form on the app's own page, as a browser posts it
        if user.cookies:
            headers["cookie"] = user.cookie_header()
        started = time.time()
        try:
            response = await self.http.request(method, url, headers=headers)
        except httpx.HTTPError as exc:
            self.violation(f"{user.sub} {what}: no answer ({type(exc).__name__})")
            return None
        ended = time.time()
        self.counts["requests"] += 1
        self.counts[what] += 1
        self.statuses[response.status_code] += 1
        if response.status_code == 503:
            self.unavailable.append(Unavailable(started, ended, f"{user.sub} {what}", callback))
        elif response.status_code >= 500:
            self.violation(f"{user.sub} {what}: {response.status_code} {response.text[:200]!r}")
        return response

    def relogin_reason(self, response: httpx.Response) -> str | None:
        """The reason of a re-login response (303 to the login route, or 401 login_required), else None."""
        location = response.headers.get("location", "")
        if response.status_code in (302, 303) and location.startswith("/auth/login"):
            return str(parse_qs(urlsplit(location).query).get("reason", ["?"])[0])
        if response.status_code == 401:
            try:
                body = response.json()
            except ValueError:
                return "?"
            return str(body.get("reason", "?"))
        return None

    def told_to_sign_in(self, user: User, what: str, reason: str) -> None:
        # Signed out (or ended by the provider or the app): its tabs are told to sign in again, and an old
        # callback loaded with no session left gives none (state_expired).
        ended = ("session_expired", "login_required", *(("state_expired",) if what == "back button" else ()))
        if user.logged_out and reason in ended:
            self.counts["relogins after sign-out"] += 1
            return
        if user.revoked_at is None:
            self.violation(f"{user.sub} {what}: told to sign in again ({reason}) without a revocation")
            user.signed_out = True  # it signs in again, as a person would
            return
        if not user.signed_out:
            user.signed_out = True
            self.relogin_delays.append(time.time() - user.revoked_at)
            self.counts["relogins after revocation"] += 1

    # -- a user ----------------------------------------------------------------------------------------

    async def run_user(self, user: User) -> None:
        await anyio.sleep(user.rng.uniform(0, 1))
        while time.monotonic() < self.deadline:
            if await self.login(user):
                user.active = True
                await self.browse(user, user.rng.uniform(2, 6))
                if user.logged_out:
                    if user.revoking is not None:
                        await user.revoking.wait()
                    user.active = user.logged_out = user.signed_out = False
                    user.revoked_at = None
                    continue
                if user.revoking is not None:
                    # The visit ends only once a revocation picked during it has reached the provider:
                    # a login started meanwhile could get a new grant before the old one is revoked.
                    await user.revoking.wait()
                user.active = False
                while user.revoked_at is not None and not user.signed_out:
                    # Revoked late in the visit: keep browsing until the guard says so.
                    if time.time() > user.revoked_at + self.config.token_ttl + self.config.http_timeout + 10:
                        self.violation(f"{user.sub}: never told to sign in again after its grant was revoked")
                        user.signed_out = True
                        break
                    await self.browse(user, 1)
                if user.signed_out:
                    user.signed_out, user.revoked_at = False, None
                    continue
                if user.rng.random() < 0.1:
                    await self.logout(user)
            elif user.signed_out:
                user.signed_out, user.revoked_at = False, None
            else:
                await anyio.sleep(user.rng.uniform(0.2, 0.6))  # an outage: try again shortly

    async def login(self, user: User) -> bool:
        """Sign in: the login route, the provider's page, its form, then the callback (double-clicked
        now and then). True when the browser holds a new session."""
        rng = user.rng
        user.next_path = f"/?tab={rng.randint(1, 9)}"
        before = user.cookies.get("guard_session")
        start = await self.send(
            user, "login", "GET", "/auth/login?next=" + quote(user.next_path), accept=HTML
        )
        if start is None or start.status_code == 503:
            return False
        location = start.headers.get("location", "")
        if start.status_code != 303 or not location.startswith(self.provider_url + "/authorize?"):
            self.violation(f"{user.sub} login: {start.status_code} to {location[:80]!r}")
            return False
        user.absorb(start)
        page = await self.http.get(location)
        if page.status_code == 503:
            return False
        found = re.search(r'name="interaction" value="([^"]+)"', page.text)
        if page.status_code != 200 or found is None:
            self.violation(f"{user.sub}: the provider's sign-in page answered {page.status_code}")
            return False
        form = {"interaction": found.group(1), "sub": user.sub}
        signed = await self.http.post(self.provider_url + "/authorize", data=form)
        if signed.status_code == 503:
            return False
        callback = signed.headers.get("location", "")
        if signed.status_code != 302 or not callback.startswith(PUBLIC_URL + "/auth/callback?"):
            self.violation(f"{user.sub}: the provider's sign-in answered {signed.status_code}")
            return False
        code = parse_qs(urlsplit(callback).query).get("code", [""])[0]
        if not code:
            if user.revoked_at is None:
                self.violation(f"{user.sub}: the provider sent no code back: {callback[:120]!r}")
            return False
        self.codes.append((user.sub, digest(code)))
        path = callback.removeprefix(PUBLIC_URL)
        clicks = 1 if rng.random() < 0.65 else rng.randint(2, 3)
        self.counts["codes issued"] += 1
        if clicks > 1:
            self.counts["double clicks"] += 1
        answers: list[httpx.Response | None] = [None] * clicks

        async def click(i: int) -> None:
            answers[i] = await self.send(user, "callback", "GET", path, accept=HTML, callback=path)

        async with anyio.create_task_group() as tg:
            for i in range(clicks):
                tg.start_soon(click, i)

        sessions = set()
        signed_in = False
        for answer in answers:
            if answer is None or answer.status_code == 503:
                continue
            reason = self.relogin_reason(answer)
            if reason is not None:
                self.told_to_sign_in(user, "callback", reason)
                continue
            if answer.status_code != 303 or answer.headers.get("location") != user.next_path:
                self.violation(
                    f"{user.sub} callback: {answer.status_code} to {answer.headers.get('location')!r}"
                )
                continue
            signed_in = True
            session = user.absorb(answer)
            if session is not None:
                sessions.add(session)
        if len(sessions) > 1:
            self.violation(f"{user.sub}: one login answered {len(sessions)} different sessions")
        if not signed_in:
            return False
        if user.cookies.get("guard_session") in (None, before):
            self.violation(f"{user.sub}: signed in, but the browser holds no new session")
            return False
        user.history = [*user.history[-3:], (path, user.next_path)]
        self.counts["logins completed"] += 1
        return True

    async def browse(self, user: User, seconds: float) -> None:
        until = time.monotonic() + seconds
        async with anyio.create_task_group() as tg:
            for _ in range(self.config.tabs):
                tg.start_soon(self.tab, user, until)

    async def tab(self, user: User, until: float) -> None:
        rng = user.rng
        while time.monotonic() < until and not user.signed_out and not user.logged_out:
            roll = rng.random()
            if roll < 0.65:
                await self.api_call(user)
            elif roll < 0.92:
                await self.page(user)
            elif roll < 0.99:
                await self.back_to_callback(user)
            else:
                await self.sign_out_racing(user)
            await anyio.sleep(rng.uniform(0.02, 0.25))  # the user's think time

    def served(self, user: User, what: str, started: float) -> None:
        """A 200 for a signed-in request: never once a revoked user's last token has expired."""
        if user.revoked_at is not None and started > user.revoked_at + self.config.token_ttl + 0.5:
            since = time.time() - user.revoked_at
            self.violation(f"{user.sub} {what}: served {since:.1f} s after its grant was revoked")

    async def api_call(self, user: User) -> None:
        started = time.time()
        response = await self.send(user, "api", "GET", "/api/me", accept=JSON)
        if response is None or response.status_code == 503:
            return
        reason = self.relogin_reason(response)
        if reason is not None:
            self.told_to_sign_in(user, "api", reason)
        elif response.status_code != 200 or response.json().get("sub") != user.sub:
            self.violation(f"{user.sub} api: {response.status_code} {response.text[:120]!r}")
        else:
            self.served(user, "api", started)

    async def page(self, user: User) -> None:
        started = time.time()
        response = await self.send(user, "page", "GET", "/", accept=HTML)
        if response is None or response.status_code == 503:
            return
        reason = self.relogin_reason(response)
        if reason is not None:
            self.told_to_sign_in(user, "page", reason)
        elif response.status_code != 200 or f"Signed in as {user.sub}<" not in response.text:
            self.violation(f"{user.sub} page: {response.status_code} {response.text[:120]!r}")
        else:
            self.served(user, "page", started)

    async def back_to_callback(self, user: User) -> None:
        if not user.history:
            return
        before = user.cookies.get("guard_session")
        path, next_path = user.rng.choice(user.history)  # back once, or a few times
        response = await self.send(user, "back button", "GET", path, accept=HTML, callback=path)
        if response is None or response.status_code == 503:
            return
        reason = self.relogin_reason(response)
        if reason is not None:
            self.told_to_sign_in(user, "back button", reason)
            return
        if response.status_code != 303 or response.headers.get("location") not in (next_path, "/"):
            self.violation(
                f"{user.sub} back button: {response.status_code} to {response.headers.get('location')!r}"
            )
        session = user.absorb(response)
        if session is not None and session != before:
            self.violation(f"{user.sub} back button: the callback replaced the browser's session")

    async def logout(self, user: User) -> None:
        response = await self.send(user, "logout", "POST", "/auth/logout", accept=HTML)
        if response is None or response.status_code == 503:
            return
        user.absorb(response)
        if response.status_code != 303:
            self.violation(f"{user.sub} logout: {response.status_code}")
        elif "guard_session" in user.cookies:
            self.violation(f"{user.sub} logout: the session cookie was not cleared")
        self.counts["logouts"] += 1

    async def sign_out_racing(self, user: User) -> None:
        """Sign out in this tab while the others go on (their refreshes may be in flight); keep the cookie."""
        cookie = user.cookies.get("guard_session")
        if cookie is None or user.revoked_at is not None:
            return
        user.logged_out = True  # the other tabs stop after their current request
        response = await self.send(user, "sign-out racing", "POST", "/auth/logout", accept=HTML)
        if response is None or response.status_code != 303:
            if response is not None and response.status_code != 503:
                self.violation(f"{user.sub} sign-out: {response.status_code}")
            user.logged_out = False
            return
        user.absorb(response)
        self.signed_out_cookies.append((user.sub, cookie))
        await self.check_signed_out(user.sub, cookie, "at once")

    async def end_elsewhere(self, user: User, how: str) -> None:
        """The provider (back-channel logout) or the app (``end_sessions``) ends the user's sessions while
        their tabs go on: they are told to sign in again, and the session never comes back in any worker."""
        cookie = user.cookies.get("guard_session")
        if cookie is None:
            return
        user.logged_out = True  # the tabs stop after their current request; their relogins are expected
        ended = False
        for _ in range(50):  # the provider may be down (its keys are needed): try until it is back
            url = self.rng.choice(self.worker_urls)
            if how == "backchannel":
                token = (await self.control("GET", f"logout-token?sub={user.sub}"))["logout_token"]
                answer = await self.http.post(url + "/auth/backchannel-logout", data={"logout_token": token})
            else:
                answer = await self.http.post(url + f"/__soak__/end-sessions?sub={user.sub}")
            if answer.status_code == 200:
                ended = True
                break
            if answer.status_code != 503:
                self.violation(f"{user.sub} {how}: {answer.status_code} {answer.text[:120]!r}")
                break
            await anyio.sleep(0.2)
        if not ended:
            user.logged_out = False
            return
        self.counts[f"{how} logouts"] += 1
        if how == "backchannel":  # the same token again, at another worker: refused, ends nothing
            replay = await self.http.post(
                self.rng.choice(self.worker_urls) + "/auth/backchannel-logout", data={"logout_token": token}
            )
            if replay.status_code != 400:
                self.violation(f"{user.sub}: a replayed logout token answered {replay.status_code}")
        self.signed_out_cookies.append((user.sub, cookie))
        await self.check_signed_out(user.sub, cookie, f"after {how}")

    async def check_signed_out(self, sub: str, cookie: str, when: str) -> None:
        """The cookie of a session signed out opens nothing, in any worker."""
        for url in self.worker_urls:
            try:
                response = await self.http.get(
                    url + "/api/me", headers={"accept": JSON, "cookie": f"guard_session={cookie}"}
                )
            except httpx.HTTPError as exc:
                self.violation(f"{sub} signed-out cookie: no answer ({type(exc).__name__})")
                continue
            self.counts["signed-out cookie checks"] += 1
            if response.status_code == 200:
                self.violation(f"{sub}: its session came back after sign-out ({when})")
            elif response.status_code not in (401, 503):
                self.violation(f"{sub} signed-out cookie ({when}): {response.status_code}")

    # -- chaos -----------------------------------------------------------------------------------------

    async def chaos(self) -> None:
        rng = self.rng
        cfg = self.config
        while time.monotonic() < self.deadline - 1:
            await anyio.sleep(rng.expovariate(1 / cfg.fault_every))
            kind = rng.choices(FAULT_KINDS, weights=FAULT_WEIGHTS)[0]
            if kind == "fail":
                n, status = rng.randint(1, 3), rng.choice([500, 502, 503, 504])
                await self.control("POST", "fault", {"kind": "fail", "n": n, "status": status})
            elif kind == "timeout":
                await self.control("POST", "fault", {"kind": "timeout", "n": rng.randint(1, 2)})
            elif kind == "slow":
                seconds = rng.uniform(0.05, cfg.http_timeout / 5)
                await self.control(
                    "POST", "fault", {"kind": "slow", "n": rng.randint(1, 5), "seconds": seconds}
                )
            elif kind in ("backchannel", "end_sessions"):
                candidates = [
                    u
                    for u in self.users
                    if u.active and u.revoked_at is None and u.revoking is None and not u.logged_out
                ]
                if not candidates:
                    continue
                await self.end_elsewhere(rng.choice(candidates), kind)
            elif kind == "revoke":
                candidates = [
                    u for u in self.users if u.active and u.revoked_at is None and u.revoking is None
                ]
                if not candidates:
                    continue
                user = rng.choice(candidates)
                user.revoking = revoking = anyio.Event()
                try:
                    await self.control("POST", "fault", {"kind": "revoke", "sub": user.sub})
                finally:
                    user.revoked_at = time.time()
                    self.revocations.append((user.sub, user.revoked_at))
                    user.revoking = None
                    revoking.set()
            else:
                await self.control("POST", "fault", {"kind": "down", "on": True})
                await anyio.sleep(rng.uniform(0.3, 1.2))
                await self.control("POST", "fault", {"kind": "down", "on": False})
            self.faults[kind] += 1

    # -- the run and its checks ------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        cfg = self.config
        await self.control("POST", "users", {"subs": [u.sub for u in self.users]})
        await self.control("POST", "configure", {"timeout_delay": cfg.http_timeout + 0.5})
        start_stats = await self.worker_stats()
        began = time.monotonic()
        self.deadline = began + cfg.seconds
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.chaos)
            for user in self.users:
                tg.start_soon(self.run_user, user)
        elapsed = time.monotonic() - began
        await self.control("POST", "fault", {"kind": "down", "on": False})
        await anyio.sleep(cfg.http_timeout + 1)  # stalled (timed-out) provider calls finish and are recorded
        for sub, cookie in self.signed_out_cookies:  # any refresh in flight at the sign-out is over now
            await self.check_signed_out(sub, cookie, "at the end")
        records: list[dict[str, Any]] = await self.control("GET", "records")
        end_stats = await self.worker_stats()
        unanswered = [call for stats in end_stats for call in stats.pop("unanswered_token_calls")]
        for stats in start_stats:
            stats.pop("unanswered_token_calls")
        self.check_codes(records, unanswered)
        self.check_refreshes(records)
        self.check_unavailable(records, unanswered)
        store = await self.check_store(
            refreshes=sum(1 for r in records if r["grant_type"] == "refresh_token" and not r["fault"])
        )
        self.check_workers(start_stats, end_stats)
        provider_stats = await self.control("GET", "stats")
        await self.http.aclose()
        faulted = [r for r in records if r["fault"]]
        return {
            "config": dataclasses.asdict(cfg),
            "elapsed_seconds": round(elapsed, 1),
            "requests": dict(sorted(self.counts.items())),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "provider": {
                "code_exchanges": sum(1 for r in records if r["grant_type"] == "authorization_code"),
                "refreshes": sum(1 for r in records if r["grant_type"] == "refresh_token" and not r["fault"]),
                "invalid_grant": sum(1 for r in records if r["error"] == "invalid_grant"),
                "calls_hit_by_a_fault": len(faulted),
                "rss_kib": provider_stats["rss_kib"],
            },
            "faults_injected": dict(sorted(self.faults.items())),
            "revocations": len(self.revocations),
            "relogin_after_revocation_seconds_max": round(max(self.relogin_delays, default=0.0), 2),
            "unavailable_503": len(self.unavailable),
            "token_calls_unanswered_at_the_guard": len(unanswered),
            "store": store,
            "workers": end_stats,
            "workers_rss_growth_kib": [
                e["rss_kib"] - s["rss_kib"] for s, e in zip(start_stats, end_stats, strict=True)
            ],
            "violations": self.violations,
        }

    def check_codes(self, records: list[dict[str, Any]], unanswered: list[dict[str, Any]]) -> None:
        """Every code reached the provider once; or never, when the guard's one try at it ended unanswered
        before the provider saw it (a connection that failed, or was slower than http_timeout): the code
        is then spent for the guard, never sent again, and the user signs in anew."""
        sent = collections.Counter(r["secret"] for r in records if r["grant_type"] == "authorization_code")
        tried = collections.Counter(call["secret"] for call in unanswered)
        for sub, code in self.codes:
            if sent[code] > 1 or sent[code] + tried[code] == 0 or tried[code] > 1:
                self.violation(
                    f"{sub}: an authorization code reached the provider {sent[code]} time(s) and was "
                    f"tried {tried[code]} time(s) unanswered, not once"
                )
        refused = sum(
            1 for r in records if r["grant_type"] == "authorization_code" and r["error"] == "invalid_grant"
        )
        if refused > len(self.revocations):
            self.violation(
                f"{refused} codes refused with invalid_grant, for {len(self.revocations)} revocations"
            )

    def check_refreshes(self, records: list[dict[str, Any]]) -> None:
        processed = [r for r in records if r["grant_type"] == "refresh_token" and not r["fault"]]
        twice = [secret for secret, n in collections.Counter(r["secret"] for r in processed).items() if n > 1]
        if twice:
            self.violation(f"{len(twice)} refresh token(s) presented to the provider more than once")
        refused = sum(1 for r in processed if r["error"] == "invalid_grant")
        if refused > len(self.revocations):
            self.violation(
                f"{refused} refreshes refused with invalid_grant, for {len(self.revocations)} revocations"
            )

    def check_unavailable(self, records: list[dict[str, Any]], unanswered: list[dict[str, Any]]) -> None:
        """Every 503 overlaps a provider call that an injected fault answered (or stalled), or a token call
        the guard gave up on (the provider slower than http_timeout: on a loaded machine that happens with
        no fault injected), or shares the recorded outcome of a callback whose exchange did."""
        # A fault is in play from the call's arrival until the guard has its answer: at once for an error
        # or an outage (a second allowed for a loaded machine), after http_timeout for a stalled call.
        stalled = self.config.http_timeout + 0.5
        faults = [
            (r["at"], r["at"] + (stalled if r["fault"] == "timeout" else 1.0)) for r in records if r["fault"]
        ]
        faults += [(call["started"], call["ended"] + 1.0) for call in unanswered]

        def during_fault(item: Unavailable) -> bool:
            return any(start - 0.05 <= item.ended and item.started <= end for start, end in faults)

        explained_callbacks = {u.callback for u in self.unavailable if u.callback and during_fault(u)}
        for item in self.unavailable:
            if not (
                during_fault(item) or (item.callback is not None and item.callback in explained_callbacks)
            ):
                self.violation(f"{item.what}: a 503 with no injected fault in play")

    async def check_store(self, *, refreshes: int) -> dict[str, Any]:
        redis = Redis.from_url(self.redis_url)
        try:
            kinds: collections.Counter[str] = collections.Counter()
            forever = 0
            async for key in redis.scan_iter(match=self.prefix + "*", count=1000):
                name = key.decode()[len(self.prefix) :]
                kinds[name.split(":", 1)[0] if not name.startswith("lock:") else "lock"] += 1
                if await redis.pttl(key) == -1:  # -2: gone since the scan (expired, or its last member left)
                    forever += 1
            used = int((await redis.info("memory"))["used_memory"])
        finally:
            await redis.aclose()
        total = sum(kinds.values())
        # Per login: its claim, outcome, code mark and session; per browser: its binding list and at most
        # five transactions of logins started but never called back (the provider was down); per refresh
        # its result, for twice the lock's lease; per live session its metadata and two index entries; per
        # back-channel logout its jti mark.
        bound = 4 * self.counts["codes issued"] + 6 * len(self.users) + refreshes + 16
        bound += 3 * len(self.users) + self.counts["backchannel logouts"]
        if forever:
            self.violation(f"{forever} Redis key(s) without a TTL")
        if kinds["lock"]:
            self.violation(f"{kinds['lock']} refresh lock(s) left in Redis")
        if total > bound:
            codes = self.counts["codes issued"]
            self.violation(f"{total} Redis keys for {codes} codes issued (bound {bound})")
        return {"keys": total, "bound": bound, "by_kind": dict(sorted(kinds.items())), "used_memory": used}

    async def worker_stats(self) -> list[dict[str, Any]]:
        stats = []
        for url in self.worker_urls:
            response = await self.http.get(url + "/__soak__/stats")
            response.raise_for_status()
            stats.append(response.json())
        return stats

    def check_workers(self, start: list[dict[str, Any]], end: list[dict[str, Any]]) -> None:
        for i, (before, after) in enumerate(zip(start, end, strict=True)):
            for name in ("exchanges_in_flight", "duplicates_waiting", "refreshes_in_flight"):
                if after[name]:
                    self.violation(f"worker{i}: {after[name]} {name.replace('_', ' ')} after the soak")
            for name in ("published_states", "cookies_seen_once"):
                if after[name] > CACHE_CAP:
                    self.violation(f"worker{i}: {after[name]} {name.replace('_', ' ')} (cap {CACHE_CAP})")
            if after["rss_kib"] - before["rss_kib"] > RSS_GROWTH_LIMIT_KIB:
                self.violation(f"worker{i}: resident memory grew {after['rss_kib'] - before['rss_kib']} KiB")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:24]


class Cluster:
    """redis-server, the provider and the workers, as the multiprocess tests run them."""

    def __init__(self, root: Path, config: Config) -> None:
        logs = root / "logs"
        logs.mkdir()
        self.logs = logs
        self.redis = RedisServer(root / "redis")
        self.prefix = f"soak{config.seed}:"
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        self.provider = Server(
            "provider",
            "tests.security.soak_provider:app",
            {
                "TEST_IDP_ISSUER": issuer,
                "TEST_IDP_CLIENT_ID": CLIENT_ID,
                "TEST_IDP_CLIENT_SECRET": CLIENT_SECRET,
                "TEST_IDP_ACCESS_TOKEN_TTL": str(config.token_ttl),
            },
            logs,
            "/.well-known/openid-configuration",
            port=port,
        )
        worker_env = {
            "GUARD_ISSUER": issuer,
            "GUARD_CLIENT_ID": CLIENT_ID,
            "GUARD_CLIENT_SECRET": CLIENT_SECRET,
            "GUARD_SECRET_KEY": SECRET_KEY,
            "GUARD_STORE": self.redis.url,
            "GUARD_KEY_PREFIX": self.prefix,
            "GUARD_PUBLIC_URL": PUBLIC_URL,
            "GUARD_HTTP_TIMEOUT": str(config.http_timeout),
            "GUARD_REFRESH_LEEWAY": "60",
        }
        self.workers = [
            Server(
                f"worker{i}", "tests.security.soak_worker:app", worker_env, logs, "/ready", port=free_port()
            )
            for i in range(config.workers)
        ]

    def start(self) -> None:
        # The provider first: a worker that starts before it finds no discovery document, answers 503
        # until its background retry succeeds, and the soak would count those 503s against the guard.
        self.redis.start()
        self.provider.start()
        self.provider.wait_ready()
        for server in self.workers:
            server.start()
        for server in self.workers:
            server.wait_ready()

    def stop(self) -> None:
        for server in (self.provider, *self.workers):
            server.stop()
        self.redis.stop()

    def log_tails(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.log_tail()}" for s in (self.provider, *self.workers))


def print_report(report: dict[str, Any]) -> None:
    cfg = report["config"]
    requests = report["requests"]
    print(
        f"soak: {cfg['users']} users x {cfg['tabs']} tabs, {cfg['workers']} workers, "
        f"{report['elapsed_seconds']} s (seed {cfg['seed']}, tokens live {cfg['token_ttl']} s)"
    )
    print(
        f"  requests        {requests.get('requests', 0)}: "
        + ", ".join(f"{k} {v}" for k, v in requests.items() if k != "requests")
    )
    print("  statuses        " + ", ".join(f"{k}: {v}" for k, v in report["statuses"].items()))
    print(
        "  provider        " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report["provider"].items())
    )
    print("  faults injected " + ", ".join(f"{k} {v}" for k, v in report["faults_injected"].items()))
    print(
        f"  revocations     {report['revocations']}, each told to sign in again within "
        f"{report['relogin_after_revocation_seconds_max']} s"
    )
    store = report["store"]
    print(
        f"  redis           {store['keys']} keys (bound {store['bound']}) {store['by_kind']}, "
        f"{store['used_memory'] // 1024} KiB"
    )
    print(f"  workers         rss growth KiB {report['workers_rss_growth_kib']}")
    violations = report["violations"]
    print(f"  invariant violations: {len(violations)}")
    for violation in violations[:50]:
        print(f"    - {violation}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--tabs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--token-ttl", type=float, default=4.0, help="access token lifetime, seconds")
    parser.add_argument("--http-timeout", type=float, default=3.0, help="the guard's provider timeout")
    parser.add_argument("--fault-every", type=float, default=1.0, help="mean seconds between faults")
    parser.add_argument("--json", type=Path, help="also write the report to this file as JSON")
    args = parser.parse_args(argv)
    if args.users < 1 or args.tabs < 1 or args.workers < 1 or args.seconds <= 0:
        parser.error("--users, --tabs, --workers and --seconds must be positive")
    config = Config(
        users=args.users,
        tabs=args.tabs,
        seconds=args.seconds,
        workers=args.workers,
        seed=args.seed,
        token_ttl=args.token_ttl,
        http_timeout=args.http_timeout,
        fault_every=args.fault_every,
    )
    with tempfile.TemporaryDirectory(prefix="soak-") as root:
        cluster = Cluster(Path(root), config)
        try:
            try:
                cluster.start()
            except pytest.fail.Exception as exc:
                print(f"soak: the processes did not start: {exc}", file=sys.stderr)
                return 2
            soak = Soak(
                config,
                cluster.provider.url,
                [w.url for w in cluster.workers],
                cluster.redis.url,
                cluster.prefix,
            )
            report = anyio.run(soak.run)
        finally:
            cluster.stop()
        if report["violations"]:
            report["logs"] = cluster.log_tails()
    print_report(report)
    if report["violations"]:
        print(report["logs"], file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
