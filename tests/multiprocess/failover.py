"""A failover soak: signed-in users keep calling four workers while the store's master is killed.

Used by ``test_failover.py`` (briefly) and ``scripts/failover_soak.py`` (as long as you like). Users sign
in first; then each one calls ``/api/me`` in a loop on random workers (their tokens live 4 s, so refreshes
and their locks run all the time), and a sign-in loop keeps starting and finishing logins (claims),
while ``kill`` SIGKILLs the master and waits for the promotion. Counted: every answer by status, the 503s
and their span, 5xx other than 503, answers without ``Retry-After``, sessions that no longer work
afterwards, and at the provider: codes exchanged twice and refresh tokens sent twice (each refused with
``invalid_grant`` by a provider that rotates refresh tokens and remembers used codes).
"""

from __future__ import annotations

import collections
import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from .conftest import BEHIND_PROXY, PUBLIC_URL, Cluster

HTML = {"accept": "text/html", **BEHIND_PROXY}
JSON = {"accept": "application/json"}
RECOVERY_TIMEOUT = 60.0
SIGN_INS_CAP = 90


@dataclasses.dataclass
class Report:
    engine: str
    users: int
    seconds: float
    requests: int = 0
    statuses: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    first_503: float | None = None
    last_503: float | None = None
    without_retry_after: int = 0
    other_5xx: int = 0
    logins: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    killed_at: float | None = None
    promoted_after: float | None = None
    sessions_lost: int = 0
    codes_exchanged_twice: int = 0
    refresh_tokens_sent_twice: int = 0
    refreshes: int = 0
    latencies: list[float] = dataclasses.field(default_factory=list)

    @property
    def unavailable_for(self) -> float:
        """Seconds from the first 503 to the last one (0 without any)."""
        if self.first_503 is None or self.last_503 is None:
            return 0.0
        return self.last_503 - self.first_503

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        p99 = ordered[int(len(ordered) * 0.99)] if ordered else 0.0
        return {
            "engine": self.engine,
            "users": self.users,
            "seconds": self.seconds,
            "requests": self.requests,
            "statuses": dict(sorted(self.statuses.items())),
            "503s": self.statuses[503],
            "503 span s": round(self.unavailable_for, 2),
            "master promoted after s": None if self.promoted_after is None else round(self.promoted_after, 2),
            "503 without Retry-After": self.without_retry_after,
            "5xx other than 503": self.other_5xx,
            "logins": dict(self.logins),
            "sessions lost": self.sessions_lost,
            "codes exchanged twice": self.codes_exchanged_twice,
            "refresh tokens sent twice": self.refresh_tokens_sent_twice,
            "refreshes at the provider": self.refreshes,
            "p99 ms": round(p99 * 1000, 1),
        }


def _set_cookie(response: httpx.Response, name: str) -> str | None:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith(name + "=") and "max-age=0" not in value.lower():
            return value.split(";", 1)[0]
    return None


async def _login(http: httpx.AsyncClient, worker: str) -> httpx.Response:
    """A whole sign-in on one worker; the callback's answer (or the first answer that was not a redirect)."""
    started = await http.get(worker + "/auth/login", params={"next": "/api/me"}, headers=HTML)
    if started.status_code != 303:
        return started
    binding = _set_cookie(started, "guard_session_tx") or _set_cookie(started, "__Host-guard_session_tx")
    authorized = await http.get(started.headers["location"])
    if authorized.status_code != 302:
        return authorized
    callback = authorized.headers["location"].removeprefix(PUBLIC_URL)
    return await http.get(worker + callback, headers={**HTML, "cookie": binding or ""})


def _session_cookie(response: httpx.Response) -> str | None:
    return _set_cookie(response, "guard_session") or _set_cookie(response, "__Host-guard_session")


async def run_failover_soak(
    cluster: Cluster,
    http: httpx.AsyncClient,
    *,
    users: int,
    seconds: float,
    kill_after: float,
    kill: Callable[[], None],
    seed: int = 1,
) -> Report:
    """Run the soak; ``kill`` (blocking, run in a thread) kills the master and returns once promoted."""
    rng = random.Random(seed)
    workers = [w.url for w in cluster.workers]
    report = Report(engine=cluster.engine, users=users, seconds=seconds)
    cookies: list[str] = []
    for i in range(users):
        done = await _login(http, workers[i % len(workers)])
        cookie = _session_cookie(done)
        assert done.status_code == 303 and cookie is not None, done.text
        cookies.append(cookie)

    begun = time.monotonic()
    stop = anyio.Event()
    promoted = anyio.Event()

    def note(response: httpx.Response, elapsed: float) -> None:
        now = time.monotonic() - begun
        report.requests += 1
        report.statuses[response.status_code] += 1
        report.latencies.append(elapsed)
        if response.status_code == 503:
            report.first_503 = now if report.first_503 is None else report.first_503
            report.last_503 = now
            if not response.headers.get("retry-after"):
                report.without_retry_after += 1
        elif response.status_code >= 500:
            report.other_5xx += 1

    async def user(i: int) -> None:
        while not stop.is_set():
            started = time.monotonic()
            response = await http.get(rng.choice(workers) + "/api/me", headers={**JSON, "cookie": cookies[i]})
            note(response, time.monotonic() - started)
            renewed = _session_cookie(response)
            if renewed is not None:
                cookies[i] = renewed
            await anyio.sleep(0.02)  # pacing, so that the users do not starve the workers

    async def signer() -> None:
        # Every sign-in is the provider's one user, and the guard keeps at most max_sessions_per_user
        # (100) sessions per user, ending the oldest: stay below it, or the soak would end its own users.
        while not stop.is_set() and report.logins["completed"] + users < SIGN_INS_CAP:
            started = time.monotonic()
            response = await _login(http, rng.choice(workers))
            note(response, time.monotonic() - started)
            if response.status_code == 303 and _session_cookie(response):
                report.logins["completed"] += 1
            elif response.status_code == 503:
                report.logins["503"] += 1
            else:
                report.logins[f"other {response.status_code}"] += 1
            await anyio.sleep(0.1)

    async def killer() -> None:
        await anyio.sleep(kill_after)
        report.killed_at = time.monotonic() - begun
        await anyio.to_thread.run_sync(kill)
        report.promoted_after = time.monotonic() - begun - report.killed_at
        promoted.set()

    async def clock() -> None:
        await anyio.sleep(seconds)
        await promoted.wait()  # at least until the promotion, then a little longer
        await anyio.sleep(2.0)
        stop.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(killer)
        tg.start_soon(clock)
        tg.start_soon(signer)
        for i in range(users):
            tg.start_soon(user, i)

    # Afterwards every session must work again (bounded wait for the last 503s to clear).
    for cookie in cookies:
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while True:
            response = await http.get(rng.choice(workers) + "/api/me", headers={**JSON, "cookie": cookie})
            if response.status_code != 503 or time.monotonic() > deadline:
                break
            await anyio.sleep(0.1)
        if response.status_code != 200:
            report.sessions_lost += 1
    return report


async def count_twice(idp: Any, report: Report) -> None:
    """Fill in the provider's side: codes and refresh tokens it was sent twice, and refreshes."""
    report.codes_exchanged_twice = await idp.count(grant_type="authorization_code", error="invalid_grant")
    report.refresh_tokens_sent_twice = await idp.count(grant_type="refresh_token", error="invalid_grant")
    report.refreshes = await idp.count(grant_type="refresh_token")
