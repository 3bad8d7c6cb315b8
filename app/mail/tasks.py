from __future__ import annotations

import logging

import aiosmtplib

from app.mail.message import deliver, render
from celery_task import async_task

logger = logging.getLogger(__name__)


class MailRefusedException(Exception):
    """The SMTP server refused the message for good (a 5xx reply): trying again cannot help."""


def _refused_for_good(error: aiosmtplib.SMTPException) -> bool:
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        return True  # an address this server cannot take (non-ASCII, no SMTPUTF8): never will
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(_refused_for_good(refused) for refused in error.recipients)
    return isinstance(error, aiosmtplib.SMTPResponseException) and 500 <= error.code < 600


# Retried with exponential backoff (1 s, 2 s, 4 s ... up to 5 minutes, jittered) while the SMTP
# server cannot be reached or refuses for now (4xx); after the last try the task fails and the
# log says so. A permanent refusal (5xx) is no SMTPException to retry: the task fails at once.
# No result is stored: a stored state carries the task's arguments, links with live tokens.
@async_task(
    name="mail.send",
    ignore_result=True,
    autoretry_for=(aiosmtplib.SMTPException, OSError),
    retry_backoff=1,
    retry_backoff_max=300,
    max_retries=12,
)
async def send_mail(to: str, template: str, context: dict[str, str]) -> dict[str, str]:
    """Render `template` for `to` and send it."""
    message = render(to, template, context)
    try:
        await deliver(message, to)
    except aiosmtplib.SMTPException as error:
        if not _refused_for_good(error):
            raise
        raise MailRefusedException(f"mail {template!r} to {to} refused: {error}") from error
    logger.info("mail %r sent to %s", template, to)
    return {"to": to, "subject": str(message["Subject"])}


async def queue_mail(to: str, template: str, context: dict[str, str]) -> None:
    """Send `template` to `to` (after the commit, inside a transaction). Logs, task events and
    Flower show the recipient and the template, never the context: its links log anyone in."""
    await send_mail.aapply_async((to, template, context), argsrepr=repr((to, template, "...")))
