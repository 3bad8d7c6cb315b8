from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from app.user.email_tokens import CREDENTIAL_LINKS, EmailTokenRepository
from app.user.events import (
    UserCreated,
    UserCreatedParameter,
    UserDeleted,
    UserDeletedParameter,
)
from app.user.exceptions import (
    AdminDeletionForbiddenException,
    DuplicateEmailException,
    LastAdminException,
    UserNotFoundException,
)
from app.user.models import User
from app.user.repository import Credentials, UserRepository
from app.user.schemas import UserCreate, UserRead
from app.user.tasks import send_verification_email
from core.db import Transactional, session_scope, use_writer
from core.db.base import utcnow
from core.exceptions import PreconditionFailedException
from core.fastapi.lists import ListQuery, Page
from core.helpers.cache import Cache, CacheTag
from core.helpers.event import event_handler
from core.security.auth_state import forget_auth_state
from core.security.passwords import hash_password


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
    async def list_page(self, query: ListQuery) -> Page[UserRead]:
        return await self.repository.list(query)

    @Transactional()
    async def update(
        self,
        user_id: int,
        nickname: str | None,
        new_hash: str | None,
        versions: Sequence[int] | None = None,
    ) -> UserRead:
        """Set a nickname and a password hash (the caller hashed it, outside the transaction,
        and checked `current_password` where it is needed). `versions` (from If-Match): change
        nothing unless the user's version is one of them."""
        values: dict[str, Any] = {}
        if nickname is not None:
            values["nickname"] = nickname
        if new_hash is not None:
            # Every token of the user dies with the old password.
            values |= {"password_hash": new_hash, "token_version": User.token_version + 1}
            await forget_auth_state(user_id)
        if not values:
            # Nothing to write here (an email change only mails), but If-Match must hold until
            # the transaction ends, as the UPDATE's WHERE holds it otherwise.
            await self.repository.lock(user_id)
            return await self.current(user_id, versions)
        row = await self.repository.update(user_id, values, versions)
        if row is None:
            # No row matched: either there is no such user or If-Match named an old version.
            await self.current(user_id, versions=None)
            raise PreconditionFailedException()
        if new_hash is not None:
            # After the UPDATE, which waits for a reset mail being issued under the user's lock:
            # its token is committed by then, so this revokes it too.
            await EmailTokenRepository().revoke(user_id, *CREDENTIAL_LINKS)
        await self.forget_cached(user_id)
        return UserRead.model_validate(row)

    async def current(self, user_id: int, versions: Sequence[int] | None) -> UserRead:
        """The user as stored; 404 when absent, 412 when `versions` (If-Match) misses."""
        row = await self.repository.public(user_id)
        if row is None:
            raise UserNotFoundException()
        if versions is not None and row.version not in versions:
            raise PreconditionFailedException()
        return UserRead.model_validate(row)

    @Transactional()
    async def upgrade_password_hash(self, user_id: int, old_hash: str, new_hash: str) -> None:
        """Store a re-hash of the same password (a scheme upgrade); sessions stay valid."""
        await self.repository.replace_password_hash(user_id, old_hash, new_hash)

    @Transactional()
    async def delete(
        self, user_id: int, *, by_admin: bool, versions: Sequence[int] | None = None
    ) -> None:
        """Soft delete: the row stays, the user disappears and all their tokens stop working.
        Only admins delete admins, and never the last active one. `versions` (from If-Match):
        only if the user's version is one of them."""
        user = await self.get(user_id)
        if user.is_admin:
            if not by_admin:
                raise AdminDeletionForbiddenException()
            # Every admin row locked (this one too), in one order: two admins deleting each
            # other at once cannot both succeed, nor deadlock.
            if await self.repository.lock_admins() <= 1:
                raise LastAdminException()
        else:
            await self.lock(user_id)
        # Checked under the lock, whose select reloaded `user`.
        if versions is not None and user.version not in versions:
            raise PreconditionFailedException()
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
        user.version = User.version + 1
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
        await EmailTokenRepository().revoke(user_id, *CREDENTIAL_LINKS)


user_service = UserService()
