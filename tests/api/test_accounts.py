"""The account flows by email, end to end: requests, real workers, real mail received."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from uuid import uuid4

import pytest
import redis
from fastapi import Depends, FastAPI
from httpx import ASGITransport, AsyncClient

from app.user import account_service
from core.db import Transactional, session_scope
from core.fastapi.dependencies import IsAuthenticated, IsVerified, PermissionDependency
from tests.celery_task.conftest import Worker
from tests.celery_task.test_broker_outage import RedisOutage
from tests.celery_task.test_celery import result_of
from tests.helpers import PASSWORD, Account, login, registration, signed_up
from tests.mailbox import mail_to, text_of, token_in
from tests.servers import ServerStack

VERIFY = "Confirm your email address"
RESET = "Reset your password"
CONFIRM_CHANGE = "Confirm your new email address"
CHANGE_NOTICE = "Your email address is changing"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture(scope="module", autouse=True)
def mail_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """Workers as compose runs them for the queues these flows use."""
    # JSON lines, as a log shipper reads them: they carry each task's arguments.
    env = {**os.environ, "LOG_JSON": "true"}
    started = Worker(tmp_path_factory.mktemp("accounts") / "worker.log", "user,mail", env=env)
    yield started
    started.stop()


async def verified(client: AsyncClient, stack: ServerStack, account: Account) -> None:
    token = token_in(await mail_to(stack.smtp, account.email, VERIFY), "/verify-email")
    response = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 200, response.text


async def test_an_account_registered_while_the_broker_was_down_gets_its_link_later(
    client: AsyncClient, stack: ServerStack
) -> None:
    # Imported here: importing a task module reads the Celery settings, which the test sets.
    from app.user.tasks import send_missed_verification_emails

    body = registration()
    outage = RedisOutage(stack, "stopped")
    outage.begin()
    try:
        registered = await client.post("/api/v1/users", json=body)
    finally:
        await outage.end(client)
    # Saved, whatever the answer says of the cache; its verification mail was never queued.
    assert registered.status_code in {201, 503}, registered.text
    email = body["email"]
    user_id = int(stack.primary.psql(f"SELECT id FROM users WHERE email = '{email}'"))
    links = f"SELECT count(*) FROM email_tokens WHERE user_id = {user_id}"
    assert stack.primary.psql(links) == "0"
    # Ten minutes on, past the time its own mail had to arrive.
    stack.primary.psql(
        f"UPDATE users SET created_at = created_at - interval '11 minutes' WHERE id = {user_id}"
    )

    mailed = await result_of(await send_missed_verification_emails.adelay())

    assert isinstance(mailed, int)
    assert mailed >= 1  # the suite's other such accounts count too
    token = token_in(await mail_to(stack.smtp, email, VERIFY), "/verify-email")
    verified = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 200
    assert verified.json()["is_verified"] is True
    # Mailed once: the next run finds it verified (and it had a link).
    await result_of(await send_missed_verification_emails.adelay())
    assert stack.primary.psql(links) == "1"


async def test_registration_mails_a_link_that_verifies_the_address_once(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    assert account.responses[0].json()["is_verified"] is False

    message = await mail_to(stack.smtp, account.email, VERIFY)
    token = token_in(message, "/verify-email")
    verified_user = await client.post("/api/v1/auth/verify-email", json={"token": token})
    again = await client.post("/api/v1/auth/verify-email", json={"token": token})

    assert message["From"] == "no-reply@localhost"
    assert verified_user.status_code == 200
    assert verified_user.json()["is_verified"] is True
    assert set(verified_user.json()) == {
        "id", "email", "nickname", "is_admin", "is_verified", "created_at", "version"
    }  # fmt: skip
    me = await client.get("/api/v1/users/me", headers=account.headers)
    assert me.json()["is_verified"] is True
    assert again.status_code == 400
    assert again.json()["error_code"] == "AUTH__INVALID_EMAIL_TOKEN"


async def test_an_address_is_mailed_at_its_own_domain_and_nowhere_else(
    client: AsyncClient, stack: ServerStack
) -> None:
    local = uuid4().hex[:16]
    # IDNA 2008, as the address was validated: straße and strasse are two domains.
    registered = await client.post(
        "/api/v1/users", json=registration(email=f"{local}@straße.example.com")
    )
    # Mail software decodes an encoded word in a To header into another address.
    redirecting = await client.post(
        "/api/v1/users",
        json=registration(email=f"=?x?q?{local}=40evil.example.com=3e=20?=x@example.com"),
    )

    assert registered.status_code == 201, registered.text
    assert registered.json()["email"] == f"{local}@straße.example.com"
    message = await mail_to(stack.smtp, f"{local}@xn--strae-oqa.example.com", VERIFY)
    assert message["To"] == f"{local}@xn--strae-oqa.example.com"
    assert redirecting.status_code == 422
    assert redirecting.json()["errors"][0]["loc"] == ["body", "email"]
    assert stack.smtp.sent_to(f"{local}@strasse.example.com") == []
    assert stack.smtp.sent_to(f"{local}@evil.example.com") == []


async def test_resend_mails_a_new_link(client: AsyncClient, stack: ServerStack) -> None:
    account = await signed_up(client)
    await mail_to(stack.smtp, account.email, VERIFY)

    resent = await client.post("/api/v1/auth/verify-email/resend", headers=account.headers)
    second = await mail_to(stack.smtp, account.email, VERIFY, count=2)
    response = await client.post(
        "/api/v1/auth/verify-email", json={"token": token_in(second, "/verify-email")}
    )

    assert resent.status_code == 202
    assert response.status_code == 200
    assert response.json()["is_verified"] is True


@pytest.mark.parametrize(
    "token",
    ["unknown-token-that-was-never-issued", "x", "a" * 128],
)
async def test_unknown_tokens_are_400(client: AsyncClient, token: str) -> None:
    for path in ("verify-email", "confirm-email-change"):
        response = await client.post(f"/api/v1/auth/{path}", json={"token": token})
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["error_code"] == "AUTH__INVALID_EMAIL_TOKEN"
    reset = await client.post(
        "/api/v1/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert reset.json()["error_code"] == "AUTH__INVALID_EMAIL_TOKEN"


async def test_malformed_token_bodies_are_422(client: AsyncClient) -> None:
    for body in ({}, {"token": ""}, {"token": "a" * 129}, {"token": "bad\x00token"}):
        response = await client.post("/api/v1/auth/verify-email", json=body)
        assert response.status_code == 422, body


async def test_a_token_works_only_for_its_purpose(client: AsyncClient, stack: ServerStack) -> None:
    account = await signed_up(client)
    verify_token = token_in(await mail_to(stack.smtp, account.email, VERIFY), "/verify-email")
    asked = await client.post("/api/v1/auth/forgot-password", json={"email": account.email})
    reset_token = token_in(await mail_to(stack.smtp, account.email, RESET), "/reset-password")

    reset_as_verify = await client.post("/api/v1/auth/verify-email", json={"token": reset_token})
    verify_as_reset = await client.post(
        "/api/v1/auth/reset-password", json={"token": verify_token, "password": NEW_PASSWORD}
    )

    assert asked.status_code == 202
    assert reset_as_verify.status_code == 400
    assert verify_as_reset.status_code == 400
    assert (await login(client, account.email)).status_code == 200
    # Both still work for what they were made for.
    ok = await client.post("/api/v1/auth/verify-email", json={"token": verify_token})
    assert ok.status_code == 200


async def test_an_expired_token_is_400(client: AsyncClient, stack: ServerStack) -> None:
    account = await signed_up(client)
    token = token_in(await mail_to(stack.smtp, account.email, VERIFY), "/verify-email")
    stack.primary.psql(
        "UPDATE email_tokens SET expires_at = now() - interval '1 second' "
        f"WHERE user_id = {account.id}"
    )

    response = await client.post("/api/v1/auth/verify-email", json={"token": token})

    assert response.status_code == 400
    assert response.json()["error_code"] == "AUTH__INVALID_EMAIL_TOKEN"
    state = stack.primary.psql(f"SELECT is_verified FROM users WHERE id = {account.id}")
    assert state == "f"


async def test_tokens_are_stored_only_as_hashes(client: AsyncClient, stack: ServerStack) -> None:
    account = await signed_up(client)
    token = token_in(await mail_to(stack.smtp, account.email, VERIFY), "/verify-email")

    stored = stack.primary.psql(f"SELECT token_hash FROM email_tokens WHERE user_id = {account.id}")

    assert token not in stored
    assert len(stored) == 64


async def test_forgot_password_answers_alike_and_the_reset_ends_every_session(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    unknown = await client.post(
        "/api/v1/auth/forgot-password", json={"email": registration()["email"]}
    )
    known = await client.post("/api/v1/auth/forgot-password", json={"email": account.email})
    token = token_in(await mail_to(stack.smtp, account.email, RESET), "/reset-password")

    too_short = await client.post(
        "/api/v1/auth/reset-password", json={"token": token, "password": "short"}
    )
    reset = await client.post(
        "/api/v1/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    reused = await client.post(
        "/api/v1/auth/reset-password", json={"token": token, "password": "yet another one!"}
    )

    assert (unknown.status_code, unknown.json()) == (known.status_code, known.json())
    assert known.status_code == 202
    assert too_short.status_code == 422
    assert reset.status_code == 204
    assert reused.status_code == 400
    assert (await client.get("/api/v1/users/me", headers=account.headers)).status_code == 401
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert refreshed.status_code == 401
    assert (await login(client, account.email)).status_code == 401
    assert (await login(client, account.email, NEW_PASSWORD)).status_code == 200


async def test_a_mailed_token_is_in_the_mail_and_nowhere_else(
    client: AsyncClient, stack: ServerStack, mail_worker: Worker
) -> None:
    account = await signed_up(client)
    await client.post("/api/v1/auth/forgot-password", json={"email": account.email})
    token = token_in(await mail_to(stack.smtp, account.email, RESET), "/reset-password")
    await asyncio.sleep(0.5)  # the mail task's last log line and stored state

    results = redis.Redis.from_url(stack.redis.url_for(2))
    stored = [results.get(key) or b"" for key in results.scan_iter("celery-task-meta-*")]
    assert stored
    assert not [value for value in stored if token.encode() in value]
    log = mail_worker.log()
    assert "mail.send" in log
    assert token not in log
    reset = await client.post(
        "/api/v1/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert reset.status_code == 204


async def test_forgot_password_takes_as_long_for_unknown_as_for_known_addresses(
    client: AsyncClient, stack: ServerStack
) -> None:
    # The one timing assertion of the suite, which the issue asks for: 20 tries of each.
    tries = 20
    known = [f"known-{n}-{account_suffix()}@example.com" for n in range(tries)]
    values = ", ".join(f"('{email}', 'not-a-hash', 'timing')" for email in known)
    stack.primary.psql(f"INSERT INTO users (email, password_hash, nickname) VALUES {values}")
    unknown = [f"unknown-{n}-{account_suffix()}@example.com" for n in range(tries)]

    async def took(email: str) -> float:
        started = asyncio.get_running_loop().time()
        response = await client.post("/api/v1/auth/forgot-password", json={"email": email})
        assert response.status_code == 202
        return asyncio.get_running_loop().time() - started

    await took(unknown[0])  # warm
    known_times, unknown_times = [], []
    for known_email, unknown_email in zip(known, unknown, strict=True):
        known_times.append(await took(known_email))
        unknown_times.append(await took(unknown_email))

    known_median, unknown_median = (
        sorted(known_times)[tries // 2],
        sorted(unknown_times)[tries // 2],
    )
    assert abs(known_median - unknown_median) <= 0.25 * max(known_median, unknown_median)


def account_suffix() -> str:
    return str(registration()["email"]).split("@")[0]


async def test_verification_required_refuses_unverified_logins_until_verified(
    client: AsyncClient, stack: ServerStack, settings: Callable[..., None]
) -> None:
    body = registration()
    assert (await client.post("/api/v1/users", json=body)).status_code == 201
    settings(EMAIL_VERIFICATION_REQUIRED=True)

    refused = await login(client, body["email"])
    token = token_in(await mail_to(stack.smtp, body["email"], VERIFY), "/verify-email")
    await client.post("/api/v1/auth/verify-email", json={"token": token})
    allowed = await login(client, body["email"])

    assert refused.status_code == 403
    assert refused.json()["error_code"] == "AUTH__EMAIL_NOT_VERIFIED"
    assert allowed.status_code == 200


@pytest.fixture
async def guarded_client() -> AsyncIterator[AsyncClient]:
    """The app plus a route guarded by IsVerified, as a project route would be."""
    from app.server import create_app

    app: FastAPI = create_app()

    @app.get(
        "/test-only/verified",
        dependencies=[Depends(PermissionDependency([IsAuthenticated, IsVerified]))],
    )
    async def verified_only() -> dict[str, bool]:
        return {"ok": True}

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


async def test_is_verified_guards_routes(
    client: AsyncClient, guarded_client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)

    anonymous = await guarded_client.get("/test-only/verified")
    unverified = await guarded_client.get("/test-only/verified", headers=account.headers)
    await verified(client, stack, account)
    allowed = await guarded_client.get("/test-only/verified", headers=account.headers)

    assert anonymous.status_code == 401
    assert unverified.status_code == 403
    assert unverified.json()["error_code"] == "AUTH__EMAIL_NOT_VERIFIED"
    assert allowed.status_code == 200


async def test_an_email_change_applies_only_once_confirmed_from_the_new_address(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    new_email = registration()["email"]
    path = f"/api/v1/users/{account.id}"

    without_password = await client.patch(path, json={"email": new_email}, headers=account.headers)
    asked = await client.patch(
        path, json={"email": new_email, "current_password": PASSWORD}, headers=account.headers
    )
    confirmation = await mail_to(stack.smtp, new_email, CONFIRM_CHANGE)
    notice = await mail_to(stack.smtp, account.email, CHANGE_NOTICE)
    before = await client.get("/api/v1/users/me", headers=account.headers)
    token = token_in(confirmation, "/confirm-email-change")
    confirmed = await client.post("/api/v1/auth/confirm-email-change", json={"token": token})

    assert without_password.status_code == 422
    assert without_password.json()["errors"][0]["loc"] == ["body", "current_password"]
    assert asked.status_code == 200
    assert asked.json()["email"] == account.email
    assert before.json()["email"] == account.email
    assert new_email in text_of(notice)
    assert confirmed.status_code == 200
    assert confirmed.json()["email"] == new_email
    completed = await mail_to(stack.smtp, account.email, CHANGE_NOTICE, count=2)
    assert "completed" in text_of(completed)
    assert (await login(client, new_email)).status_code == 200
    assert (await login(client, account.email)).status_code == 401


async def test_of_two_email_changes_at_once_only_the_later_link_works(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    first, second = registration()["email"], registration()["email"]
    second_done = asyncio.Event()

    @Transactional()
    async def first_change() -> None:
        await account_service.request_email_change(account.id, first)
        # Uncommitted while the second request runs, or until it has waited a second.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(second_done.wait(), 1)

    async def second_change() -> None:
        async with session_scope():
            await account_service.request_email_change(account.id, second)
        second_done.set()

    async with session_scope():
        await asyncio.gather(first_change(), second_change())
    links = [
        token_in(await mail_to(stack.smtp, email, CONFIRM_CHANGE), "/confirm-email-change")
        for email in (first, second)
    ]
    confirm = "/api/v1/auth/confirm-email-change"
    earlier = await client.post(confirm, json={"token": links[0]})
    later = await client.post(confirm, json={"token": links[1]})

    assert earlier.status_code == 400
    assert later.status_code == 200
    assert later.json()["email"] == second


async def test_a_password_reset_ends_a_pending_email_change(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    new_email = registration()["email"]
    asked = await client.patch(
        f"/api/v1/users/{account.id}",
        json={"email": new_email, "current_password": PASSWORD},
        headers=account.headers,
    )
    change = token_in(await mail_to(stack.smtp, new_email, CONFIRM_CHANGE), "/confirm-email-change")
    await client.post("/api/v1/auth/forgot-password", json={"email": account.email})
    reset_token = token_in(await mail_to(stack.smtp, account.email, RESET), "/reset-password")
    reset = await client.post(
        "/api/v1/auth/reset-password", json={"token": reset_token, "password": NEW_PASSWORD}
    )

    # Whoever asked for the change before the owner took the account back gets nothing.
    confirmed = await client.post("/api/v1/auth/confirm-email-change", json={"token": change})

    assert asked.status_code == 200
    assert reset.status_code == 204
    assert confirmed.status_code == 400
    assert confirmed.json()["error_code"] == "AUTH__INVALID_EMAIL_TOKEN"
    assert (await login(client, account.email, NEW_PASSWORD)).status_code == 200


async def test_an_email_change_ends_reset_links_sent_to_the_old_address(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    await client.post("/api/v1/auth/forgot-password", json={"email": account.email})
    old_link = token_in(await mail_to(stack.smtp, account.email, RESET), "/reset-password")
    new_email = registration()["email"]
    await client.patch(
        f"/api/v1/users/{account.id}",
        json={"email": new_email, "current_password": PASSWORD},
        headers=account.headers,
    )
    change = token_in(await mail_to(stack.smtp, new_email, CONFIRM_CHANGE), "/confirm-email-change")
    confirmed = await client.post("/api/v1/auth/confirm-email-change", json={"token": change})

    reset = await client.post(
        "/api/v1/auth/reset-password", json={"token": old_link, "password": NEW_PASSWORD}
    )

    assert confirmed.status_code == 200
    assert reset.status_code == 400
    assert (await login(client, new_email)).status_code == 200


async def test_an_email_change_to_a_taken_address_is_409(client: AsyncClient) -> None:
    account, other = await signed_up(client), await signed_up(client)

    response = await client.patch(
        f"/api/v1/users/{account.id}",
        json={"email": other.email.upper(), "current_password": PASSWORD, "nickname": "Changed"},
        headers=account.headers,
    )

    assert response.status_code == 409
    assert response.json()["error_code"] == "USER__DUPLICATE_EMAIL"
    me = await client.get("/api/v1/users/me", headers=account.headers)
    assert me.json()["nickname"] == "Ann"


async def test_delete_me_needs_the_password_and_ends_the_account(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)

    wrong = await client.request(
        "DELETE", "/api/v1/users/me", json={"password": "not it at all"}, headers=account.headers
    )
    deleted = await client.request(
        "DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=account.headers
    )

    assert wrong.status_code == 403
    assert deleted.status_code == 204
    assert (await client.get("/api/v1/users/me", headers=account.headers)).status_code == 401
    row = stack.primary.psql(f"SELECT deleted_at IS NOT NULL FROM users WHERE id = {account.id}")
    assert row == "t"
