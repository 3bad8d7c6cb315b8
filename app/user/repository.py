from __future__ import annotations

from sqlalchemy import select

from app.user.models import User
from core.db import session


class UserRepository:
    """The SQL for users. It may flush; committing belongs to the transaction boundary."""

    async def get(self, user_id: int) -> User | None:
        query = select(User).where(User.id == user_id, User.deleted_at.is_(None))
        return (await session.execute(query)).scalar_one_or_none()

    async def get_by_email(self, email: str) -> User | None:
        query = select(User).where(User.email == email.lower(), User.deleted_at.is_(None))
        return (await session.execute(query)).scalar_one_or_none()

    async def add(self, user: User) -> User:
        session.add(user)
        await session.flush()
        return user
