from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

from app.auth.exceptions import InvalidCredentialsException, RefreshTokenReusedException
from app.auth.models import AuthSession
from app.auth.repository import AuthSessionRepository
from app.auth.schemas import LoginRequest, TokenPair
from app.auth.throttle import LoginThrottle, login_throttle
from app.user import user_service
from core.config import config
from core.db import Transactional, databases, session_scope, use_writer
from core.db.base import utcnow
from core.exceptions.handlers import is_database_unavailable
from core.fastapi.schemas.current_user import CurrentUser
from core.security.auth_state import AuthState, forget_auth_state, hold_auth_state
from core.security.passwords import hash_password, verify_password
from core.security.tokens import (
    TokenClaims,
    TokenRevokedException,
    decode_token,
    encode_token,
    new_token_id,
)

logger = logging.getLogger(__name__)


class AuthService:
    def __init__(
        self,
        repository: AuthSessionRepository | None = None,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.repository = repository or AuthSessionRepository()
        self.throttle = throttle or login_throttle
        self._dummy_hash: str | None = None

    async def login(self, data: LoginRequest, client_address: str) -> TokenPair:
        await self.throttle.reserve_attempt(data.email, client_address)
        # Read on the writer (a replica may not have the account yet), in a session that is
        # closed again before the slow password check.
        credentials = await user_service.credentials(data.email)
        # An unknown email costs the same hash verification as a wrong password, so the
        # response time does not tell which one it was.
        stored_hash = (
            credentials.password_hash if credentials else await self._dummy_password_hash()
        )
        valid, upgraded_hash = await verify_password(data.password, stored_hash)
        if credentials is None or not valid:
            await self.throttle.record_failure(data.email, client_address)
            raise InvalidCredentialsException()
        await self.throttle.record_success(data.email)
        if upgraded_hash is not None:
            await user_service.upgrade_password_hash(
                credentials.user_id, credentials.password_hash, upgraded_hash
            )
        return await self._start_session(credentials.user_id, credentials.token_version)

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = decode_token(refresh_token, "refresh")
        tokens = await self._rotate(claims)
        if tokens is None:
            await self._revoke(claims.session_id, claims.user_id)
            raise RefreshTokenReusedException()
        return tokens

    async def logout(self, user: CurrentUser) -> None:
        if user.id is not None and user.session_id is not None:
            await self._revoke(user.session_id, user.id)

    @Transactional()
    async def _start_session(self, user_id: int, token_version: int) -> TokenPair:
        session_id, refresh_jti = new_token_id(), new_token_id()
        tokens, refresh_claims = self._issue(user_id, session_id, refresh_jti, token_version)
        await self.repository.add(
            AuthSession(
                id=session_id,
                user_id=user_id,
                refresh_jti=refresh_jti,
                expires_at=refresh_claims.expires_at,
            )
        )
        # A write of the user's: the hold sends their next reads to the writer.
        await hold_auth_state(user_id)
        return tokens

    @Transactional()
    async def _rotate(self, claims: TokenClaims) -> TokenPair | None:
        """The new pair, or None when the token was valid but already used (a replay)."""
        new_jti = new_token_id()
        tokens, refresh_claims = self._issue(
            claims.user_id, claims.session_id, new_jti, claims.token_version
        )
        rotated_for = await self.repository.rotate(
            claims.session_id, claims.jti, new_jti, refresh_claims.expires_at
        )
        if rotated_for is None:
            known = await self.repository.get(claims.session_id)
            if known is None or known.revoked_at is not None or known.expires_at <= utcnow():
                raise TokenRevokedException()
            return None
        user = await self.repository.user_state(claims.user_id)
        if rotated_for != claims.user_id or user is None:
            raise TokenRevokedException()
        token_version, active = user
        if token_version != claims.token_version or not active:
            raise TokenRevokedException()
        return tokens

    @Transactional()
    async def _revoke(self, session_id: str, user_id: int) -> None:
        await self.repository.revoke(session_id)
        await forget_auth_state(user_id)

    @staticmethod
    def _issue(
        user_id: int, session_id: str, refresh_jti: str, token_version: int
    ) -> tuple[TokenPair, TokenClaims]:
        access, _ = encode_token(
            user_id=user_id,
            token_type="access",
            session_id=session_id,
            token_version=token_version,
        )
        refresh, refresh_claims = encode_token(
            user_id=user_id,
            token_type="refresh",
            session_id=session_id,
            token_version=token_version,
            jti=refresh_jti,
        )
        tokens = TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_in=config.ACCESS_TOKEN_EXPIRE_MINUTES * 60,
        )
        return tokens, refresh_claims

    async def _dummy_password_hash(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await hash_password(new_token_id())
        return self._dummy_hash


async def load_auth_state(user_id: int) -> AuthState | None:
    """A user's auth state, read on the writer (it decides access: no replica lag here), and on
    a replica while the writer cannot be reached, so authenticated reads keep working."""
    repository = AuthSessionRepository()
    # Only sessions whose access tokens may still be unexpired need remembering.
    since = utcnow() - timedelta(minutes=config.ACCESS_TOKEN_EXPIRE_MINUTES)
    try:
        async with session_scope():
            use_writer()
            return await repository.auth_state(user_id, since)
    except Exception as error:
        if not (is_database_unavailable(error) and databases.has_separate_reader):
            raise
        logger.warning("writer unreachable (%r); auth state read on a replica", error)
    async with session_scope():
        state = await repository.auth_state(user_id, since)
    return None if state is None else dataclasses.replace(state, from_writer=False)


auth_service = AuthService()
