"""Email tokens: random, stored as SHA-256 only, bound to one purpose, single use, expiring."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from sqlalchemy import ColumnElement, and_, delete, select, update

from app.mail import frontend_link, queue_mail
from app.user.models import EmailToken, User
from core.config import config
from core.db import session
from core.db.base import utcnow


class Purpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"
    CHANGE_EMAIL = "change_email"


# The links that act on an account's password or address: they end when the password or the
# sessions change (a verification link only confirms the address it was sent to).
CREDENTIAL_LINKS = (Purpose.RESET_PASSWORD, Purpose.CHANGE_EMAIL)


class UsedToken(NamedTuple):
    user_id: int
    new_email: str | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _valid(token: str, purpose: Purpose) -> ColumnElement[bool]:
    return and_(
        EmailToken.token_hash == _digest(token),
        EmailToken.purpose == purpose,
        EmailToken.used_at.is_(None),
        EmailToken.expires_at > utcnow(),
    )


class EmailTokenRepository:
    async def never_verified_nor_mailed(
        self, registered_after: datetime, registered_before: datetime, limit: int = 1000
    ) -> list[int]:
        """Live unverified accounts registered in the window that never had a verification link."""
        mailed = select(EmailToken.id).where(
            EmailToken.user_id == User.id, EmailToken.purpose == Purpose.VERIFY_EMAIL
        )
        query = (
            select(User.id)
            .where(
                User.is_verified.is_(False),
                User.deleted_at.is_(None),
                User.created_at > registered_after,
                User.created_at < registered_before,
                ~mailed.exists(),
            )
            .order_by(User.id)
            .limit(limit)
        )
        return list((await session.scalars(query)).all())

    async def issue(self, user_id: int, purpose: Purpose, new_email: str | None = None) -> str:
        """A new token for `user_id`; the plain token is returned, only its hash is kept."""
        token = secrets.token_urlsafe(32)
        expires_at = utcnow() + timedelta(minutes=config.EMAIL_TOKEN_EXPIRE_MINUTES)
        session.add(
            EmailToken(
                user_id=user_id,
                purpose=purpose,
                token_hash=_digest(token),
                new_email=new_email,
                expires_at=expires_at,
            )
        )
        await session.flush()
        return token

    async def is_valid(self, token: str, purpose: Purpose) -> bool:
        query = select(EmailToken.id).where(_valid(token, purpose))
        return (await session.execute(query)).first() is not None

    async def use(self, token: str, purpose: Purpose) -> UsedToken | None:
        """Mark the token used, if it is valid for `purpose`; one statement, so it is used once."""
        statement = (
            update(EmailToken)
            .where(_valid(token, purpose))
            .values(used_at=utcnow())
            .returning(EmailToken.user_id, EmailToken.new_email)
            .execution_options(synchronize_session=False)
        )
        row = (await session.execute(statement)).one_or_none()
        return None if row is None else UsedToken(*row)

    async def delete(self, token: str) -> None:
        """Forget a token as if never issued (its link was never sent)."""
        await session.execute(delete(EmailToken).where(EmailToken.token_hash == _digest(token)))

    async def revoke(self, user_id: int, *purposes: Purpose) -> None:
        """End the user's unused tokens (of `purposes`; none given: all): a link mailed before
        the password, the sessions or the address changed must not act on the account after."""
        statement = (
            update(EmailToken)
            .where(EmailToken.user_id == user_id, EmailToken.used_at.is_(None))
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if purposes:
            statement = statement.where(EmailToken.purpose.in_(purposes))
        await session.execute(statement)


async def mail_link(to: str, template: str, nickname: str, path: str, token: str) -> None:
    """Queue a mail with the frontend link for `token`; inside a transaction it is published
    once that commits, never on rollback."""
    context = {
        "nickname": nickname,
        "link": frontend_link(path, token),
        "minutes": str(config.EMAIL_TOKEN_EXPIRE_MINUTES),
    }
    await queue_mail(to, template, context)
