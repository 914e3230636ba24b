"""OpenTelemetry: what the guard's metrics and spans say, read with the SDK's in-memory reader and exporter.

Each test builds its own meter and tracer providers (nothing global), so tests stay independent.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from asgi_oauth_guard import MemoryStore
from asgi_oauth_guard.otel import GuardTelemetry
from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider

from ..conftest import CLIENT_SECRET, SECRET_KEY, BrowserFactory, GuardFactory, login, start_login

pytestmark = pytest.mark.anyio


class Telemetry:
    """A GuardTelemetry reporting to in-memory readers: ``sum(name, **attributes)`` of a counter, the
    ``count(name)`` of a histogram's measurements, and the finished spans."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.guard = GuardTelemetry(meter_provider=self.meter_provider, tracer_provider=self.tracer_provider)

    def points(self) -> Iterator[tuple[str, dict[str, Any], Any]]:
        data = self.reader.get_metrics_data()
        if data is None:
            return
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        yield metric.name, dict(point.attributes or {}), point

    def sum(self, name: str, **attributes: str) -> int:
        total = 0
        for metric, labels, point in self.points():
            if metric == name and all(labels.get(k.replace("__", ".")) == v for k, v in attributes.items()):
                total += point.value
        return total

    def count(self, name: str) -> int:
        return sum(point.count for metric, _, point in self.points() if metric == name)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def shutdown(self) -> None:
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    made = Telemetry()
    yield made
    made.shutdown()


async def test_ten_duplicate_callbacks_are_one_exchange_and_nine_absorbed(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    telemetry: Telemetry,
) -> None:
    browser = browser_factory(guard_factory(telemetry=telemetry.guard))
    callback = await start_login(browser, provider, "/me")
    hold = provider.hold(endpoint="token")
    statuses: list[int] = []

    async def load() -> None:
        statuses.append((await browser.get(callback)).status_code)

    async with anyio.create_task_group() as tg:
        tg.start_soon(load)
        await hold.wait_entered(1)
        for _ in range(9):
            tg.start_soon(load)
        await anyio.wait_all_tasks_blocked()  # the nine are parked, waiting for the first
        hold.release()

    assert statuses == [303] * 10
    assert provider.count(endpoint="token", grant_type="authorization_code") == 1
    assert telemetry.sum("asgi_oauth_guard.code_exchanges") == 1
    assert telemetry.sum("asgi_oauth_guard.callback.duplicates") == 9
    assert (
        telemetry.sum("asgi_oauth_guard.callback.duplicates", asgi_oauth_guard__duplicate="concurrent") == 9
    )
    assert telemetry.sum("asgi_oauth_guard.sign_ins") == 1
    await browser.get(callback)  # the back button, later
    assert telemetry.sum("asgi_oauth_guard.callback.duplicates", asgi_oauth_guard__duplicate="late") == 1
    assert telemetry.sum("asgi_oauth_guard.code_exchanges") == 1
    outcomes = [
        s.attributes.get("asgi_oauth_guard.outcome") for s in telemetry.spans("asgi_oauth_guard.callback")
    ]
    assert sorted(map(str, outcomes)) == ["duplicate_absorbed"] * 10 + ["login"]


async def test_fifty_requests_at_expiry_are_one_refresh_and_forty_nine_shared(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    telemetry: Telemetry,
) -> None:
    browser = browser_factory(guard_factory(telemetry=telemetry.guard))
    await login(browser, provider)
    clock.advance(3600 - 30)  # inside the 60 s leeway of a 1-hour token
    hold = provider.hold(endpoint="token")
    statuses: list[int] = []

    async def call() -> None:
        statuses.append((await browser.get("/api/me", headers={"accept": "application/json"})).status_code)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(call)
        await hold.wait_entered(1)
        await anyio.wait_all_tasks_blocked()
        assert telemetry.sum("asgi_oauth_guard.refresh.active") == 1  # in flight, now
        hold.release()

    assert statuses == [200] * 50
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1
    assert telemetry.sum("asgi_oauth_guard.refreshes") == 1
    assert telemetry.sum("asgi_oauth_guard.refresh.shared") == 49
    assert (
        telemetry.sum("asgi_oauth_guard.refresh.shared", asgi_oauth_guard__refresh__shared_from="in_process")
        == 49
    )
    assert telemetry.sum("asgi_oauth_guard.refresh.active") == 0
    assert telemetry.count("asgi_oauth_guard.refresh.lock.wait_time") == 1
    assert telemetry.count("asgi_oauth_guard.token_request.duration") == 2  # the code, then the refresh
    assert len(telemetry.spans("asgi_oauth_guard.refresh")) == 1


async def test_a_refresh_another_worker_made_is_counted_as_shared_across_workers(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    telemetry: Telemetry,
) -> None:
    store = MemoryStore(clock=clock)  # two guards on one store: two workers
    one = guard_factory(store=store, telemetry=telemetry.guard)
    two = guard_factory(store=store, telemetry=telemetry.guard)
    first = browser_factory(one)
    await login(first, provider)
    second = browser_factory(two)
    second.cookies = first.cookies
    clock.advance(3600 - 30)
    hold = provider.hold(endpoint="token")
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.get, "/me")
        await hold.wait_entered(1)
        tg.start_soon(second.get, "/me")  # waits for the first worker's lock
        await anyio.wait_all_tasks_blocked()
        hold.release()
    assert provider.count(endpoint="token", grant_type="refresh_token") == 1
    assert telemetry.sum("asgi_oauth_guard.refreshes") == 1
    assert (
        telemetry.sum(
            "asgi_oauth_guard.refresh.shared", asgi_oauth_guard__refresh__shared_from="other_worker"
        )
        == 1
    )


async def test_a_revoked_grant_is_one_refresh_failure_and_one_relogin(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    telemetry: Telemetry,
) -> None:
    browser = browser_factory(guard_factory(telemetry=telemetry.guard))
    await login(browser, provider)
    provider.revoke_grants("alice")
    clock.advance(3600)
    answer = await browser.get("/api/me", headers={"accept": "application/json"})
    assert answer.status_code == 401 and answer.json()["reason"] == "refresh_rejected"
    assert telemetry.sum("asgi_oauth_guard.refresh.failures") == 1
    assert (
        telemetry.sum(
            "asgi_oauth_guard.refresh.failures",
            asgi_oauth_guard__reason="refresh_rejected",
            error__type="invalid_grant",
        )
        == 1
    )
    assert telemetry.sum("asgi_oauth_guard.relogins") == 1
    assert telemetry.sum("asgi_oauth_guard.relogins", asgi_oauth_guard__reason="refresh_rejected") == 1
    (refresh,) = telemetry.spans("asgi_oauth_guard.refresh")
    assert refresh.attributes is not None and refresh.attributes["error.type"] == "refresh_rejected"
    (token,) = [
        s
        for s in telemetry.spans("asgi_oauth_guard.token_request")
        if s.attributes and s.attributes["asgi_oauth_guard.grant_type"] == "refresh_token"
    ]
    assert token.attributes is not None and token.attributes["error.type"] == "invalid_grant"


async def test_a_callback_span_holds_the_token_request_and_its_http_call_as_children(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    telemetry: Telemetry,
) -> None:
    async with httpx.AsyncClient(transport=provider.transport()) as http:
        HTTPXClientInstrumentor.instrument_client(http, tracer_provider=telemetry.tracer_provider)
        browser = browser_factory(guard_factory(http_client=http, telemetry=telemetry.guard))
        await login(browser, provider)
        clock.advance(3600)
        assert (await browser.get("/me")).json()["user"] == "alice"

    def children(parent: ReadableSpan) -> list[ReadableSpan]:
        assert parent.context is not None
        return [
            s
            for s in telemetry.spans()
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        ]

    (callback,) = telemetry.spans("asgi_oauth_guard.callback")
    (exchange,) = [s for s in children(callback) if s.name == "asgi_oauth_guard.token_request"]
    assert (
        exchange.attributes is not None
        and exchange.attributes["asgi_oauth_guard.grant_type"] == "authorization_code"
    )
    (post,) = children(exchange)  # httpx's own span, underneath
    assert (
        post.attributes is not None
        and post.attributes.get("http.request.method", post.attributes.get("http.method")) == "POST"
    )
    assert callback.attributes is not None and callback.attributes["asgi_oauth_guard.outcome"] == "login"
    assert [e.name for e in callback.events] == ["asgi_oauth_guard.code_exchange", "asgi_oauth_guard.login"]

    (refresh,) = telemetry.spans("asgi_oauth_guard.refresh")
    assert [s.name for s in children(refresh)] == [
        "asgi_oauth_guard.refresh_lock",
        "asgi_oauth_guard.token_request",
    ]
    assert refresh.attributes is not None and refresh.attributes["asgi_oauth_guard.outcome"] == "refresh"


async def test_ended_sessions_and_store_errors_are_counted_by_cause(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    telemetry: Telemetry,
) -> None:
    store = MemoryStore(clock=clock)
    guard = guard_factory(store=store, telemetry=telemetry.guard, session_max_age=7200)
    browser = browser_factory(guard)
    await login(browser, provider)
    await browser.post("/auth/logout")
    await login(browser, provider)
    clock.advance(7200)
    assert (await browser.get("/me")).status_code == 303
    await login(browser, provider)
    assert await guard.end_sessions(sub="alice") == 1

    async def broken(*args: object, **kwargs: object) -> None:
        raise ConnectionError("store down")

    store.get = broken  # type: ignore[method-assign]
    assert (await browser.get("/me")).status_code == 503
    assert (
        telemetry.sum("asgi_oauth_guard.sessions.ended", asgi_oauth_guard__session__end_cause="sign_out") == 1
    )
    assert (
        telemetry.sum("asgi_oauth_guard.sessions.ended", asgi_oauth_guard__session__end_cause="max_age") == 1
    )
    assert telemetry.sum("asgi_oauth_guard.sessions.ended", asgi_oauth_guard__session__end_cause="app") == 1
    assert telemetry.sum("asgi_oauth_guard.store.errors", asgi_oauth_guard__store__operation="read") == 1
    assert telemetry.sum("asgi_oauth_guard.relogins", asgi_oauth_guard__reason="session_expired") == 1


async def test_no_attribute_or_label_holds_a_token_code_cookie_secret_or_the_user(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    telemetry: Telemetry,
) -> None:
    browser = browser_factory(guard_factory(telemetry=telemetry.guard))
    callback = await start_login(browser, provider)
    await browser.get(callback)
    await browser.get(callback)  # a duplicate
    clock.advance(3600)
    await browser.get("/me")  # a refresh
    provider.revoke_grants("alice")
    clock.advance(3600)
    await browser.get("/me")  # a refused refresh and a re-login
    await login(browser, provider)
    provider.fail_next(1, status=400)  # an odd answer
    clock.advance(3600)
    await browser.get("/me")
    await browser.post("/auth/logout")

    values: list[str] = []
    for name, labels, _ in telemetry.points():
        values += [name, *map(str, labels), *map(str, labels.values())]
    for span in telemetry.spans():
        values += [span.name, span.status.description or ""]
        values += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        for event in span.events:
            values += [event.name, *(f"{k}={v}" for k, v in (event.attributes or {}).items())]
    text = "\n".join(values)
    secrets = [CLIENT_SECRET, SECRET_KEY, *provider.issued_secrets()]
    secrets += [c.params.get("code_verifier", "") for c in provider.calls]
    secrets += [cookie.value or "" for cookie in browser.cookies.jar]
    assert len(provider.issued_secrets()) >= 6 and len(telemetry.spans()) >= 5
    leaked = [value for value in secrets if len(value) >= 8 and value in text]
    assert not leaked, f"{len(leaked)} secret value(s) reached the telemetry"
    assert "alice" not in text  # nor the user's sub


def test_without_the_extra_nothing_of_opentelemetry_is_imported(tmp_path: Any) -> None:
    """A sign-in and a refresh with no telemetry: opentelemetry never enters sys.modules."""
    script = textwrap.dedent(
        """
        import sys, anyio, httpx
        from asgi_oauth_guard import OAuthGuard, MemoryStore
        from asgi_oauth_guard.testing import FakeClock, OAuthTestProvider
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        async def main():
            clock = FakeClock(start=1_800_000_000.0)
            idp = OAuthTestProvider(issuer="https://idp.test", client_id="c", client_secret="s", clock=clock)
            app = Starlette(routes=[Route("/", lambda r: PlainTextResponse("ok"))])
            async with httpx.AsyncClient(transport=idp.transport()) as http:
                guard = OAuthGuard(app, issuer=idp.issuer, client_id="c", client_secret="s", http_client=http,
                                   secret_key="k" * 40, clock=clock, store=MemoryStore(clock=clock))
                async with httpx.AsyncClient(transport=httpx.ASGITransport(guard), base_url="http://a.test") as b:
                    login = await b.get("/auth/login")
                    await b.get(await idp.complete_authorization(login.headers["location"]))
                    clock.advance(3600)
                    assert (await b.get("/")).status_code == 200
            assert idp.count(endpoint="token", grant_type="refresh_token") == 1
            loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
            assert not loaded, loaded

        anyio.run(main)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=120)


def test_the_benchmark_finds_the_same_hot_path_with_and_without_telemetry() -> None:
    """``python -m benchmarks.otel --smoke`` runs, and counts the same Python calls per hot-path request with
    GuardTelemetry (no-op or SDK providers) as without: the hot path never reaches the telemetry. Never speed."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.otel", "--smoke"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| guard")]
    assert len(rows) == 3, done.stdout
    calls = {row[3].strip() for row in rows}
    assert len(calls) == 1 and int(calls.pop()) > 10, done.stdout


async def test_a_lost_offline_grant_is_counted_once_by_detail(
    guard_factory: GuardFactory,
    browser_factory: BrowserFactory,
    provider: OAuthTestProvider,
    clock: FakeClock,
    telemetry: Telemetry,
) -> None:
    from asgi_oauth_guard import ConsentRequired, OfflineAccess

    guard = guard_factory(
        telemetry=telemetry.guard,
        offline=OfflineAccess(),
        server_keys=["otel-server-key-0123456789abcdef0123"],
    )
    await login(browser_factory(guard), provider)
    provider.revoke_grants("alice")
    clock.advance(3600)
    async with guard.tokens() as tm:
        for _ in range(2):
            with pytest.raises(ConsentRequired):
                await tm.for_user("alice")
    lost = telemetry.sum("asgi_oauth_guard.offline_grants.lost", asgi_oauth_guard__detail="revoked")
    assert lost == 1


def test_the_attribute_table_lists_every_reason_and_event_kind() -> None:
    """docs/observability.md names every value asgi_oauth_guard.reason can take, and every event kind."""
    from typing import get_args

    from asgi_oauth_guard import Reason
    from asgi_oauth_guard._events import EventKind

    text = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| `asgi_oauth_guard.reason` |")]
    assert {r.value for r in Reason} <= set(re.findall(r"`(\w+)`", row))
    (events,) = [p for p in text.split("\n\n") if "`on_event` gets the same events" in p]
    assert set(get_args(EventKind)) <= set(re.findall(r"`(\w+)`", events)), events


async def test_metrics_and_spans_name_each_sessions_provider(clock: FakeClock, telemetry: Telemetry) -> None:
    """Two providers in one guard: each sign-in, exchange, refresh and sign-out is counted under its own."""
    from asgi_oauth_guard import OAuthGuard, Provider
    from asgi_oauth_guard.testing import providers_transport

    from ..conftest import inner_app, send_origin_like_a_browser

    idps = {
        name: OAuthTestProvider(
            issuer=f"https://{name}.example.test",
            client_id=f"c-{name}",
            client_secret=f"s-{name}-0123456789",
            clock=clock,
        )
        for name in ("alpha", "beta")
    }
    async with httpx.AsyncClient(transport=providers_transport(*idps.values())) as http:
        guard = OAuthGuard(
            inner_app(),
            providers=[
                Provider(
                    name=name, issuer=idp.issuer, client_id=f"c-{name}", client_secret=f"s-{name}-0123456789"
                )
                for name, idp in idps.items()
            ],
            secret_key=SECRET_KEY,
            http_client=http,
            clock=clock,
            store=MemoryStore(clock=clock),
            require_login=["/me"],
            telemetry=telemetry.guard,
        )
        for name, idp in idps.items():
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(guard),
                base_url="http://app.test",
                headers={"accept": "text/html"},
                event_hooks={"request": [send_origin_like_a_browser]},
            ) as browser:
                start = await browser.get("/auth/login", params={"provider": name, "next": "/me"})
                assert (
                    await browser.get(await idp.complete_authorization(start.headers["location"]))
                ).status_code == 303
                clock.advance(3600)
                assert (await browser.get("/me")).json()["user"] == "alice"
                if name == "beta":
                    assert (await browser.post("/auth/logout")).status_code == 303

    for name in idps:
        assert telemetry.sum("asgi_oauth_guard.sign_ins", asgi_oauth_guard__provider=name) == 1
        assert telemetry.sum("asgi_oauth_guard.code_exchanges", asgi_oauth_guard__provider=name) == 1
        assert telemetry.sum("asgi_oauth_guard.refreshes", asgi_oauth_guard__provider=name) == 1
    assert telemetry.sum("asgi_oauth_guard.sessions.ended", asgi_oauth_guard__provider="beta") == 1
    assert telemetry.sum("asgi_oauth_guard.sessions.ended", asgi_oauth_guard__provider="alpha") == 0
    for span_name in (
        "asgi_oauth_guard.callback",
        "asgi_oauth_guard.refresh",
        "asgi_oauth_guard.token_request",
    ):
        named = sorted(
            str((s.attributes or {}).get("asgi_oauth_guard.provider")) for s in telemetry.spans(span_name)
        )
        assert named == (
            ["alpha", "alpha", "beta", "beta"] if span_name.endswith("token_request") else ["alpha", "beta"]
        )
