from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.fastapi.dependencies.rate_limit import HEADERS_SCOPE_KEY


class RateLimitHeadersMiddleware:
    """Adds the headers a RateLimit dependency computed to the response, whichever it is: a
    model the route returned, a Response it built itself, or an error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and HEADERS_SCOPE_KEY in scope:
                message["headers"] = [*message.get("headers", ()), *scope[HEADERS_SCOPE_KEY]]
            await send(message)

        await self.app(scope, receive, send_with_headers)
