from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import close_session, session_scope


class SQLAlchemyMiddleware:
    """Gives every request its own lazily created `session`, closed as the response starts so slow
    clients cannot hold the pool; later code (streaming, background tasks) gets a fresh one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_after_closing_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                await close_session()
            await send(message)

        async with session_scope():
            await self.app(scope, receive, send_after_closing_session)
