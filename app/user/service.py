from __future__ import annotations

import base64
import binascii

from sqlalchemy.exc import IntegrityError

from app.user.events import UserCreated, UserCreatedParameter
from app.user.exceptions import (
    DuplicateEmailException,
    InvalidCursorException,
    UserNotFoundException,
)
from app.user.models import User
from app.user.repository import UserRepository
from app.user.schemas import UserCreate, UserPage, UserRead, UserUpdate
from app.user.tasks import send_welcome_email
from core.db import Transactional
from core.db.base import utcnow
from core.helpers.cache import Cache, CacheTag
from core.helpers.event import event_handler
from core.security.auth_state import forget_auth_state_after_commit
from core.security.passwords import hash_password


def encode_cursor(user_id: int) -> str:
    return base64.urlsafe_b64encode(f"u{user_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("u"):
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidCursorException() from error


class UserService:
    def __init__(self, repository: UserRepository | None = None) -> None:
        self.repository = repository or UserRepository()

    @Transactional()
    async def register(self, data: UserCreate) -> User:
        # Hash before touching the database, so no connection is held during the slow part.
        password_hash = await hash_password(data.password)
        user = User(email=data.email, password_hash=password_hash, nickname=data.nickname)
        try:
            await self.repository.add(user)
        except IntegrityError as error:
            # The unique constraint decides, so two concurrent registrations cannot both win.
            raise DuplicateEmailException() from error
        await Cache.remove_by_tag(CacheTag.GET_USER_LIST)
        await event_handler.store(UserCreated, UserCreatedParameter(user_id=user.id))
        return user

    async def get(self, user_id: int) -> User:
        user = await self.repository.get(user_id)
        if user is None:
            raise UserNotFoundException()
        return user

    @Cache.cached(prefix="user", ttl=60)
    async def get_read(self, user_id: int) -> UserRead:
        """What the API shows of a user, cached until the user changes."""
        return UserRead.model_validate(await self.get(user_id))

    async def send_welcome_email(self, user_id: int) -> str:
        """Queue the welcome mail again; returns the task id."""
        await self.get(user_id)
        return str(send_welcome_email.delay(user_id).id)

    async def find_by_email(self, email: str) -> User | None:
        return await self.repository.get_by_email(email)

    @Cache.cached(tag=CacheTag.GET_USER_LIST, ttl=60)
    async def list_page(self, limit: int, cursor: str | None) -> UserPage:
        after_id = decode_cursor(cursor) if cursor else 0
        users = await self.repository.list_after(after_id, limit + 1)
        page = users[:limit]
        has_more = len(users) > limit
        return UserPage(
            items=[UserRead.model_validate(user) for user in page],
            next_cursor=encode_cursor(page[-1].id) if has_more else None,
        )

    @Transactional()
    async def update(self, user_id: int, data: UserUpdate) -> User:
        user = await self.get(user_id)
        if data.nickname is not None:
            user.nickname = data.nickname
        if data.password is not None:
            user.password_hash = await hash_password(data.password)
            self._end_all_sessions(user)
        await self.repository.flush()
        await self._forget_cached(user_id)
        return user

    @Transactional()
    async def replace_password_hash(self, user: User, password_hash: str) -> None:
        """Store a re-hash of the same password (a scheme upgrade); sessions stay valid."""
        user.password_hash = password_hash
        await self.repository.flush()

    @Transactional()
    async def delete(self, user_id: int) -> None:
        """Soft delete: the row stays, the user disappears and all their tokens stop working."""
        user = await self.get(user_id)
        user.deleted_at = utcnow()
        self._end_all_sessions(user)
        await self.repository.flush()
        await self._forget_cached(user_id)

    @Transactional()
    async def create_or_promote_admin(self, email: str, password: str | None) -> User:
        """Make `email` an admin: create the account if needed (then a password is required)."""
        user = await self.repository.get_by_email(email)
        if user is None:
            if not password:
                raise ValueError(f"{email} has no account yet: a password is needed to create it")
            data = UserCreate(email=email, password=password, nickname=email.split("@")[0][:64])
            user = await self.register(data)
        user.is_admin = True
        await self.repository.flush()
        forget_auth_state_after_commit(user.id)
        await self._forget_cached(user.id)
        return user

    async def _forget_cached(self, user_id: int) -> None:
        # Registered now, carried out once the transaction commits.
        await Cache.remove(self.get_read, user_id)
        await Cache.remove_by_tag(CacheTag.GET_USER_LIST)

    @staticmethod
    def _end_all_sessions(user: User) -> None:
        user.token_version += 1
        forget_auth_state_after_commit(user.id)


user_service = UserService()
