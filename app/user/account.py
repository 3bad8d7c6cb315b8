"""The account flows by email: verification, password reset, change of address."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from app.mail import queue_mail
from app.user.email_tokens import CREDENTIAL_LINKS, EmailTokenRepository, Purpose, mail_link
from app.user.exceptions import (
    DuplicateEmailException,
    InvalidEmailTokenException,
    UserNotFoundException,
)
from app.user.models import User
from app.user.repository import UserRepository
from app.user.schemas import UserRead, UserUpdate
from app.user.service import user_service
from core.db import Transactional, session_scope, use_writer
from core.security.auth_state import forget_auth_state
from core.security.passwords import hash_password


class AccountService:
    def __init__(self) -> None:
        self.tokens = EmailTokenRepository()
        self.users = UserRepository()

    @Transactional()
    async def verify_email(self, token: str) -> UserRead:
        used = await self.tokens.use(token, Purpose.VERIFY_EMAIL)
        if used is None:
            raise InvalidEmailTokenException()
        return await self._change(used.user_id, {"is_verified": True})

    async def reset_password(self, token: str, password: str) -> None:
        """Set a new password with a reset token; every session of the user ends."""
        # A bad token is refused before the slow hash, which only a real link may cost.
        async with session_scope():
            use_writer()
            if not await self.tokens.is_valid(token, Purpose.RESET_PASSWORD):
                raise InvalidEmailTokenException()
        await self._apply_reset(token, await hash_password(password))

    @Transactional()
    async def _apply_reset(self, token: str, password_hash: str) -> None:
        used = await self.tokens.use(token, Purpose.RESET_PASSWORD)
        if used is None:
            raise InvalidEmailTokenException()
        await self.tokens.revoke(used.user_id, *CREDENTIAL_LINKS)
        # The link reached the mailbox, so the address is verified too.
        values = {
            "password_hash": password_hash,
            "token_version": User.token_version + 1,
            "is_verified": True,
        }
        await self._change(used.user_id, values)

    async def refuse_early(
        self, user_id: int, data: UserUpdate, versions: Sequence[int] | None
    ) -> None:
        """The cheap refusals of a PATCH (no such user, a stale If-Match, a taken email), made
        before the slow password check and hash; the update's own transaction still decides."""
        async with session_scope():
            use_writer()
            await user_service.current(user_id, versions)
            if data.email is not None and await self.users.email_taken(data.email):
                raise DuplicateEmailException()

    async def update(
        self, user_id: int, data: UserUpdate, versions: Sequence[int] | None = None
    ) -> UserRead:
        """A PATCH of the user: nickname and password at once, a new email once confirmed from
        it. All or nothing: a stale If-Match or a taken email changes nothing and mails no one."""
        # Hashed before the transaction: no connection is held during the slow part.
        new_hash = None if data.password is None else await hash_password(data.password)
        return await self._update(user_id, data, new_hash, versions)

    @Transactional()
    async def _update(
        self,
        user_id: int,
        data: UserUpdate,
        new_hash: str | None,
        versions: Sequence[int] | None,
    ) -> UserRead:
        updated = await user_service.update(user_id, data.nickname, new_hash, versions)
        if data.email is not None:
            await self.request_email_change(user_id, data.email)
        return updated

    @Transactional()
    async def request_email_change(self, user_id: int, new_email: str) -> None:
        """Mail a confirmation link to `new_email` and a notice to the current address."""
        # Locked: of two requests at once, the later one revokes the earlier one's link.
        user = await self.users.lock(user_id)
        if user is None:
            raise UserNotFoundException()
        # Deleted accounts keep their address reserved, so they count as taken.
        if await self.users.email_taken(new_email):
            raise DuplicateEmailException()
        await self.tokens.revoke(user_id, Purpose.CHANGE_EMAIL)  # only the latest request counts
        token = await self.tokens.issue(user_id, Purpose.CHANGE_EMAIL, new_email)
        await mail_link(
            new_email, "confirm_email_change", user.nickname, "/confirm-email-change", token
        )
        await self._notice(user.email, user.nickname, new_email, "requested")

    @Transactional()
    async def confirm_email_change(self, token: str) -> UserRead:
        used = await self.tokens.use(token, Purpose.CHANGE_EMAIL)
        if used is None or used.new_email is None:
            raise InvalidEmailTokenException()
        user = await self.users.get(used.user_id)
        if user is None:
            raise InvalidEmailTokenException()
        old_email, nickname = user.email, user.nickname
        try:
            changed = await self._change(user.id, {"email": used.new_email, "is_verified": True})
        except IntegrityError as error:
            raise DuplicateEmailException() from error
        await self.tokens.revoke(user.id)  # links mailed to the old address
        await self._notice(old_email, nickname, used.new_email, "completed")
        return changed

    async def _change(self, user_id: int, values: dict[str, Any]) -> UserRead:
        row = await self.users.update(user_id, values)
        if row is None:
            raise InvalidEmailTokenException()
        await forget_auth_state(user_id)
        await user_service.forget_cached(user_id)
        return UserRead.model_validate(row)

    @staticmethod
    async def _notice(email: str, nickname: str, new_email: str, state: str) -> None:
        context = {"nickname": nickname, "new_email": new_email, "state": state}
        await queue_mail(email, "email_change_notice", context)


account_service = AccountService()
