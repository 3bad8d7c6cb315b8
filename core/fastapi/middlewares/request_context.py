"""Request ids and the access log, as pure ASGI middleware."""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logging import request_id_var, user_id_var

access_logger = logging.getLogger("api.access")

REQUEST_ID_HEADER = b"x-request-id"
# An incoming id is kept only if it is short and plain: it ends up in logs and headers.
_SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Gives each request an id (a sane incoming X-Request-ID, or a new one), returns it in the
    response, and writes one access log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A new list: the message's may belong to a response reused across requests.
                message["headers"] = [*message.get("headers", ()), request_id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            if access_logger.isEnabledFor(logging.INFO):
                _log_access(scope, status, started)
            user_id_var.reset(user_token)
            request_id_var.reset(token)


def _log_access(scope: Scope, status: int, started: float) -> None:
    access_logger.info(
        "%s %s %s",
        scope["method"],
        scope["path"],
        status,
        extra={
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "user_id": getattr(scope.get("user"), "id", None) or "-",
        },
    )


def _incoming_request_id(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == REQUEST_ID_HEADER:
            return value.decode() if _SANE_REQUEST_ID.match(value) else None
    return None
