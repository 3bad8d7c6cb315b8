"""Tracing in-process, with the SDK's in-memory exporter: request, DB, Redis and task-send spans
in one trace, the engine on every DB span, the trace id on the request's log lines."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator

import orjson
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_trace_id

from core import tracing
from core.db import databases
from core.logging import ContextFilter, JSONFormatter
from tests.helpers import registration
from tests.servers import ServerStack


@pytest.fixture
async def traced() -> AsyncIterator[tuple[AsyncClient, InMemorySpanExporter]]:
    from app.server import create_app

    exporter = InMemorySpanExporter()
    # Engines built from here on trace their statements; the ones built before do not.
    await databases.dispose()
    assert tracing.setup_tracing("api", exporter=exporter)
    try:
        app: FastAPI = create_app()
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
            yield http, exporter
    finally:
        # Tracing is per process; the rest of the suite runs untraced again.
        RedisInstrumentor().uninstrument()
        CeleryInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
        tracing._provider = None
        await databases.dispose()


def finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    tracing.shutdown_tracing()  # the batch processor hands over what it holds
    return list(exporter.get_finished_spans())


def server_span(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.kind == SpanKind.SERVER and span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def in_trace(spans: list[ReadableSpan], root: ReadableSpan) -> list[ReadableSpan]:
    assert root.context is not None
    return [
        s for s in spans if s.context is not None and s.context.trace_id == root.context.trace_id
    ]


async def test_a_write_traces_its_statements_on_the_writer_and_the_task_it_sends(
    traced: tuple[AsyncClient, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    exporter.clear()
    created = await client.post("/api/v1/users", json=registration())
    assert created.status_code == 201
    spans = finished(exporter)
    request = server_span(spans, "POST /api/v1/users")
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/api/v1/users"
    trace = in_trace(spans, request)
    statements = [s for s in trace if s.attributes and "db.engine" in s.attributes]
    assert any(s.name == "INSERT" for s in statements)
    assert {s.attributes["db.engine"] for s in statements if s.attributes} == {"writer"}
    # The verification mail is published to the broker within the request's trace.
    assert any(s.name == "apply_async/user.send_verification_email" for s in trace)
    assert any(s.attributes and s.attributes.get("db.system") == "redis" for s in trace)


async def test_each_statement_names_its_engine_and_log_lines_carry_the_trace_id(
    traced: tuple[AsyncClient, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JSONFormatter())
    access = logging.getLogger("api.access")
    access.addHandler(handler)
    exporter.clear()
    try:
        # Readiness asks the writer and the reader, and reads from the cache.
        response = await client.get("/ready")
    finally:
        access.removeHandler(handler)
    assert response.json()["status"] == "ok"
    spans = finished(exporter)
    request = server_span(spans, "GET /ready")
    assert request.context is not None
    lines = [orjson.loads(line) for line in output.getvalue().splitlines()]
    assert [line["trace_id"] for line in lines] == [format_trace_id(request.context.trace_id)]
    trace = in_trace(spans, request)
    statements = {
        (s.attributes["db.engine"], s.attributes["db.statement"])
        for s in trace
        if s.attributes and "db.engine" in s.attributes
    }
    assert ("writer", "SELECT 1") in statements
    assert ("reader", "SELECT pg_is_in_recovery()") in statements
    assert any(s.attributes and s.attributes.get("db.system") == "redis" for s in trace)


async def test_a_read_the_writer_answered_for_a_stopped_replica_says_so(
    traced: tuple[AsyncClient, InMemorySpanExporter], stack: ServerStack
) -> None:
    client, exporter = traced
    fallback = databases.reader_fallback
    assert fallback is not None
    await asyncio.to_thread(stack.replica.stop)
    try:
        exporter.clear()
        response = await client.get("/ready")
    finally:
        await asyncio.to_thread(stack.replica.start)
        stack.wait_for_replica()
    assert response.json()["status"] == "degraded"
    reads = [
        s.attributes
        for s in finished(exporter)
        if s.attributes and s.attributes.get("db.statement") == "SELECT pg_is_in_recovery()"
    ]
    assert [(a["db.engine"], a.get("db.reader_fallback")) for a in reads] == [("writer", True)]


async def test_without_an_endpoint_nothing_is_traced() -> None:
    assert tracing._provider is None
    assert tracing.setup_tracing("api") is False
