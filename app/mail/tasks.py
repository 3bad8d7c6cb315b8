from __future__ import annotations

import logging

import aiosmtplib

from app.mail.message import deliver, render
from celery_task import async_task

logger = logging.getLogger(__name__)


# Retried with exponential backoff (1 s, 2 s, 4 s ... up to 5 minutes, jittered) while the SMTP
# server refuses or cannot be reached; after the last try the task fails and the log says so.
@async_task(
    name="mail.send",
    autoretry_for=(aiosmtplib.SMTPException, OSError),
    retry_backoff=1,
    retry_backoff_max=300,
    max_retries=12,
)
async def send_mail(to: str, template: str, context: dict[str, str]) -> dict[str, str]:
    """Render `template` for `to` and send it."""
    message = render(to, template, context)
    await deliver(message)
    logger.info("mail %r sent to %s", template, to)
    return {"to": to, "subject": str(message["Subject"])}
