from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

from app.auth.exceptions import (
    InvalidCredentialsException,
    RefreshTokenReusedException,
    SessionNotFoundException,
)
from app.auth.models import AuthSession
from app.auth.repository import AuthSessionRepository
from app.auth.schemas import LoginRequest, SessionRead, TokenPair
from app.auth.throttle import LoginThrottle, login_throttle
from app.user import (
    User,
    UserCreate,
    WrongCurrentPasswordException,
    send_password_reset,
    send_verification_email,
    user_service,
)
from core.config import config
from core.db import Transactional, databases, session_scope, use_writer
from core.db.base import utcnow
from core.exceptions.handlers import is_database_unavailable
from core.fastapi.dependencies import EmailNotVerifiedException
from core.fastapi.lists import ListQuery, Page
from core.fastapi.schemas.current_user import CurrentUser
from core.helpers.outage import Outage
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

    async def login(
        self, data: LoginRequest, client_address: str, user_agent: str | None = None
    ) -> TokenPair:
        attempt = await self.throttle.reserve_attempt(data.email, client_address)
        try:
            # Read on the writer (a replica may not have the account yet), in a session that
            # is closed again before the slow password check.
            credentials = await user_service.credentials(data.email)
            # An unknown email costs the same hash verification as a wrong password, so the
            # response time does not tell which one it was.
            stored_hash = (
                credentials.password_hash if credentials else await self._dummy_password_hash()
            )
            valid, upgraded_hash = await verify_password(data.password, stored_hash)
        except Exception:
            await self.throttle.withdraw(attempt)
            raise
        if credentials is None or not valid:
            await self.throttle.record_failure(attempt)
            raise InvalidCredentialsException()
        await self.throttle.record_success(attempt)
        if config.EMAIL_VERIFICATION_REQUIRED and not credentials.is_verified:
            raise EmailNotVerifiedException()
        if upgraded_hash is not None:
            await user_service.upgrade_password_hash(
                credentials.user_id, credentials.password_hash, upgraded_hash
            )
        return await self._start_session(
            credentials.user_id,
            credentials.token_version,
            client_address,
            (user_agent or "")[:255] or None,
        )

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

    async def register(self, data: UserCreate, client_address: str) -> User:
        await self.throttle.reserve("register", data.email, client_address)
        return await user_service.register(data)

    async def resend_verification(self, user_id: int, client_address: str) -> str:
        """Queue a new verification mail; the task's id."""
        user = await user_service.get(user_id)
        await self.throttle.reserve("verify_resend", user.email, client_address)
        return str((await send_verification_email.adelay(user_id)).id)

    async def forgot_password(self, email: str, client_address: str) -> None:
        """The same work whether or not `email` has an account: the worker finds out."""
        await self.throttle.reserve("forgot_password", email, client_address)
        if await self.throttle.may_mail("forgot_password", email):
            await send_password_reset.adelay(email)

    async def logout_all(self, user_id: int) -> None:
        """Every session of the user ends, this one too."""
        await user_service.end_all_sessions(user_id)

    async def sessions(
        self, user_id: int, current_id: str | None, query: ListQuery
    ) -> Page[SessionRead]:
        # On the writer: a session just started or ended shows as such at once.
        use_writer()
        return await self.repository.live(user_id, current_id, query)

    @Transactional()
    async def end_session(self, user_id: int, session_id: str) -> None:
        # Ending an ended session succeeds and spreads the change again: the retry of an end
        # that got a 503 (saved, not heard everywhere) is how the client finishes it.
        if not await self.repository.revoke_owned(session_id, user_id):
            raise SessionNotFoundException()
        await forget_auth_state(user_id)

    async def check_password(self, user_id: int, password: str, address: str) -> None:
        """The caller proves they know their password; failures count as failed logins."""
        # As a login reads: on the writer, with the connection back in the pool before the hash.
        async with session_scope():
            use_writer()
            user = await user_service.get(user_id)
        attempt = await self.throttle.reserve_attempt(user.email, address)
        valid, _ = await verify_password(password, user.password_hash)
        if not valid:
            await self.throttle.record_failure(attempt)
            raise WrongCurrentPasswordException()
        await self.throttle.record_success(attempt)

    @Transactional()
    async def _start_session(
        self, user_id: int, token_version: int, ip: str, user_agent: str | None
    ) -> TokenPair:
        session_id, refresh_jti = new_token_id(), new_token_id()
        tokens, refresh_claims = self._issue(user_id, session_id, refresh_jti, token_version)
        await self.repository.add(
            AuthSession(
                id=session_id,
                user_id=user_id,
                refresh_jti=refresh_jti,
                expires_at=refresh_claims.expires_at,
                token_version=token_version,
                ip=ip[:64],
                user_agent=user_agent,
            )
        )
        # A write of the user's: the hold sends their next reads to the writer.
        await hold_auth_state(user_id)
        return tokens

    @Transactional()
    async def _rotate(self, claims: TokenClaims) -> TokenPair | None:
        """The new pair, or None when the token was valid but already used (a replay)."""
        # Whole seconds, as the tokens carry them: the pair can be signed again identically.
        now = utcnow().replace(microsecond=0)
        new_jti = new_token_id()
        tokens, refresh_claims = self._issue(
            claims.user_id, claims.session_id, new_jti, claims.token_version, now
        )
        rotated_for = await self.repository.rotate(
            claims.session_id, claims.jti, new_jti, refresh_claims.expires_at, now
        )
        if rotated_for is None:
            known = await self.repository.get(claims.session_id)
            if known is None or known.revoked_at is not None or known.expires_at <= utcnow():
                raise TokenRevokedException()
            if not self._within_grace(known, claims.jti):
                return None
            # Two tabs refreshed at once: the later one gets the pair the first one got.
            assert known.rotated_at is not None
            rotated_for = known.user_id
            tokens, _ = self._issue(
                known.user_id, known.id, known.refresh_jti, claims.token_version, known.rotated_at
            )
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
    def _within_grace(known: AuthSession, used_jti: str) -> bool:
        grace = config.REFRESH_TOKEN_REUSE_GRACE_SECONDS
        return (
            grace > 0
            and known.previous_jti == used_jti
            and known.rotated_at is not None
            and (utcnow() - known.rotated_at).total_seconds() < grace
        )

    @staticmethod
    def _issue(
        user_id: int,
        session_id: str,
        refresh_jti: str,
        token_version: int,
        now: datetime | None = None,
    ) -> tuple[TokenPair, TokenClaims]:
        # The pair shares one id, so the same claims always sign into the same pair.
        access, _ = encode_token(
            user_id=user_id,
            token_type="access",
            session_id=session_id,
            token_version=token_version,
            jti=refresh_jti,
            now=now,
        )
        refresh, refresh_claims = encode_token(
            user_id=user_id,
            token_type="refresh",
            session_id=session_id,
            token_version=token_version,
            jti=refresh_jti,
            now=now,
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


# After the writer timed out, auth states are read on a replica this long without trying it:
# a hung writer costs one request its timeout, not every request (a refusal costs nothing).
writer_outage = Outage(5.0)
# A token's expiry is set by its issuer's clock, which may run ahead of this host's: a revoked
# session stays listed this much longer than its tokens can live.
CLOCK_SKEW = timedelta(minutes=5)


async def load_auth_state(user_id: int) -> AuthState | None:
    """A user's auth state, read on the writer (it decides access: no replica lag here), and on
    a replica while the writer cannot be reached, so authenticated reads keep working."""
    repository = AuthSessionRepository()
    # Only sessions whose access tokens may still be unexpired need remembering.
    since = utcnow() - timedelta(minutes=config.ACCESS_TOKEN_EXPIRE_MINUTES) - CLOCK_SKEW
    if not writer_outage.ongoing:
        try:
            with writer_outage.trying():
                async with session_scope():
                    use_writer()
                    return await repository.auth_state(user_id, since)
        except Exception as error:
            if not (is_database_unavailable(error) and databases.has_separate_reader):
                raise
            if isinstance(error, TimeoutError):
                writer_outage.begin()
            logger.warning("writer unreachable (%r); auth states read on a replica", error)
    async with session_scope():
        state = await repository.auth_state(user_id, since)
    return None if state is None else dataclasses.replace(state, from_writer=False)


auth_service = AuthService()
