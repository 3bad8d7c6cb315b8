"""Mail built from Jinja2 templates (a plain-text and an HTML part) and sent with aiosmtplib, or
written to the log by the console backend."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from functools import cache
from pathlib import Path

import aiosmtplib
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


async def deliver(message: EmailMessage) -> None:
    """Hand the message to the configured backend; SMTP errors propagate (the task retries)."""
    if config.MAIL_BACKEND == "console":
        text = message.get_body(("plain",))
        body = text.get_content() if text is not None else ""
        logger.info("mail to %s: %s\n%s", message["To"], message["Subject"], body)
        return
    await aiosmtplib.send(
        message,
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
    local, _, domain = address.rpartition("@")
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address  # the server says whether it can take it


def frontend_link(path: str, token: str) -> str:
    return f"{config.FRONTEND_URL.rstrip('/')}{path}?token={token}"


__all__ = ["deliver", "frontend_link", "render"]
