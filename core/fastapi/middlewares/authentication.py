"""Bearer-token authentication as pure ASGI middleware: without an Authorization header the caller
is anonymous; a header that is wrong in any way gets a 401 at once, never silent anonymity."""

from __future__ import annotations

from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from core.db import before_each_commit, use_writer
from core.exceptions import CustomException
from core.exceptions.handlers import problem_from
from core.fastapi.schemas.current_user import ANONYMOUS, CurrentUser
from core.logging import user_id_var
from core.security.auth_state import (
    INACTIVE,
    LoadAuthState,
    fetch_auth_state,
    hold_auth_state,
    queries,
)
from core.security.tokens import InvalidTokenException, TokenRevokedException, decode_token

_NOBODY = AuthCredentials()
_AUTHENTICATED = AuthCredentials(["authenticated"])


async def authenticate(authorization: bytes) -> tuple[CurrentUser, bool]:
    """The caller, and whether the rest of their request should read from the writer."""
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidTokenException("The Authorization header must be 'Bearer <token>'.")
    claims = decode_token(token, "access")
    fetched = await fetch_auth_state(claims.user_id)
    state = fetched.value or INACTIVE
    if (
        not state.active
        or state.token_version != claims.token_version
        or claims.session_id in state.revoked_sessions
    ):
        raise TokenRevokedException()
    user = CurrentUser(
        id=claims.user_id,
        is_admin=state.is_admin,
        is_verified=state.is_verified,
        permissions=state.permissions,
        session_id=claims.session_id,
        tier=state.tier,
        rate_limits=state.rate_limits,
    )
    # Loaded from the writer just now, or held after a write of theirs (the writer took that
    # write, wherever the state was read): the rest of the request reads there too.
    return user, (fetched.hit and fetched.held) or (not fetched.hit and state.from_writer)


class AuthenticationMiddleware:
    """Sets `scope["user"]` and `scope["auth"]`, and makes each commit for the caller hold their
    auth state; it routes the request's session, so it must run inside SQLAlchemyMiddleware."""

    def __init__(self, app: ASGIApp, load_state: LoadAuthState) -> None:
        self.app = app
        queries.auth_state = load_state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = [value for key, value in scope["headers"] if key == b"authorization"]
        if not headers:
            scope["user"], scope["auth"] = ANONYMOUS, _NOBODY
            await self.app(scope, receive, send)
            return
        try:
            if len(headers) > 1:
                raise InvalidTokenException("Send one Authorization header, not several.")
            user, read_on_writer = await authenticate(headers[0])
        except CustomException as error:
            # Outside the routes, so the route error handlers do not apply here; a database
            # error goes on to UnhandledErrorMiddleware, which answers it like a route's.
            await _refuse(error, scope, receive, send)
            return
        scope["user"], scope["auth"] = user, _AUTHENTICATED
        # Here rather than in a dependency on every route: the log context for the whole app.
        user_id_var.set(user.id)
        if read_on_writer:
            use_writer()
        user_id = user.id
        assert user_id is not None
        with before_each_commit(lambda: hold_auth_state(user_id)):
            await self.app(scope, receive, send)


async def _refuse(error: CustomException, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await problem_from(error)(scope, receive, send)
