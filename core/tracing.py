"""Traces (OpenTelemetry over OTLP/HTTP) and error reports (Sentry), each on when configured.

With `OTEL_EXPORTER_OTLP_ENDPOINT` set, a process traces its HTTP requests, database statements
(attribute `db.engine`: writer or reader; a read the writer answered while the replica was down
says writer and `db.reader_fallback`), Redis commands and Celery tasks; the trace context
travels in the task's message headers, so a task's spans join the request that sent it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from sqlalchemy import event
from sqlalchemy.engine import Connection, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from core.config import config

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

# Where a connection keeps the spans of its statements under way (Connection.info is ours).
_SPANS = "otel_spans"

_provider: TracerProvider | None = None


def setup_tracing(service_name: str, exporter: SpanExporter | None = None) -> bool:
    """Trace this process when an OTLP endpoint is configured (or `exporter` is given);
    once per process: instrumentations patch libraries process-wide. True when tracing."""
    global _provider
    if _provider is not None:
        return True
    endpoint = config.OTEL_EXPORTER_OTLP_ENDPOINT or ""
    if exporter is None and not endpoint:
        return False
    # Imported only when tracing: a process that does not trace does not pay for them.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    _provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(_provider)
    RedisInstrumentor().instrument(tracer_provider=_provider)
    CeleryInstrumentor().instrument(tracer_provider=_provider)  # type: ignore[no-untyped-call]
    return True


def shutdown_tracing() -> None:
    """Send the spans still buffered; before the process exits."""
    if _provider is not None:
        _provider.force_flush()


def instrument_app(app: FastAPI) -> None:
    if _provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # Its own receive/send spans would double every request's span count for nothing.
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=_provider,
            excluded_urls="/metrics",
            exclude_spans=["receive", "send"],
        )


def trace_engine(
    engine: AsyncEngine, role: str, on_writer: Callable[[Any], bool] | None = None
) -> None:
    """A span per statement on `engine`, saying which server (`role`) it went to; a read that
    `on_writer(driver connection)` says went to the writer says so, and that it fell back.

    Written on SQLAlchemy's public events: the SQLAlchemy instrumentation cannot tell the
    writer from the reader.
    """
    if _provider is None:
        return
    tracer = _provider.get_tracer("core.db")
    system = engine.dialect.name

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _start(
        conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        attributes: dict[str, str | bool] = {
            "db.system": system,
            "db.statement": statement,
            "db.engine": role,
        }
        if on_writer is not None and on_writer(conn.connection.driver_connection):
            attributes.update({"db.engine": "writer", "db.reader_fallback": True})
        span = tracer.start_span(
            statement.split(None, 1)[0] if statement else system,
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
        )
        conn.info.setdefault(_SPANS, []).append(span)

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _end(
        conn: Connection, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if spans := conn.info.get(_SPANS):
            spans.pop().end()

    @event.listens_for(engine.sync_engine, "handle_error")
    def _fail(context: ExceptionContext) -> None:
        spans = context.connection.info.get(_SPANS) if context.connection is not None else None
        if spans:
            span = spans.pop()
            span.record_exception(context.original_exception)
            span.set_status(trace.StatusCode.ERROR)
            span.end()


def setup_error_reports() -> None:
    """Report unhandled errors to Sentry when `SENTRY_DSN` is set.

    They reach it as the error log lines the error handler and Celery write (Sentry's logging
    integration), so nothing else needs to know about Sentry; the integrations that patch
    libraries are left off.
    """
    if config.SENTRY_DSN:
        import sentry_sdk

        sentry_sdk.init(
            dsn=config.SENTRY_DSN,
            environment=config.ENV,
            auto_enabling_integrations=False,
            # A frame's variables hold tokens, headers and passwords that its scrubber does not
            # find (it looks at names, not inside values): a report would carry credentials.
            include_local_variables=False,
        )
