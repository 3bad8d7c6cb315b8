"""Mail through a real worker and a real SMTP server, including one that is down or refuses."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiosmtplib
import pytest
from anyio import to_thread
from httpx import AsyncClient

from app.mail import render
from tests.celery_task.conftest import Worker
from tests.helpers import registration
from tests.mailbox import mail_to, token_in
from tests.servers import ServerStack, SmtpServer, free_ports

VERIFY = "Confirm your email address"


def test_a_mail_has_a_text_and_an_html_part_and_escapes_what_it_is_given() -> None:
    context = {"nickname": "<b>Ann</b>", "link": "http://frontend.test/x?token=t", "minutes": "60"}

    message = render("ann@example.com", "verify_email", context)

    assert message["To"] == "ann@example.com"
    assert message["Subject"] == VERIFY
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "<b>Ann</b>" in str(text.get_content())
    assert "&lt;b&gt;Ann&lt;/b&gt;" in str(html.get_content())


async def test_a_mail_goes_to_the_address_it_was_rendered_for(stack: ServerStack) -> None:
    from app.mail.message import deliver

    # Read back from its To header, this address is attacker@evil.example.
    address = "=?x?q?attacker=40evil.example=3e=20?=ann@example.com"
    context = {"nickname": "Ann", "link": "http://frontend.test/x?token=t", "minutes": "60"}

    # The envelope names the literal address, which this server (aiosmtpd) refuses as syntax.
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await deliver(render(address, "verify_email", context), address)

    assert stack.smtp.sent_to("attacker@evil.example") == []


def wait_for_log(worker: Worker, *texts: str) -> None:
    for _ in range(300):
        if all(text in worker.log() for text in texts):
            return
        time.sleep(0.1)
    raise AssertionError(f"the worker never logged {texts}:\n{worker.log()[-3000:]}")


def wait_for_retry(worker: Worker) -> None:
    wait_for_log(worker, "mail.send", "Retry in")


async def test_mail_refused_while_the_smtp_server_is_down_arrives_once_it_is_up(
    client: AsyncClient, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    worker = Worker(
        tmp_path / "worker.log", "user,mail", env={**os.environ, "SMTP_PORT": str(port)}
    )
    late = SmtpServer(port)
    try:
        body = registration()
        response = await client.post("/api/v1/users", json=body)
        # The request that caused the mail does not wait for it.
        assert response.status_code == 201
        await to_thread.run_sync(wait_for_retry, worker)

        late.start()
        received = await mail_to(late, body["email"], VERIFY)
        await asyncio.sleep(1)  # a second copy would show up here
    finally:
        worker.stop()
        late.stop()

    assert token_in(received, "/verify-email")
    assert len([m for m in late.sent_to(body["email"]) if m["Subject"] == VERIFY]) == 1
    verified = await client.post(
        "/api/v1/auth/verify-email", json={"token": token_in(received, "/verify-email")}
    )
    assert verified.status_code == 200


async def test_mail_refused_for_now_arrives_once_when_the_server_takes_it(
    client: AsyncClient, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    smtp = SmtpServer(port)
    smtp.start()
    body = registration()
    smtp.refuse(body["email"], 2)  # "451 4.3.0 Try again later", as a greylisting server says
    # JSON lines, as a log shipper reads them: they carry each task's arguments.
    env = {**os.environ, "SMTP_PORT": str(port), "LOG_JSON": "true"}
    worker = Worker(tmp_path / "worker.log", "user,mail", env=env)
    try:
        response = await client.post("/api/v1/users", json=body)
        received = await mail_to(smtp, body["email"], VERIFY)
        await asyncio.sleep(1)  # a second copy would show up here
    finally:
        worker.stop()
        smtp.stop()

    assert response.status_code == 201
    assert smtp.refusals[body["email"]] == []
    assert len([m for m in smtp.sent_to(body["email"]) if m["Subject"] == VERIFY]) == 1
    token = token_in(received, "/verify-email")
    # Each retry is a message of its own: its logged arguments hide the link as the first did.
    assert "Retry in" in worker.log()
    assert token not in worker.log()
    verified = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 200


async def test_mail_refused_for_good_fails_at_once_and_is_not_retried(tmp_path: Path) -> None:
    # Imported here: pytest looking over a module's names would set the Celery app up too early.
    from app.mail import send_mail

    (port,) = free_ports(1)
    smtp = SmtpServer(port)
    smtp.start()
    address = registration()["email"]
    # A retry would be refused once more, and a third try accepted.
    smtp.refuse(address, 2, "550 5.1.1 No such mailbox")
    worker = Worker(tmp_path / "worker.log", "mail", env={**os.environ, "SMTP_PORT": str(port)})
    context = {"nickname": "Ann", "link": "http://frontend.test/x?token=t", "minutes": "60"}
    try:
        send_mail.delay(address, "verify_email", context)
        await to_thread.run_sync(wait_for_log, worker, "ERROR", "MailRefusedException")
    finally:
        worker.stop()
        smtp.stop()

    failed = worker.log()
    assert f"mail 'verify_email' to {address} refused" in failed
    assert "550, '5.1.1 No such mailbox'" in failed
    assert len(smtp.refusals[address]) == 1
    assert smtp.sent_to(address) == []


async def test_an_international_domain_reaches_a_server_without_smtputf8(tmp_path: Path) -> None:
    from app.mail import send_mail

    (port,) = free_ports(1)
    smtp = SmtpServer(port, smtputf8=False)
    smtp.start()
    worker = Worker(tmp_path / "worker.log", "mail", env={**os.environ, "SMTP_PORT": str(port)})
    context = {"nickname": "Ann", "link": "http://frontend.test/x?token=t", "minutes": "60"}
    try:
        send_mail.delay("ann@bücher.example", "verify_email", context)
        send_mail.delay("änne@example.com", "verify_email", context)
        await to_thread.run_sync(wait_for_log, worker, "ERROR", "änne@example.com refused")
        await to_thread.run_sync(wait_for_log, worker, "sent to ann@bücher.example")
    finally:
        worker.stop()
        smtp.stop()

    assert [m["Subject"] for m in smtp.sent_to("ann@xn--bcher-kva.example")] == [VERIFY]
    # Its local part needs SMTPUTF8: failed at once, not retried for an hour and a half.
    assert "Retry in" not in worker.log()
