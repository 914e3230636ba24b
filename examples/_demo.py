"""The demo's guarantees, shown: the guard's events as a live timeline, and one-click experiments.

With the embedded provider only. Every event the guard emits (``on_event``) goes into a journal that the
home page polls (``GET /demo/events``), with the counts of what the guard did beside what the provider
saw (its own records). ``POST /demo/try/{name}`` runs one experiment with the browser's own cookies,
in-process against the guard, as that many tabs or requests would, and answers what happened, what a
naive client would have done instead, the counts, and a timeline drawn from the experiment's events.

The demo's clock is the real time plus an offset that the experiments move forward (``DemoClock``): the
guard and the provider share it, so "the token expired" is a click, not a 30 s wait.
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from asgi_oauth_guard import GuardEvent
from asgi_oauth_guard.testing import OAuthTestProvider

from ._timeline import Mark, Span, timeline_svg

__all__ = ["Demo", "DemoClock", "Journal"]

MAX_EVENTS = 500
# Turns given to the experiment's requests before the held token request goes on: far more than any needs
# to reach the point where it waits for the one exchange or refresh.
YIELDS = 500

# The lane (a tab, a request) of the experiment request that the guard is serving, for the timeline.
_lane: contextvars.ContextVar[str | None] = contextvars.ContextVar("demo_lane", default=None)


class DemoClock:
    """The time in epoch seconds, plus whatever the experiments moved it forward by."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclasses.dataclass(frozen=True)
class Entry:
    n: int
    at: float  # the demo clock
    kind: str
    reason: str | None
    detail: str | None
    sub: str | None
    lane: str | None

    def public(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# What the guard did, counted from its events.
GUARD_COUNTS = {
    "exchanges": "code_exchange",
    "duplicates": "duplicate_absorbed",
    "sign_ins": "login",
    "refreshes": "refresh",
    "shared": "refresh_shared",
    "refresh_failures": "refresh_failed",
    "relogins": "relogin",
    "sign_outs": "logout",
}


class Journal:
    """The guard's events (its ``on_event``), the last ``MAX_EVENTS`` of them, and a count of each kind."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.entries: list[Entry] = []
        self.kinds: dict[str, int] = {}
        self._n = 0

    def record(self, event: GuardEvent) -> None:
        self._n += 1
        entry = Entry(
            n=self._n,
            at=self._clock(),
            kind=event.kind,
            reason=event.reason.value if event.reason is not None else None,
            detail=event.detail,
            sub=event.sub,
            lane=_lane.get(),
        )
        self.entries.append(entry)
        del self.entries[:-MAX_EVENTS]
        self.kinds[event.kind] = self.kinds.get(event.kind, 0) + 1

    @property
    def last(self) -> int:
        return self._n

    def since(self, n: int) -> list[Entry]:
        return [e for e in self.entries if e.n > n]

    def counts(self) -> dict[str, int]:
        return {name: self.kinds.get(kind, 0) for name, kind in GUARD_COUNTS.items()}


def provider_counts(idp: OAuthTestProvider) -> dict[str, int]:
    """What the provider saw, from its own records."""
    return {
        "exchanges": idp.count(endpoint="token", grant_type="authorization_code"),
        "refreshes": sum(
            1 for c in idp.calls if c.endpoint == "token" and c.grant_type == "refresh_token" and c.status
        ),
        "invalid_grant": idp.count(endpoint="token", error="invalid_grant"),
        "revocations": idp.count(endpoint="revoke"),
    }


def _minus(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after}


class _Browser:
    """The browser's cookies, replayed in-process against the guard, kept up to date from its answers."""

    def __init__(self, request: Request, guard: ASGIApp) -> None:
        self.cookies = dict(request.cookies)
        self.origin = str(request.base_url).rstrip("/")
        self.set_cookies: list[str] = []  # what the browser should keep, after the experiment
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(guard), base_url=self.origin)

    async def send(self, method: str, url: str, *, keep: bool = False, **headers: str) -> httpx.Response:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        answer = await self.client.request(method, url, headers={"cookie": cookie, **headers})
        for line in answer.headers.get_list("set-cookie"):
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if value and "max-age=0" not in line.lower():
                self.cookies[name.strip()] = value
            else:
                self.cookies.pop(name.strip(), None)
            if keep:
                self.set_cookies.append(line)
        return answer

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclasses.dataclass
class _Run:
    """One experiment's record: when each lane's request ran, and its answer."""

    started: float
    spans: list[Span] = dataclasses.field(default_factory=list)


class Demo:
    """The demo's routes in front of the guard: ``GET /demo/events`` and ``POST /demo/try/{name}``."""

    def __init__(self, *, idp: OAuthTestProvider, journal: Journal, clock: Any, leeway: float) -> None:
        self.idp = idp
        self.journal = journal
        self.clock = clock
        self.leeway = leeway
        self.guard: ASGIApp | None = None
        self._up_at: float | None = None
        self.experiments: dict[str, Callable[[_Browser, _Run, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "duplicate-callbacks": self._duplicate_callbacks,
            "stampede": self._stampede,
            "revoke": self._revoke,
            "sign-out-elsewhere": self._sign_out_elsewhere,
            "provider-down": self._provider_down,
        }

    # -- routes -----------------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """The events after ``?after=N``, and the counts: the guard's and the provider's."""
        self._bring_provider_back()
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            after = 0
        return JSONResponse(
            {
                "events": [e.public() for e in self.journal.since(after)],
                "next": self.journal.last,
                "guard": self.journal.counts(),
                "provider": provider_counts(self.idp),
                "provider_down": self.idp.down,
            },
            headers={"cache-control": "no-store"},
        )

    async def run(self, request: Request) -> Response:
        """``POST /demo/try/{name}``, from this app's own page only."""
        origin = request.headers.get("origin")
        if origin is not None and origin != str(request.base_url).rstrip("/"):
            return JSONResponse({"error": "forbidden_origin"}, status_code=403)
        if origin is None and request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
            return JSONResponse({"error": "forbidden_origin"}, status_code=403)
        experiment = self.experiments.get(request.path_params["name"])
        if experiment is None or self.guard is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        try:
            options = await request.json() if await request.body() else {}
        except ValueError:
            return JSONResponse({"error": "invalid_json"}, status_code=400)
        if not isinstance(options, dict):
            return JSONResponse({"error": "invalid_json"}, status_code=400)
        self._bring_provider_back()
        browser = _Browser(request, self.guard)
        mark, guard_before, provider_before = (
            self.journal.last,
            self.journal.counts(),
            provider_counts(self.idp),
        )
        run = _Run(started=self.clock())
        try:
            result = await experiment(browser, run, options)
        finally:
            await browser.aclose()
        events = self.journal.since(mark)
        # The picture starts at the first request of the experiment (after any jump of the clock).
        started = min((span.start for span in run.spans), default=run.started)
        calls = [c for c in self.idp.calls if c.at >= started and c.endpoint in ("token", "revoke")]
        result.update(
            experiment=request.path_params["name"],
            guard_delta=_minus(self.journal.counts(), guard_before),
            provider_delta=_minus(provider_counts(self.idp), provider_before),
            provider_down=self.idp.down,
            events=[e.public() for e in events],
            timeline=timeline_svg(
                result["title"],
                spans=run.spans + _provider_spans(calls, events),
                marks=[Mark(at=e.at, lane=e.lane, kind=e.kind, label=e.detail or e.reason) for e in events],
                provider=[
                    Mark(at=c.at, lane="provider", kind=c.grant_type or c.endpoint, label=c.error)
                    for c in calls
                ],
                started=started,
            ),
        )
        answer = JSONResponse(result, headers={"cache-control": "no-store"})
        for line in browser.set_cookies:
            answer.headers.append("set-cookie", line)
        return answer

    def _bring_provider_back(self) -> None:
        if self._up_at is not None and self.clock() >= self._up_at:
            self.idp.down = False
            self._up_at = None

    # -- helpers ----------------------------------------------------------------------------------

    async def _in_lanes(
        self,
        run: _Run,
        lanes: list[str],
        call: Callable[[], Awaitable[httpx.Response]],
        *,
        hold_token_endpoint: bool = False,
    ) -> list[httpx.Response]:
        """``call`` once per lane, all at once; each request's span on the timeline.

        ``hold_token_endpoint``: the provider's token endpoint holds the first call until every lane is
        waiting, so the race is the same on a slow machine as on a fast one. The lanes run in this process
        with no I/O of their own (the guard, its memory store and the provider are all in-process), so
        yielding to them enough times parks each one: no clock is involved. (anyio's
        ``wait_all_tasks_blocked`` is no use under uvicorn: its 0.1 s main loop keeps looking busy.)
        """
        answers: dict[str, httpx.Response] = {}
        hold = self.idp.hold("token") if hold_token_endpoint else None

        async def one(lane: str) -> None:
            token = _lane.set(lane)
            start = self.clock()
            try:
                answers[lane] = await call()
            finally:
                _lane.reset(token)
            run.spans.append(Span(lane=lane, start=start, end=self.clock(), status=answers[lane].status_code))

        try:
            async with anyio.create_task_group() as tg:
                for lane in lanes:
                    tg.start_soon(one, lane)
                if hold is not None:
                    with anyio.move_on_after(10):  # a bound, should the first call never reach the provider
                        await hold.wait_entered(1)
                    for _ in range(YIELDS):
                        await anyio.lowlevel.checkpoint()
                    hold.release()
        finally:
            if hold is not None:
                hold.release()
        return [answers[lane] for lane in lanes]

    async def _me(self, browser: _Browser) -> dict[str, Any] | None:
        answer = await browser.send("GET", "/api/me", accept="application/json")
        return answer.json() if answer.status_code == 200 else None

    def _alive(self, token: object) -> bool:
        try:
            return isinstance(token, str) and self.idp.grant_alive(token)
        except KeyError:
            return False

    def _expire(self, me: dict[str, Any], *, by: float = 1.0) -> None:
        """Move the demo's clock past the access token's expiry (``by`` seconds after it)."""
        self.clock.advance(float(me.get("expires_in") or 0) + by)

    # -- experiments ------------------------------------------------------------------------------

    async def _duplicate_callbacks(
        self, browser: _Browser, run: _Run, options: dict[str, Any]
    ) -> dict[str, Any]:
        tabs = 5
        me = await self._me(browser)
        login = await browser.send("GET", "/auth/login?next=/", keep=True)
        if login.status_code != 303:
            return {"title": "Could not start a sign-in", "ok": False}
        callback = await self.idp.complete_authorization(
            login.headers["location"], user=str(me["sub"]) if me else None
        )
        answers = await self._in_lanes(
            run,
            [f"tab {i}" for i in range(1, tabs + 1)],
            lambda: browser.send("GET", callback, keep=True),
            hold_token_endpoint=True,  # every tab arrives while the one exchange is at the provider
        )
        after = await self._me(browser)
        same = len({a.headers.get("location") for a in answers}) == 1
        return {
            "title": f"The same callback URL in {tabs} tabs at once",
            "ok": all(a.status_code == 303 for a in answers) and after is not None,
            "naive": (
                f"A naive client sends the code {tabs} times: the provider answers {tabs - 1} times "
                "invalid_grant and, like oidc-provider, revokes the whole grant, so the tokens of the first "
                "exchange die too: every tab ends signed out."
            ),
            "did": (
                f"The guard sent the code once; the other {tabs - 1} tabs waited for that exchange and got "
                f"its session ({'the same redirect' if same else 'redirects'} for all {tabs}). Grant alive: "
                f"{'yes' if after is not None and self._alive(after.get('access_token')) else 'no'}."
            ),
            "answers": [a.status_code for a in answers],
        }

    async def _stampede(self, browser: _Browser, run: _Run, options: dict[str, Any]) -> dict[str, Any]:
        requests = 50
        me = await self._me(browser)
        if me is None:
            return {"title": "Sign in first", "ok": False}
        self._expire(me)
        answers = await self._in_lanes(
            run,
            [f"request {i}" for i in range(1, requests + 1)],
            lambda: browser.send("GET", "/api/me", accept="application/json"),
            hold_token_endpoint=True,
        )
        tokens = {a.json().get("access_token") for a in answers if a.status_code == 200}
        return {
            "title": f"{requests} requests at an expired access token",
            "ok": all(a.status_code == 200 for a in answers),
            "naive": (
                f"A naive client refreshes in every request: {requests} refreshes with one rotating refresh "
                f"token. The provider answers one and refuses {requests - 1} with invalid_grant, then "
                "revokes the grant, the new tokens too: the user is signed out."
            ),
            "did": (
                f"The guard sent one refresh; {requests - 1} requests waited for it and shared its result. "
                f"{sum(a.status_code == 200 for a in answers)} of {requests} answered 200 with "
                f"{len(tokens)} new access token; grant alive: "
                f"{'yes' if len(tokens) == 1 and self._alive(next(iter(tokens))) else 'no'}."
            ),
            "answers": [a.status_code for a in answers],
        }

    async def _revoke(self, browser: _Browser, run: _Run, options: dict[str, Any]) -> dict[str, Any]:
        me = await self._me(browser)
        if me is None:
            return {"title": "Sign in first", "ok": False}
        self.idp.revoke_grants(str(me["sub"]))
        self._expire(me)
        (answer,) = await self._in_lanes(
            run, ["request 1"], lambda: browser.send("GET", "/api/me", accept="application/json")
        )
        reason = answer.json().get("reason") if answer.status_code == 401 else None
        return {
            "title": "The grant revoked at the provider (a password change, an admin)",
            "ok": answer.status_code == 401 and reason == "refresh_rejected",
            "naive": (
                "A naive client gets invalid_grant from its refresh and shows an error page (a 500), or "
                "retries the refresh on every request, each one refused."
            ),
            "did": (
                f"The guard tried one refresh, the provider refused it, and the guard dropped the session's "
                f"tokens and answered the re-login response ({answer.status_code}, reason {reason}): the "
                "page asks you to sign in again, and says why."
            ),
            "answers": [answer.status_code],
        }

    async def _sign_out_elsewhere(
        self, browser: _Browser, run: _Run, options: dict[str, Any]
    ) -> dict[str, Any]:
        me = await self._me(browser)
        if me is None:
            return {"title": "Sign in first", "ok": False}
        this_tab = dict(browser.cookies)
        (out,) = await self._in_lanes(
            run, ["other tab"], lambda: browser.send("POST", "/auth/logout", origin=browser.origin)
        )
        browser.cookies = this_tab  # this tab still sends the cookie it had
        (here,) = await self._in_lanes(
            run, ["this tab"], lambda: browser.send("GET", "/api/me", accept="application/json")
        )
        return {
            "title": "Signed out in another tab",
            "ok": out.status_code == 303 and here.status_code == 401,
            "naive": (
                "A naive client only forgets the cookie of the tab that signed out: the session lives on "
                "server-side until its token expires, and a refresh in flight elsewhere can bring it back."
            ),
            "did": (
                "The guard ended the session in the store (every worker, every tab) under its refresh lock, "
                "revoked the newest refresh token at the provider, and this tab's next request got the "
                f"re-login response ({here.status_code})."
            ),
            "answers": [out.status_code, here.status_code],
        }

    async def _provider_down(self, browser: _Browser, run: _Run, options: dict[str, Any]) -> dict[str, Any]:
        seconds = float(options.get("seconds", 10))
        seconds = min(max(seconds, 0.5), 60.0)
        me = await self._me(browser)
        if me is None:
            return {"title": "Sign in first", "ok": False}
        self.idp.down = True
        # Due but still valid: inside the refresh leeway.
        self.clock.advance(max(0.0, float(me.get("expires_in") or 0) - self.leeway / 2))
        (due,) = await self._in_lanes(
            run, ["request 1"], lambda: browser.send("GET", "/api/me", accept="application/json")
        )
        self.clock.advance(self.leeway)  # now expired
        (expired,) = await self._in_lanes(
            run, ["request 2"], lambda: browser.send("GET", "/api/me", accept="application/json")
        )
        self._up_at = self.clock() + seconds  # on the demo's clock: real time, moved by the experiments
        return {
            "title": f"The provider down for {seconds:g} s",
            "ok": due.status_code == 200 and expired.status_code == 503,
            "naive": (
                "A naive client treats the failed refresh as the end of the session: the user is signed "
                "out (or sees a 500) because the provider had a bad minute."
            ),
            "did": (
                f"The guard served the still-valid token ({due.status_code}), then answered "
                f"{expired.status_code} with Retry-After {expired.headers.get('retry-after', '?')} once it "
                f"had expired, and kept the session: when the provider is back (in {seconds:g} s), the next "
                "request refreshes it."
            ),
            "answers": [due.status_code, expired.status_code],
        }


def _provider_spans(calls: list[Any], events: list[Entry]) -> list[Span]:
    """Each token request at the provider, from its arrival to the guard's event that it answered."""
    answered = [e.at for e in events if e.kind in ("code_exchange", "refresh", "refresh_failed")]
    spans = []
    for call in calls:
        if call.endpoint == "token":
            end = min((at for at in answered if at >= call.at), default=call.at)
            spans.append(Span(lane="provider", start=call.at, end=end, status=call.status))
    return spans
