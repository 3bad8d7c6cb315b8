from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from core.db import session_scope


class SQLAlchemyMiddleware:
    """Gives every request its own `session` and closes it after the response is sent.

    A request that never uses the session never creates one, so it opens no connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        async with session_scope():
            await self.app(scope, receive, send)
