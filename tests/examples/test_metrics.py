"""``GUARD_METRICS=1``: each example serves the guard's metrics on ``/metrics`` (Prometheus text format), and
the sample Grafana dashboard asks only for metrics the exporter really writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from asgi_oauth_guard import GuardEvent, Reason
from asgi_oauth_guard.otel import GuardTelemetry
from asgi_oauth_guard.testing import OAuthTestProvider
from examples import starlette_app
from examples._settings import Settings

from ..conftest import SECRET_KEY
from .conftest import APP, EXAMPLES
from .test_examples import start_sign_in

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env(
        {"PUBLIC_URL": APP, "GUARD_SECRET_KEY": SECRET_KEY, "DEMO_AUTO_APPROVE": "1", "GUARD_METRICS": "1"}
    )


def samples(text: str) -> dict[str, float]:
    """``name{label="value",...}`` (the scope labels left out) -> value."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(
                f"{k}={v}" for k, v in sorted(sample.labels.items()) if not k.startswith("otel_")
            )
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


@pytest.mark.anyio
@pytest.mark.parametrize(("example", "anyio_backend"), [(name, "asyncio") for name in EXAMPLES])
async def test_metrics_count_the_exchange_and_the_duplicate(client: httpx.AsyncClient) -> None:
    callback = await start_sign_in(client)
    assert (await client.get(callback)).status_code == 303
    assert (await client.get(callback)).status_code == 303  # the back button: absorbed, no second exchange
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    figures = samples(answer.text)
    assert figures["asgi_oauth_guard_sign_ins_total{asgi_oauth_guard_provider=default}"] == 1
    assert figures["asgi_oauth_guard_code_exchanges_total{asgi_oauth_guard_provider=default}"] == 1
    assert figures["asgi_oauth_guard_callback_duplicates_total{asgi_oauth_guard_duplicate=late}"] == 1
    assert (
        figures[
            "asgi_oauth_guard_token_request_duration_seconds_count{asgi_oauth_guard_grant_type=authorization_code,asgi_oauth_guard_provider=default}"
        ]
        == 1
    )


@pytest.mark.anyio
async def test_without_guard_metrics_there_is_no_metrics_route(provider: OAuthTestProvider) -> None:
    plain = Settings.from_env({"PUBLIC_URL": APP, "GUARD_SECRET_KEY": SECRET_KEY})
    app = starlette_app.create_app(plain, idp=provider)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=APP) as client:
        assert (await client.get("/metrics")).status_code == 404


def telemetry_instance() -> GuardTelemetry:
    return GuardTelemetry(meter_provider=MeterProvider())


def exported() -> tuple[set[str], set[str]]:
    """Every series name and label name the Prometheus exporter writes for the guard's instruments, each
    instrument used once."""
    registry = CollectorRegistry()
    meters = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    telemetry = GuardTelemetry(meter_provider=meters)
    for kind in ("login", "code_exchange", "duplicate_absorbed", "refresh", "refresh_shared", "logout"):
        telemetry.on_event(GuardEvent(kind=kind, detail="x", provider="default"))  # type: ignore[arg-type]
    telemetry.on_event(
        GuardEvent(kind="refresh_failed", reason=Reason.refresh_rejected, detail="invalid_grant")
    )
    telemetry.on_event(GuardEvent(kind="relogin", reason=Reason.refresh_rejected))
    telemetry.on_event(GuardEvent(kind="session_ended", detail="max_age"))
    telemetry.on_event(GuardEvent(kind="store_error", detail="read"))
    telemetry.on_event(GuardEvent(kind="offline_grant_lost", detail="revoked"))
    with telemetry.span("refresh", {}):
        with telemetry.span("refresh_lock", {}):
            pass
        with telemetry.span("token_request", {"grant_type": "refresh_token"}):
            pass
    text = generate_latest(registry).decode()
    meters.shutdown()
    series = [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    return {s.name for s in series}, {label for s in series for label in s.labels}


def test_the_grafana_dashboard_asks_only_for_metrics_and_labels_the_exporter_writes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    groupings = [group for expr in exprs for group in re.findall(r"\bby \(([^)]*)\)", expr)]
    matchers = [m for expr in exprs for m in re.findall(r"\{([^}]*)\}", expr)]
    labels_used = {label.strip() for group in groupings for label in group.split(",")}
    labels_used |= {re.split(r"[=!~]", m, maxsplit=1)[0].strip() for ms in matchers for m in ms.split(",")}
    exprs = [re.sub(r"\{[^}]*\}", "", expr) for expr in exprs]
    names_used = {
        name
        for expr in exprs
        for name in re.findall(r"\basgi_oauth_guard_\w+", re.sub(r"\bby \([^)]*\)", "", expr))
    }
    names, labels = exported()
    assert len(names_used) >= 10 and len(labels_used) >= 7
    assert names_used <= names, names_used - names
    assert labels_used <= labels, labels_used - labels
    # Every instrument of GuardTelemetry is used above, and is on the dashboard.
    instruments = [
        v for v in vars(telemetry_instance()).values() if hasattr(v, "add") or hasattr(v, "record")
    ]
    families = {
        re.sub(r"_(total|bucket|count|sum)$", "", n) for n in names if n.startswith("asgi_oauth_guard_")
    }
    assert len(families) == len(instruments), (sorted(families), len(instruments))
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in names_used}
    assert families <= shown, families - shown
