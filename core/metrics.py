"""Prometheus metrics: the families, the middleware that records requests, and `GET /metrics`.

One process keeps its figures in memory. Several (`main.py --workers N`) share them through
files in `PROMETHEUS_MULTIPROC_DIR`, which main.py sets and empties before the workers start,
so one scrape of any worker reports them all.
"""

from __future__ import annotations

import functools
import os
import time
from typing import TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy.pool import QueuePool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import databases
from core.fastapi.routes import route_template

T = TypeVar("T", Counter, Gauge, Histogram)

METRICS_PATH = "/metrics"
# The `route` label of requests no route matched: one series, whatever the paths.
UNMATCHED_ROUTE = "unmatched"
# Pool figures are read at most this often per process (and at every scrape).
POOL_REFRESH_SECONDS = 1.0
# Any other method a client sends is counted as OTHER: a label value per made-up method
# would let clients create series without end.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to its last response byte.",
    ["method", "route", "status"],
)
REQUESTS_IN_PROGRESS = Gauge(
    "http_requests_in_progress",
    "Requests being served now.",
    multiprocess_mode="livesum",
)
DB_POOL_CONNECTIONS = Gauge(
    "db_pool_connections",
    "Pooled database connections, by engine and whether a request holds them.",
    ["engine", "state"],
    multiprocess_mode="livesum",
)
CACHE_REQUESTS = Counter(
    "cache_requests_total", "Reads of cached functions, by outcome.", ["result"]
)
RATE_LIMIT_REJECTIONS = Counter(
    "rate_limit_rejections", "Requests refused with 429 by a rate limit or a login throttle."
)

_pools_read_at = 0.0


@functools.cache
def series(metric: T, *labels: str) -> T:
    """One labelled series of `metric`, looked up once: labels() costs more than what a request
    then records. Every label here takes a bounded set of values."""
    return metric.labels(*labels)


def refresh_pool_metrics() -> None:
    """Set the pool gauges from this process's writer and reader pools (public pool API)."""
    global _pools_read_at
    _pools_read_at = time.monotonic()
    engines = {"writer": databases.writer}
    if databases.has_separate_reader:
        engines["reader"] = databases.reader
    for name, engine in engines.items():
        pool = engine.pool
        if isinstance(pool, QueuePool):
            DB_POOL_CONNECTIONS.labels(name, "in_use").set(pool.checkedout())
            DB_POOL_CONNECTIONS.labels(name, "idle").set(pool.checkedin())


def mark_process_dead() -> None:
    """At a worker's exit: its live gauges (requests in progress, pools) stop counting."""
    if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


def _exposition() -> bytes:
    if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class MetricsMiddleware:
    """Records every HTTP request, labelled with its route template, and answers `/metrics`
    (before authentication: a scraper sends basic auth, never a bearer token)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH and scope["method"] == "GET":
            refresh_pool_metrics()
            await Response(_exposition(), media_type=CONTENT_TYPE_LATEST)(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        REQUESTS_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            REQUESTS_IN_PROGRESS.dec()
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = route_template(scope) or UNMATCHED_ROUTE
            series(REQUEST_DURATION, method, route, str(status)).observe(
                time.perf_counter() - started
            )
            if status == 429:  # every limit answers so: RateLimit and the account throttles
                RATE_LIMIT_REJECTIONS.inc()
            if time.monotonic() - _pools_read_at > POOL_REFRESH_SECONDS:
                refresh_pool_metrics()
