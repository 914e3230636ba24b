"""OpenTelemetry metrics and traces for the guard: the ``otel`` extra (``asgi-oauth-guard[otel]``).

::

    from asgi_oauth_guard.otel import GuardTelemetry

    app = OAuthGuard(app, ..., telemetry=GuardTelemetry())

Only ``opentelemetry-api`` is needed here: the app brings the SDK and its exporters (OTLP, Prometheus), and
without an SDK every instrument is a no-op. Meters and tracers come from the global providers unless
``meter_provider`` / ``tracer_provider`` are given. docs/observability.md lists every metric, span and
attribute. No attribute ever holds a token, code, cookie, secret or the user's ``sub``; the values that
come from a provider's answer (its error codes) are kept only when they look like one, else ``other``.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Mapping
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from . import __version__
from ._errors import ProviderUnavailable, ReloginRequired, StoreUnavailable
from ._events import GuardEvent
from ._telemetry import SpanName

__all__ = ["SCOPE", "GuardTelemetry"]

SCOPE = "asgi_oauth_guard"
"""The instrumentation scope's name (the meter's and the tracer's), and every metric's namespace."""

# Attribute keys. error.type is OpenTelemetry's (semantic conventions, "error"); the rest are this library's.
ERROR_TYPE = "error.type"
PROVIDER = "asgi_oauth_guard.provider"
REASON = "asgi_oauth_guard.reason"
DETAIL = "asgi_oauth_guard.detail"
OUTCOME = "asgi_oauth_guard.outcome"
GRANT_TYPE = "asgi_oauth_guard.grant_type"
DUPLICATE = "asgi_oauth_guard.duplicate"
SHARED_FROM = "asgi_oauth_guard.refresh.shared_from"
END_CAUSE = "asgi_oauth_guard.session.end_cause"
STORE_OPERATION = "asgi_oauth_guard.store.operation"

# The bucket boundaries OpenTelemetry's HTTP semantic conventions advise for durations in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# A value from outside (a provider's error code) becomes an attribute only if it looks like a code: a token
# echoed back, or a provider inventing codes, must reach neither a label nor its cardinality.
_CODE = re.compile(r"[a-z][a-z0-9_. -]{0,47}")

# The events that say how the span they happen in ended.
_OUTCOMES = frozenset(
    {"login", "duplicate_absorbed", "relogin", "refresh", "refresh_shared", "refresh_failed"}
)

_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar("asgi_oauth_guard_span", default=None)


def _code(value: str | None) -> str:
    return value if value is not None and _CODE.fullmatch(value) else "other"


def _error_type(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    if isinstance(error, str):
        return _code(error)
    if isinstance(exc, ReloginRequired):
        return exc.reason.value
    if isinstance(exc, ProviderUnavailable):
        return "provider_unavailable"
    if isinstance(exc, StoreUnavailable):
        return "store_unavailable"
    return type(exc).__qualname__


class GuardTelemetry:
    """The guard's events as OpenTelemetry metrics, and its callback and refresh as spans.

    Give it to the guard: ``OAuthGuard(..., telemetry=GuardTelemetry())``. ``meter_provider`` and
    ``tracer_provider``: where to report; the global ones (``metrics.set_meter_provider``...) by default.
    """

    def __init__(
        self,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self._tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)

        def counter(name: str, unit: str, description: str) -> metrics.Counter:
            return meter.create_counter(f"{SCOPE}.{name}", unit=unit, description=description)

        def seconds(name: str, description: str) -> metrics.Histogram:
            return meter.create_histogram(
                f"{SCOPE}.{name}",
                unit="s",
                description=description,
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )

        self.sign_ins = counter("sign_ins", "{sign_in}", "Sign-ins completed: new sessions.")
        self.code_exchanges = counter(
            "code_exchanges", "{exchange}", "Token requests for an authorization code: one per code at most."
        )
        self.duplicates = counter(
            "callback.duplicates",
            "{callback}",
            "Duplicate callbacks answered from the one exchange of their code, with no token request.",
        )
        self.refreshes = counter("refreshes", "{refresh}", "Refreshes: fresh tokens from the provider.")
        self.shared = counter(
            "refresh.shared",
            "{request}",
            "Requests that needed a refresh and got another's instead of sending the refresh token again.",
        )
        self.refresh_failures = counter(
            "refresh.failures", "{refresh}", "Refreshes that gave no fresh tokens, by error.type."
        )
        self.relogins = counter("relogins", "{response}", "Re-login responses, by reason.")
        self.sessions_ended = counter("sessions.ended", "{session}", "Sessions ended, by cause.")
        self.store_errors = counter("store.errors", "{error}", "Store operations that failed, by operation.")
        self.offline_grants_lost = counter(
            "offline_grants.lost", "{grant}", "Offline grants that need the user's consent again, by detail."
        )
        self.token_request_duration = seconds(
            "token_request.duration", "Duration of the calls to the provider's token endpoint."
        )
        self.lock_wait_time = seconds(
            "refresh.lock.wait_time", "Time a refresh waited for the session's refresh lock."
        )
        self.active_refreshes = meter.create_up_down_counter(
            f"{SCOPE}.refresh.active", unit="{refresh}", description="Refreshes in flight in this process."
        )

    # -- events -> metrics ------------------------------------------------------------------------

    def on_event(self, event: GuardEvent) -> None:
        attributes: dict[str, str] = {}
        if event.provider is not None:
            attributes[PROVIDER] = _code(event.provider)
        kind = event.kind
        if kind == "login":
            self.sign_ins.add(1, attributes)
        elif kind == "code_exchange":
            if event.detail != "ok":
                attributes[ERROR_TYPE] = _code(event.detail)
            self.code_exchanges.add(1, attributes)
        elif kind == "duplicate_absorbed":
            self.duplicates.add(1, {**attributes, DUPLICATE: _code(event.detail)})
        elif kind == "refresh":
            self.refreshes.add(1, attributes)
        elif kind == "refresh_shared":
            self.shared.add(1, {**attributes, SHARED_FROM: _code(event.detail)})
        elif kind == "refresh_failed":
            if event.reason is not None:
                attributes[REASON] = event.reason.value
            self.refresh_failures.add(1, {**attributes, ERROR_TYPE: _code(event.detail)})
        elif kind == "relogin":
            if event.reason is not None:
                attributes[REASON] = event.reason.value
            if event.detail is not None:
                attributes[DETAIL] = _code(event.detail)
            self.relogins.add(1, attributes)
        elif kind == "logout":
            self.sessions_ended.add(1, {**attributes, END_CAUSE: "sign_out"})
        elif kind == "session_ended":
            self.sessions_ended.add(1, {**attributes, END_CAUSE: _code(event.detail)})
        elif kind == "store_error":
            self.store_errors.add(1, {**attributes, STORE_OPERATION: _code(event.detail)})
        elif kind == "offline_grant_lost":
            self.offline_grants_lost.add(1, {**attributes, DETAIL: _code(event.detail)})
        span = _current.get()
        if span is not None and span.is_recording():
            marks = {key: value for key, value in attributes.items() if key != PROVIDER}
            if event.reason is not None:
                marks[REASON] = event.reason.value
            if event.detail is not None:
                marks[DETAIL] = _code(event.detail)
            span.add_event(f"{SCOPE}.{kind}", marks)
            if PROVIDER in attributes:  # a callback learns its provider from its sign-in record
                span.set_attribute(PROVIDER, attributes[PROVIDER])
            if kind in _OUTCOMES:
                span.set_attribute(OUTCOME, kind)
                if event.reason is not None:
                    span.set_attribute(REASON, event.reason.value)

    # -- spans ------------------------------------------------------------------------------------

    def span(self, name: SpanName, attributes: Mapping[str, str]) -> _Step:
        return _Step(self, name, attributes)


class _Step:
    """One span of the guard's, current while it runs; timed into a histogram for the token request and the
    refresh lock; counted in ``refresh.active`` for a refresh."""

    __slots__ = ("_attributes", "_name", "_previous", "_span", "_start", "_telemetry", "_token")

    def __init__(self, telemetry: GuardTelemetry, name: SpanName, attributes: Mapping[str, str]) -> None:
        self._telemetry = telemetry
        self._name = name
        self._attributes = {
            (GRANT_TYPE if key == "grant_type" else f"{SCOPE}.{key}"): value
            for key, value in attributes.items()
        }

    def __enter__(self) -> Span:
        self._span = self._telemetry._tracer.start_span(
            f"{SCOPE}.{self._name}",
            kind=SpanKind.INTERNAL,
            attributes=self._attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._previous = _current.set(self._span)
        if self._name == "refresh":
            self._telemetry.active_refreshes.add(1, self._metric_attributes())
        self._start = time.perf_counter()
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._start
        telemetry = self._telemetry
        measured = self._metric_attributes()
        if exc is not None:
            error = _error_type(exc)
            measured[ERROR_TYPE] = error
            self._span.set_attribute(ERROR_TYPE, error)
            # The status says what failed, never the exception's text.
            self._span.set_status(Status(StatusCode.ERROR, error))
        if self._name == "token_request":
            telemetry.token_request_duration.record(elapsed, measured)
        elif self._name == "refresh_lock":
            telemetry.lock_wait_time.record(elapsed, measured)
        elif self._name == "refresh":
            telemetry.active_refreshes.add(-1, self._metric_attributes())
        _current.reset(self._previous)
        otel_context.detach(self._token)
        self._span.end()

    def _metric_attributes(self) -> dict[str, str]:
        return {key: value for key, value in self._attributes.items() if key in (PROVIDER, GRANT_TYPE)}
