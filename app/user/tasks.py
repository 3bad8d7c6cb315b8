from __future__ import annotations

import logging

from app.user.repository import UserRepository
from celery_task import async_task
from core.db import use_writer

logger = logging.getLogger(__name__)


@async_task(name="user.send_welcome_email")
async def send_welcome_email(user_id: int) -> dict[str, int | str]:
    """Greet a new user (there is no mail server in the stack yet: the mail is logged)."""
    # Sent right after the user was committed: the replica may not have the row yet.
    use_writer()
    user = await UserRepository().get(user_id)
    if user is None:
        logger.warning("no welcome mail: user %s does not exist (any more)", user_id)
        return {"user_id": user_id, "status": "skipped"}
    logger.info("would send welcome mail to %s (user %s)", user.email, user_id)
    return {"user_id": user_id, "status": "sent"}
