from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.fastapi.dependencies.rate_limit import HEADERS_SCOPE_KEY

# Responses are personal unless a route says otherwise: browsers and proxies must not serve
# one caller's answer to another, nor an old one without asking.
PERSONAL = [(b"cache-control", b"private, no-cache"), (b"vary", b"Authorization")]


class SecurityHeadersMiddleware:
    """Headers every API response should carry; HSTS only when configured (HTTPS in front);
    `Cache-Control: private, no-cache` and `Vary: Authorization` unless the route set its own
    Cache-Control (token routes send `no-store`, public lists may send a max-age); and the
    rate-limit headers a RateLimit dependency left in the scope, on whatever response the
    request ends with (a model, a Response the route built, an error)."""

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

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *self.headers]
                headers += scope.get(HEADERS_SCOPE_KEY, ())
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers += PERSONAL
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
