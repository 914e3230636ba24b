"""``GUARD_METRICS=1``: the guard's OpenTelemetry metrics on ``/metrics``, for Prometheus to scrape.

The OpenTelemetry SDK with its Prometheus exporter (``pip install opentelemetry-sdk
opentelemetry-exporter-prometheus``, in the ``demo`` extra) reads the guard's instruments
(``asgi_oauth_guard.otel.GuardTelemetry``) when scraped. Each app gets its own registry, so several apps in
one process (the tests) do not mix their figures. ``/metrics`` is served to anyone, as a scrape target
usually is on a private network: in production, serve it where only Prometheus reaches it.
"""

from __future__ import annotations

import dataclasses

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from asgi_oauth_guard.otel import GuardTelemetry

__all__ = ["Prometheus"]


@dataclasses.dataclass
class Prometheus:
    telemetry: GuardTelemetry
    registry: CollectorRegistry
    meters: MeterProvider

    @classmethod
    def create(cls) -> Prometheus:
        registry = CollectorRegistry()
        meters = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
        return cls(telemetry=GuardTelemetry(meter_provider=meters), registry=registry, meters=meters)

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics``: the Prometheus text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def shutdown(self) -> None:
        self.meters.shutdown()
