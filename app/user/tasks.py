from __future__ import annotations

from datetime import timedelta

from app.user.email_tokens import EmailTokenRepository, Purpose, mail_link
from app.user.repository import UserRepository
from celery_task import BrokerUnavailableException, async_task, run_every
from core.db import Transactional, use_writer
from core.db.base import utcnow

Outcome = dict[str, int | str]
# How often beat sends `send_missed_verification_emails`; a run not started by then is dropped.
CATCH_UP_SECONDS = 300
CATCH_UP_TASK = "user.send_missed_verification_emails"
# A registration younger than this may still have its own mail on the way; one older than a
# day (an imported account, say) is not mailed out of the blue.
MISSED_AFTER, MISSED_WITHIN = timedelta(minutes=10), timedelta(days=1)


@async_task(name="user.send_verification_email")
async def send_verification_email(user_id: int) -> Outcome:
    """Issue a verification token and mail its link (the mail goes out on queue `mail`)."""
    # Sent right after the user was committed: the replica may not have the row yet.
    use_writer()
    if (issued := await _issue_verification(user_id)) is None:
        return {"user_id": user_id, "status": "skipped"}
    email, nickname, token = issued
    try:
        await mail_link(email, "verify_email", nickname, "/verify-email", token)
    except BrokerUnavailableException:
        # The link never left: without its token the account is "never mailed" again, and the
        # catch-up below sends it one.
        await _withdraw(token)
        raise
    return {"user_id": user_id, "status": "sent"}


@Transactional()
async def _issue_verification(user_id: int) -> tuple[str, str, str] | None:
    user = await UserRepository().get(user_id)
    if user is None or user.is_verified:
        return None
    token = await EmailTokenRepository().issue(user_id, Purpose.VERIFY_EMAIL)
    return user.email, user.nickname, token


@Transactional()
async def _withdraw(token: str) -> None:
    await EmailTokenRepository().delete(token)


@async_task(name=CATCH_UP_TASK)
async def send_missed_verification_emails() -> int:
    """Mail a verification link to every recent account that never had one; how many.

    The catch-up for a `send_verification_email` that was never queued (the broker was out of
    reach when the user registered, and the registration still succeeded).
    """
    now = utcnow()
    missed = await EmailTokenRepository().never_verified_nor_mailed(
        now - MISSED_WITHIN, now - MISSED_AFTER
    )
    for user_id in missed:
        await send_verification_email.adelay(user_id)
    return len(missed)


@async_task(name="user.send_password_reset")
async def send_password_reset(email: str) -> Outcome:
    """Mail a reset link if `email` has an account. Done here, not in the request, so that the
    request does the same work, in the same time, whether or not the account exists."""
    use_writer()
    return await _mail_password_reset(email)


@Transactional()
async def _mail_password_reset(email: str) -> Outcome:
    repository = UserRepository()
    user = await repository.get_by_email(email)
    # Locked, and still at `email`: an address change committing meanwhile either waits for
    # this token and revokes it, or has moved the account away from this mailbox.
    if user is None or (user := await repository.lock(user.id)) is None or user.email != email:
        return {"status": "skipped"}
    token = await EmailTokenRepository().issue(user.id, Purpose.RESET_PASSWORD)
    await mail_link(user.email, "reset_password", user.nickname, "/reset-password", token)
    return {"status": "sent"}


# Read by `celery beat` (`make beat`, compose's `beat`), which imports every app/*/tasks.py.
run_every(CATCH_UP_SECONDS, CATCH_UP_TASK)
