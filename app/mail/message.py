"""Mail built from Jinja2 templates (a plain-text and an HTML part) and sent with aiosmtplib, or
written to the log by the console backend."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from functools import cache
from pathlib import Path

import aiosmtplib
from email_validator import EmailNotValidError, validate_email
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from core.config import config

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
SMTP_TIMEOUT_SECONDS = 10.0


@cache
def _environment() -> Environment:
    # StrictUndefined: a template naming a value nobody passed fails loudly instead of mailing "".
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
    )


def render(to: str, template: str, context: dict[str, str]) -> EmailMessage:
    """`<template>.subject.txt`, `<template>.txt` and `<template>.html` made into one message."""
    environment = _environment()
    message = EmailMessage()
    message["From"] = config.MAIL_FROM
    message["To"] = ascii_domain(to)
    message["Subject"] = environment.get_template(f"{template}.subject.txt").render(context).strip()
    message.set_content(environment.get_template(f"{template}.txt").render(context))
    message.add_alternative(
        environment.get_template(f"{template}.html").render(context), subtype="html"
    )
    return message


async def deliver(message: EmailMessage, to: str) -> None:
    """Hand the message for `to` to the configured backend; SMTP errors propagate (the task
    retries)."""
    if config.MAIL_BACKEND == "console":
        text = message.get_body(("plain",))
        body = text.get_content() if text is not None else ""
        logger.info("mail to %s: %s\n%s", message["To"], message["Subject"], body)
        return
    # The envelope names the address itself: read back from the header, an encoded word in it
    # ("=?...?=") would be decoded into another address.
    await aiosmtplib.send(
        message,
        recipients=[ascii_domain(to)],
        hostname=config.SMTP_HOST,
        port=config.SMTP_PORT,
        username=config.SMTP_USER,
        password=config.SMTP_PASSWORD,
        use_tls=config.SMTP_TLS == "tls",
        start_tls=config.SMTP_TLS == "starttls",
        timeout=SMTP_TIMEOUT_SECONDS,
    )


def ascii_domain(address: str) -> str:
    """`address` with its domain in the ASCII form DNS uses: a server without SMTPUTF8 takes
    it (only a non-ASCII local part needs that extension)."""
    # The validator that accepted the address encodes it: Python's own "idna" codec is IDNA 2003,
    # which spells straße.de as strasse.de, another domain.
    try:
        validated = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return address  # the server says whether it can take it
    return f"{validated.local_part}@{validated.ascii_domain}"


def frontend_link(path: str, token: str) -> str:
    return f"{config.FRONTEND_URL.rstrip('/')}{path}?token={token}"


__all__ = ["deliver", "frontend_link", "render"]
