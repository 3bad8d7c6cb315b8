from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import AuthSession
from app.role import Role, user_roles
from app.user import User
from core.db import session
from core.db.base import utcnow


class AuthSessionRepository:
    async def add(self, auth_session: AuthSession) -> None:
        session.add(auth_session)
        await session.flush()

    async def get(self, session_id: str) -> AuthSession | None:
        return await session.get(AuthSession, session_id)

    async def rotate(
        self, session_id: str, used_jti: str, new_jti: str, expires_at: datetime
    ) -> int | None:
        """Swap the session's refresh token id if `used_jti` is still the current one.

        One statement, so of two concurrent refreshes with the same token only one matches.
        Returns the session's user id, or None when nothing matched.
        """
        statement = (
            update(AuthSession)
            .where(
                AuthSession.id == session_id,
                AuthSession.refresh_jti == used_jti,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > utcnow(),
            )
            .values(refresh_jti=new_jti, expires_at=expires_at)
            .returning(AuthSession.user_id)
            .execution_options(synchronize_session=False)
        )
        return (await session.execute(statement)).scalar_one_or_none()

    async def revoke(self, session_id: str) -> None:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )


class AuthStateQueries:
    """The queries behind a user's auth state, run on a session of the caller's choosing."""

    @staticmethod
    async def user(db: AsyncSession, user_id: int) -> tuple[int, bool, bool] | None:
        row = (
            await db.execute(
                select(User.token_version, User.is_admin, User.deleted_at).where(User.id == user_id)
            )
        ).one_or_none()
        if row is None:
            return None
        return row.token_version, row.is_admin, row.deleted_at is None

    @staticmethod
    async def permissions(db: AsyncSession, user_id: int) -> set[str]:
        lists = await db.scalars(
            select(Role.permissions)
            .join(user_roles, user_roles.c.role_id == Role.id)
            .where(user_roles.c.user_id == user_id)
        )
        return {code for codes in lists for code in codes}

    @staticmethod
    async def revoked_sessions_since(
        db: AsyncSession, user_id: int, since: datetime
    ) -> Sequence[str]:
        return (
            await db.scalars(
                select(AuthSession.id).where(
                    AuthSession.user_id == user_id, AuthSession.revoked_at > since
                )
            )
        ).all()
