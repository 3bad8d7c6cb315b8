from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from app.user.models import User
from core.db import session


class UserRepository:
    """The SQL for users. It may flush; committing belongs to the transaction boundary."""

    async def get(self, user_id: int) -> User | None:
        query = select(User).where(User.id == user_id, User.deleted_at.is_(None))
        return (await session.execute(query)).scalar_one_or_none()

    async def get_by_email(self, email: str, *, include_deleted: bool = False) -> User | None:
        query = select(User).where(User.email == email.lower())
        if not include_deleted:
            query = query.where(User.deleted_at.is_(None))
        return (await session.execute(query)).scalar_one_or_none()

    async def list_after(self, after_id: int, limit: int) -> Sequence[User]:
        """Live users with ids above `after_id`, in id order: keyset pagination stays stable
        while rows are added or deleted."""
        query = (
            select(User)
            .where(User.id > after_id, User.deleted_at.is_(None))
            .order_by(User.id)
            .limit(limit)
        )
        return (await session.scalars(query)).all()

    async def add(self, user: User) -> User:
        session.add(user)
        await session.flush()
        return user

    async def flush(self) -> None:
        await session.flush()
