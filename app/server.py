"""The application factory: settings, lifespan, middleware, routers and error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from api import include_routers
from app.auth import load_auth_state
from app.tier import tier_service
from core.config import config
from core.db import databases
from core.exceptions.handlers import UnhandledErrorMiddleware, install_exception_handlers
from core.fastapi.middlewares import (
    AuthenticationMiddleware,
    BasicAuthMiddleware,
    BodyLimitMiddleware,
    RequestContextMiddleware,
    SQLAlchemyMiddleware,
)
from core.heap import settle_heap
from core.helpers.cache import Cache
from core.logging import configure_logging
from core.metrics import METRICS_PATH, MetricsMiddleware, mark_process_dead
from core.security.auth_state import queries
from core.tracing import instrument_app, setup_error_reports, setup_tracing, shutdown_tracing


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Engines are built on first use; what was built is closed here, after the last request.
    settle_heap()
    Cache.follow_changes()
    try:
        yield
    finally:
        try:
            await databases.dispose()
        finally:
            await Cache.close()
            mark_process_dead()
            shutdown_tracing()


def _middleware() -> list[Middleware]:
    # Outermost first. Every response, errors included, passes through the request id and the
    # security headers. Authentication runs inside the session scope: it routes the session.
    middleware = [Middleware(RequestContextMiddleware, hsts_seconds=config.HSTS_SECONDS)]
    if config.CORS_ORIGINS:
        # Before authentication, so preflight requests are answered without a token; around
        # the error responses, so a browser lets the page read them.
        cors = Middleware(
            CORSMiddleware,
            allow_origins=config.CORS_ORIGINS,
            # Credentials are only allowed with an explicit origin list, never with "*".
            allow_credentials="*" not in config.CORS_ORIGINS,
            allow_methods=["*"],
            allow_headers=["*"],
        )
        middleware.append(cors)
    # Right inside those two: an error anywhere further in (basic auth, metrics, the body
    # limit, a route) is answered as a problem document with the id and the headers.
    middleware.append(Middleware(UnhandledErrorMiddleware))
    if config.DOCS_ENABLED and config.DOCS_BASIC_AUTH:
        docs = ["/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"]
        middleware.append(
            Middleware(
                BasicAuthMiddleware, paths=docs, credentials=config.DOCS_BASIC_AUTH, realm="docs"
            )
        )
    if config.METRICS_ENABLED:
        if config.METRICS_BASIC_AUTH:
            guard = Middleware(
                BasicAuthMiddleware,
                paths=[METRICS_PATH],
                credentials=config.METRICS_BASIC_AUTH,
                realm="metrics",
                error_code="METRICS__UNAUTHORIZED",
            )
            middleware.append(guard)
        middleware.append(Middleware(MetricsMiddleware))
    return [
        *middleware,
        Middleware(BodyLimitMiddleware, max_bytes=config.MAX_BODY_BYTES),
        Middleware(SQLAlchemyMiddleware),
        Middleware(AuthenticationMiddleware, load_state=load_auth_state),
    ]


def create_app() -> FastAPI:
    configure_logging()
    setup_error_reports()
    setup_tracing("api")
    docs = bool(config.DOCS_ENABLED)
    app = FastAPI(
        title="API",
        lifespan=lifespan,
        middleware=_middleware(),
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        # A slash redirect is built from the Host header the client sent: an open redirect.
        redirect_slashes=False,
        # Spans come from core.tracing's instrumentation alone; FastAPI's own telemetry would
        # start by itself in any process that has a tracer provider.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    include_routers(app)
    install_exception_handlers(app)
    instrument_app(app)
    queries.tier_limits = tier_service.limits_of
    return app
