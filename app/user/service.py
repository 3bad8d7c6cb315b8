from __future__ import annotations

import base64
import binascii
from typing import Any

from sqlalchemy.exc import IntegrityError

from app.user.events import (
    UserCreated,
    UserCreatedParameter,
    UserDeleted,
    UserDeletedParameter,
)
from app.user.exceptions import (
    AdminDeletionForbiddenException,
    DuplicateEmailException,
    InvalidCursorException,
    LastAdminException,
    UserNotFoundException,
)
from app.user.models import User
from app.user.repository import Credentials, UserRepository
from app.user.schemas import UserCreate, UserPage, UserRead, UserUpdate
from app.user.tasks import send_verification_email
from core.db import Transactional, session_scope, use_writer
from core.db.base import utcnow
from core.helpers.cache import Cache, CacheTag
from core.helpers.event import event_handler
from core.security.auth_state import forget_auth_state
from core.security.passwords import hash_password


def encode_cursor(user_id: int) -> str:
    return base64.urlsafe_b64encode(f"u{user_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        user_id = int(raw[1:]) if raw.startswith("u") else -1
        if not 0 <= user_id < 2**63:
            raise ValueError(raw)
        return user_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidCursorException() from error


class UserService:
    def __init__(self, repository: UserRepository | None = None) -> None:
        self.repository = repository or UserRepository()

    async def register(self, data: UserCreate) -> User:
        # A duplicate is refused before the slow hash (which then holds no connection either).
        async with session_scope():
            use_writer()
            if await self.repository.email_taken(data.email):
                raise DuplicateEmailException()
        return await self._add(data, await hash_password(data.password))

    @Transactional()
    async def _add(self, data: UserCreate, password_hash: str) -> User:
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
        row = await self.repository.public(user_id)
        if row is None:
            raise UserNotFoundException()
        return UserRead.model_validate(row)

    async def send_verification_email(self, user_id: int) -> str:
        """Queue a new verification mail; returns the task id."""
        await self.get(user_id)
        return str((await send_verification_email.adelay(user_id)).id)

    async def lock(self, user_id: int) -> User:
        """The user, its row locked until the surrounding transaction ends."""
        user = await self.repository.lock(user_id)
        if user is None:
            raise UserNotFoundException()
        return user

    async def credentials(self, email: str) -> Credentials | None:
        """What a login checks, read on the writer (a replica may not have the account yet) in
        a unit of work of its own: its connection is back in the pool before the slow hash."""
        async with session_scope():
            use_writer()
            return await self.repository.credentials(email)

    @Cache.cached(tag=CacheTag.GET_USER_LIST, ttl=60)
    async def list_page(self, limit: int, cursor: str | None) -> UserPage:
        after_id = decode_cursor(cursor) if cursor else 0
        rows = await self.repository.public_after(after_id, limit + 1)
        page = rows[:limit]
        has_more = len(rows) > limit
        return UserPage(
            items=[UserRead.model_validate(row) for row in page],
            next_cursor=encode_cursor(page[-1].id) if has_more else None,
        )

    async def update(self, user_id: int, data: UserUpdate) -> UserRead:
        """Apply a nickname or password change (the caller checked `current_password` where it
        is needed; a change of email goes through AccountService)."""
        new_hash = None
        if data.password is not None:
            # Hashed before the transaction: no connection is held during the slow part.
            new_hash = await hash_password(data.password)
        return await self._apply_update(user_id, data.nickname, new_hash)

    @Transactional()
    async def _apply_update(
        self, user_id: int, nickname: str | None, new_hash: str | None
    ) -> UserRead:
        values: dict[str, Any] = {}
        if nickname is not None:
            values["nickname"] = nickname
        if new_hash is not None:
            # Every token of the user dies with the old password.
            values |= {"password_hash": new_hash, "token_version": User.token_version + 1}
            await forget_auth_state(user_id)
        row = await (
            self.repository.update(user_id, values) if values else self.repository.public(user_id)
        )
        if row is None:
            raise UserNotFoundException()
        await self.forget_cached(user_id)
        return UserRead.model_validate(row)

    @Transactional()
    async def upgrade_password_hash(self, user_id: int, old_hash: str, new_hash: str) -> None:
        """Store a re-hash of the same password (a scheme upgrade); sessions stay valid."""
        await self.repository.replace_password_hash(user_id, old_hash, new_hash)

    @Transactional()
    async def delete(self, user_id: int, *, by_admin: bool) -> None:
        """Soft delete: the row stays, the user disappears and all their tokens stop working.
        Only admins delete admins, and never the last active one."""
        user = await self.get(user_id)
        if user.is_admin:
            if not by_admin:
                raise AdminDeletionForbiddenException()
            # Every admin row locked, in one order: two admins deleting each other at once
            # cannot both succeed, nor deadlock.
            if await self.repository.lock_admins() <= 1:
                raise LastAdminException()
        user.deleted_at = utcnow()
        await event_handler.store(UserDeleted, UserDeletedParameter(user_id=user_id))
        await self.end_all_sessions(user_id)
        await self.repository.flush()
        await self.forget_cached(user_id)

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
        await forget_auth_state(user.id)
        await self.forget_cached(user.id)
        return user

    async def forget_cached(self, user_id: int) -> None:
        # Registered now, carried out once the transaction commits.
        await Cache.remove(self.get_read, user_id)
        await Cache.remove_by_tag(CacheTag.GET_USER_LIST)

    @Transactional()
    async def end_all_sessions(self, user_id: int) -> None:
        await self.repository.bump_token_version(user_id)
        await forget_auth_state(user_id)


user_service = UserService()
