from __future__ import annotations

from app.user.email_tokens import EmailTokenRepository, Purpose, mail_link
from app.user.repository import UserRepository
from celery_task import async_task
from core.db import Transactional, use_writer

Outcome = dict[str, int | str]


@async_task(name="user.send_verification_email")
async def send_verification_email(user_id: int) -> Outcome:
    """Issue a verification token and mail its link (the mail goes out on queue `mail`)."""
    # Sent right after the user was committed: the replica may not have the row yet.
    use_writer()
    return await _mail_verification(user_id)


@Transactional()
async def _mail_verification(user_id: int) -> Outcome:
    user = await UserRepository().get(user_id)
    if user is None or user.is_verified:
        return {"user_id": user_id, "status": "skipped"}
    token = await EmailTokenRepository().issue(user_id, Purpose.VERIFY_EMAIL)
    await mail_link(user.email, "verify_email", user.nickname, "/verify-email", token)
    return {"user_id": user_id, "status": "sent"}


@async_task(name="user.send_password_reset")
async def send_password_reset(email: str) -> Outcome:
    """Mail a reset link if `email` has an account. Done here, not in the request, so that the
    request does the same work, in the same time, whether or not the account exists."""
    use_writer()
    return await _mail_password_reset(email)


@Transactional()
async def _mail_password_reset(email: str) -> Outcome:
    user = await UserRepository().get_by_email(email)
    if user is None:
        return {"status": "skipped"}
    token = await EmailTokenRepository().issue(user.id, Purpose.RESET_PASSWORD)
    await mail_link(user.email, "reset_password", user.nickname, "/reset-password", token)
    return {"status": "sent"}
