"""Request ids, the headers every response carries, and the access log, as pure ASGI middleware."""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.fastapi.dependencies.rate_limit import HEADERS_SCOPE_KEY
from core.logging import logged_path, request_id_var, user_id_var

access_logger = logging.getLogger("api.access")

REQUEST_ID_HEADER = b"x-request-id"
# An incoming id is kept only if it is short and plain: it ends up in logs and headers.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
# Responses are personal unless a route says otherwise: browsers and proxies must not serve
# one caller's answer to another, nor an old one without asking.
PERSONAL = [(b"cache-control", b"private, no-cache"), (b"vary", b"Authorization")]


class RequestContextMiddleware:
    """Gives each request an id (a sane incoming X-Request-ID, or a new one) and writes one access
    log line per request. Every response, errors included, gets the id; the security headers
    (HSTS only when configured: HTTPS in front); `Cache-Control: private, no-cache` and `Vary:
    Authorization` unless the route set its own Cache-Control (token routes send `no-store`,
    public lists may send a max-age); and the rate-limit headers a RateLimit dependency left in
    the scope, whatever response the request ends with (a model, a Response, an error)."""

    def __init__(self, app: ASGIApp, hsts_seconds: int = 0) -> None:
        self.app = app
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
        ]
        if hsts_seconds > 0:
            value = f"max-age={hsts_seconds}; includeSubDomains".encode()
            self.headers.append((b"strict-transport-security", value))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or os.urandom(16).hex()
        token = request_id_var.set(request_id)
        user_token = user_id_var.set(None)  # set by the Logging dependency once it is known
        started = time.perf_counter()
        status = 500
        request_id_header = (REQUEST_ID_HEADER, request_id.encode())

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A new list: the message's may belong to a response reused across requests.
                headers = [*message.get("headers", ()), request_id_header, *self.headers]
                headers += scope.get(HEADERS_SCOPE_KEY, ())
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers += PERSONAL
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if access_logger.isEnabledFor(logging.INFO):
                _log_access(scope, status, started)
            user_id_var.reset(user_token)
            request_id_var.reset(token)


def _log_access(scope: Scope, status: int, started: float) -> None:
    path = logged_path(scope)
    access_logger.info(
        "%s %s %s",
        scope["method"],
        path,
        status,
        extra={
            "method": scope["method"],
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "user_id": getattr(scope.get("user"), "id", None) or "-",
        },
    )


def _incoming_request_id(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == REQUEST_ID_HEADER:
            return value.decode() if _SANE_REQUEST_ID.fullmatch(value) else None
    return None
