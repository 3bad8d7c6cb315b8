"""Reading what the suite's SMTP server received."""

from __future__ import annotations

import asyncio
import re
import time
from email.message import EmailMessage

from tests.conftest import FRONTEND_URL
from tests.servers import SmtpServer

# Generous: the mail passes through a broker and one or two real workers.
DELIVERED_WITHIN_SECONDS = 30.0


async def mail_to(smtp: SmtpServer, address: str, subject: str, *, count: int = 1) -> EmailMessage:
    """The `count`-th message to `address` with `subject`, once it has arrived."""
    deadline = time.monotonic() + DELIVERED_WITHIN_SECONDS
    while time.monotonic() < deadline:
        received = [m for m in smtp.sent_to(address) if m["Subject"] == subject]
        if len(received) >= count:
            return received[count - 1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no mail {subject!r} #{count} to {address} within the deadline")


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def token_in(message: EmailMessage, path: str) -> str:
    """The token of the frontend link to `path` in both parts of the message."""
    pattern = re.escape(f"{FRONTEND_URL}{path}?token=") + r"([A-Za-z0-9_-]+)"
    found = re.search(pattern, text_of(message))
    assert found is not None, text_of(message)
    html = message.get_body(("html",))
    assert html is not None
    assert found.group(0) in str(html.get_content())
    return found.group(1)
