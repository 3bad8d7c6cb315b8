"""Bearer-token authentication as pure ASGI middleware: sets `request.user` for every request.

No Authorization header: the caller is anonymous. A header that is there but wrong in any way
(malformed, bad signature, expired, revoked, a refresh token, a deleted user) is answered with
401 at once; it never silently degrades to anonymous.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import has_written, use_writer
from core.exceptions import (
    CustomException,
    DatabaseUnavailableException,
    UnauthorizedException,
)
from core.exceptions.handlers import DATABASE_UNAVAILABLE_ERRORS, problem_from
from core.fastapi.schemas.current_user import ANONYMOUS, CurrentUser
from core.helpers.cache import Cache
from core.helpers.cache.base import bounded, spread
from core.helpers.single_flight import SingleFlight
from core.logging import user_id_var
from core.security.auth_state import (
    AUTH_STATE_TTL_SECONDS,
    INACTIVE,
    AuthState,
    auth_state_key,
    local_auth_states,
    recent_write_key,
    remember_recent_write,
)
from core.security.tokens import (
    InvalidTokenException,
    TokenRevokedException,
    decode_token,
)

logger = logging.getLogger(__name__)

LoadAuthState = Callable[[int], Awaitable[AuthState | None]]
CACHE_TIMEOUT_SECONDS = 0.5


class TokenAuthBackend:
    """Turns an Authorization header into a CurrentUser.

    `load_state` is the application's query for a user's auth state (None when the user does
    not exist); it runs only when the cache does not have the state.
    """

    def __init__(self, load_state: LoadAuthState) -> None:
        self.load_state = load_state
        self._reads = SingleFlight()

    async def authenticate(self, authorization: bytes) -> tuple[CurrentUser, bool]:
        """Return the caller and whether their reads should go to the writer."""
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise InvalidTokenException("The Authorization header must be 'Bearer <token>'.")
        claims = decode_token(token, "access")

        state, recent_write = await self._state(claims.user_id)
        if (
            not state.active
            or state.token_version != claims.token_version
            or claims.session_id in state.revoked_sessions
        ):
            raise TokenRevokedException()
        user = CurrentUser(
            id=claims.user_id,
            is_admin=state.is_admin,
            permissions=state.permissions,
            session_id=claims.session_id,
        )
        return user, recent_write

    async def _state(self, user_id: int) -> tuple[AuthState, bool]:
        """The user's auth state and whether they wrote recently: from this process's copy, else
        from the shared cache, else from the database."""
        local = local_auth_states.get(user_id)
        if local is not None:
            return local
        # The user's concurrent requests share one read (a copy expiring under load is missed
        # by all of them at once), but never one that started before a change was heard.
        generation = local_auth_states.generation
        state, recent_write = await self._reads.run(
            (user_id, generation), lambda: self._read_state(user_id, generation)
        )
        # A write heard while the read was under way still counts.
        return state, recent_write or local_auth_states.wrote_recently(user_id)

    async def _read_state(self, user_id: int, generation: int) -> tuple[AuthState, bool]:
        state, recent_write = await self._cached_state(user_id)
        if state is not None:
            local_auth_states.keep(user_id, state, recent_write, generation)
            return state, recent_write
        state = await self.load_state(user_id) or INACTIVE
        kept = local_auth_states.keep(user_id, state, recent_write, generation)
        await Cache.write(self._cache_state(user_id, state), copy_kept=kept)
        return state, recent_write

    @staticmethod
    async def _cached_state(user_id: int) -> tuple[AuthState | None, bool]:
        backend = Cache.backend
        keys = [auth_state_key(user_id), recent_write_key(user_id)]
        try:
            raw_state, marker = await bounded(
                backend, backend.get_many(keys), CACHE_TIMEOUT_SECONDS
            )
        except Exception as error:
            # Without the cache nothing is known: check the database, and read from the writer.
            logger.warning("auth state not readable from the cache (%r)", error)
            return None, True
        # An empty value is a held state (just changed): load it, like a miss.
        return (AuthState.load(raw_state) if raw_state else None), marker is not None

    @staticmethod
    async def _cache_state(user_id: int, state: AuthState) -> None:
        # Only where nothing is stored: a held key means the state changed while this request
        # was loading it, so what it loaded may be old already.
        backend = Cache.backend
        try:
            await bounded(
                backend,
                backend.add(auth_state_key(user_id), state.dump(), spread(AUTH_STATE_TTL_SECONDS)),
                CACHE_TIMEOUT_SECONDS,
            )
        except Exception as error:
            logger.warning("auth state not stored in the cache (%r)", error)


class AuthenticationMiddleware:
    """Sets `scope["user"]`; after a request that wrote, keeps that user's reads on the writer.

    It must run inside SQLAlchemyMiddleware: it routes the request's session.
    """

    def __init__(self, app: ASGIApp, backend: TokenAuthBackend) -> None:
        self.app = app
        self.backend = backend

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        authorization = _header(scope, b"authorization")
        if authorization is None:
            scope["user"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        try:
            user, recent_write = await self.backend.authenticate(authorization)
        except UnauthorizedException as error:
            await _refuse(error, scope, receive, send)
            return
        except DATABASE_UNAVAILABLE_ERRORS:
            # Outside the routes, so the route error handlers do not apply here.
            await _refuse(DatabaseUnavailableException(), scope, receive, send)
            return
        scope["user"] = user
        # Here rather than in a dependency on every route: a dependency costs each request
        # about a sixth of a bare FastAPI request (measured with make bench).
        user_id_var.set(user.id)
        if recent_write:
            use_writer()

        user_id = user.id
        assert user_id is not None

        async def send_remembering_writes(message: Message) -> None:
            # Before the response leaves: the client may read again the moment it arrives.
            if message["type"] == "http.response.start" and has_written():
                await remember_recent_write(user_id)
            await send(message)

        await self.app(scope, receive, send_remembering_writes)


async def _refuse(error: CustomException, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await problem_from(error)(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None
