from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, bindparam, select, update

from app.user.models import User
from app.user.schemas import UserRead
from core.db import session
from core.fastapi.lists import ListField, ListQuery, ListSpec, Page


class Credentials(NamedTuple):
    user_id: int
    password_hash: str
    token_version: int
    is_verified: bool


# What the API shows of a user, read as plain table columns: a statement without ORM entities
# skips the ORM's compile and loading steps, and there are no objects to build for a response.
_users = User.__table__.c
PUBLIC_COLUMNS = (
    _users.id,
    _users.email,
    _users.nickname,
    _users.is_admin,
    _users.is_verified,
    _users.created_at,
    _users.version,
)
PublicRow = Row[int, str, str, bool, bool, datetime, int]
# Built once: constructing a statement costs more than the database takes to answer it.
_PUBLIC_BY_ID = select(*PUBLIC_COLUMNS).where(
    _users.id == bindparam("user_id"), _users.deleted_at.is_(None)
)
_LIVE_PUBLIC = select(*PUBLIC_COLUMNS).where(_users.deleted_at.is_(None))

# What GET /api/v1/users sorts and filters by.
USER_LIST = ListSpec(
    {
        "id": ListField(_users.id, sort=True),
        "email": ListField(_users.email, sort=True, filters=("contains",)),
        "created_at": ListField(_users.created_at, sort=True, filters=("gte", "lte")),
        "is_admin": ListField(_users.is_admin, filters=("eq",)),
        "is_verified": ListField(_users.is_verified, filters=("eq",)),
    },
    key="id",
    default_sort="id",
)


class UserRepository:
    """The SQL for users. It may flush; committing belongs to the transaction boundary."""

    async def get(self, user_id: int) -> User | None:
        query = select(User).where(User.id == user_id, User.deleted_at.is_(None))
        return (await session.execute(query)).scalar_one_or_none()

    async def get_by_email(self, email: str) -> User | None:
        query = select(User).where(User.email == email.lower(), User.deleted_at.is_(None))
        return (await session.execute(query)).scalar_one_or_none()

    async def email_taken(self, email: str) -> bool:
        """Whether any account, a deleted one included, has `email`."""
        query = select(User.id).where(User.email == email.lower())
        return (await session.execute(query)).first() is not None

    async def lock(self, user_id: int) -> User | None:
        """The live user, its row locked until the transaction ends."""
        query = select(User).where(User.id == user_id, User.deleted_at.is_(None)).with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def lock_admins(self) -> int:
        """Lock every live admin's row until the transaction ends; how many there are."""
        # Whole rows: users already loaded in this session are reloaded as they are locked.
        query = (
            select(User)
            .where(User.is_admin, User.deleted_at.is_(None))
            .order_by(User.id)
            .with_for_update()
        )
        return len((await session.execute(query)).all())

    async def credentials(self, email: str) -> Credentials | None:
        """What a login checks."""
        query = select(User.id, User.password_hash, User.token_version, User.is_verified).where(
            User.email == email.lower(), User.deleted_at.is_(None)
        )
        row = (await session.execute(query)).one_or_none()
        return None if row is None else Credentials(*row)

    async def update(
        self, user_id: int, values: dict[str, Any], versions: Sequence[int] | None = None
    ) -> PublicRow | None:
        """Change a live user's columns in one statement, and its version; its PUBLIC_COLUMNS
        afterwards, or None when there is no such user or (with `versions`, from If-Match) its
        version is none of them. The check is in the WHERE, so two racing updates cannot both
        pass it."""
        condition = [] if versions is None else [User.version.in_(versions)]
        statement = (
            update(User)
            .where(User.id == user_id, User.deleted_at.is_(None), *condition)
            .values(values | {"version": User.version + 1})
            .returning(*PUBLIC_COLUMNS)
            .execution_options(synchronize_session=False)
        )
        return (await session.execute(statement)).one_or_none()

    async def bump_token_version(self, user_id: int) -> None:
        # In SQL, so concurrent bumps all count.
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(token_version=User.token_version + 1)
            .execution_options(synchronize_session=False)
        )

    async def replace_password_hash(self, user_id: int, old_hash: str, new_hash: str) -> None:
        """Swap the hash only if it is still `old_hash`: a password changed meanwhile wins."""
        await session.execute(
            update(User)
            .where(User.id == user_id, User.password_hash == old_hash)
            .values(password_hash=new_hash)
            .execution_options(synchronize_session=False)
        )

    async def public(self, user_id: int) -> PublicRow | None:
        """The PUBLIC_COLUMNS of a live user."""
        return (await session.execute(_PUBLIC_BY_ID, {"user_id": user_id})).one_or_none()

    async def list(self, query: ListQuery) -> Page[UserRead]:
        """A page of live users, as USER_LIST declares."""
        return await USER_LIST.fetch(_LIVE_PUBLIC, query, UserRead)

    async def add(self, user: User) -> User:
        session.add(user)
        await session.flush()
        return user

    async def flush(self) -> None:
        await session.flush()
