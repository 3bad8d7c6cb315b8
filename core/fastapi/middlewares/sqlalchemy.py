from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import close_session, session_scope


class SQLAlchemyMiddleware:
    """Gives every request its own `session`, and closes it as soon as the response starts.

    A request that never uses the session never creates one, so it opens no connection. A
    connection goes back to the pool before the body is sent, so slow clients cannot hold
    them all; code that runs later (a streaming body, background tasks) gets a fresh session.
    """

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
