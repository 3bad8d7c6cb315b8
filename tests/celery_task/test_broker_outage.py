"""Redis, the broker and result backend, stopped or hung: requests that need it answer in time
(503 where they cannot do without it), and the server goes on answering everything else."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from anyio import to_thread
from httpx import AsyncClient

from core.helpers.outage import Outage
from tests.celery_task.conftest import answered_while_health_is_polled
from tests.helpers import registration, signed_up
from tests.servers import ServerStack

# Redis comes back by itself after this long, so a test whose event loop blocks on the outage
# fails on its assertions instead of hanging the suite.
BACK_AFTER_SECONDS = 10


class RedisOutage:
    """Stops or freezes the test Redis on `begin()`; it is back, and in use, when the test ends."""

    def __init__(self, stack: ServerStack, kind: str) -> None:
        self.redis = stack.redis
        self.kind = kind
        self.timer: threading.Timer | None = None

    def begin(self) -> None:
        if self.kind == "stopped":
            self.redis.stop()
        else:
            self.redis.freeze()
        self.timer = threading.Timer(BACK_AFTER_SECONDS, self.restore)
        self.timer.start()

    def restore(self) -> None:
        # Both are no-ops on a Redis that is back already.
        if self.kind == "stopped":
            self.redis.start()
        else:
            self.redis.thaw()

    async def end(self, client: AsyncClient) -> None:
        if self.timer is None:
            return
        self.timer.cancel()
        await to_thread.run_sync(self.timer.join)
        self.restore()
        # The app's own connections may still hold the outage; the next test starts once they
        # serve again.
        deadline = time.monotonic() + 30
        while True:
            checks = (await client.get("/ready")).json()["checks"]
            if checks["cache"] == checks["broker"] == "ok" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)


@pytest.fixture(params=["stopped", "frozen"])
async def redis_outage(
    request: pytest.FixtureRequest, stack: ServerStack, client: AsyncClient
) -> AsyncIterator[RedisOutage]:
    outage = RedisOutage(stack, request.param)
    try:
        yield outage
    finally:
        await outage.end(client)


def assert_broker_unavailable(response_json: dict[str, object], status_code: int) -> None:
    assert status_code == 503, response_json
    assert response_json["error_code"] == "BROKER_UNAVAILABLE"


async def test_a_task_sent_by_a_request_while_redis_is_out_gets_503_in_time(
    nap_client: AsyncClient, redis_outage: RedisOutage
) -> None:
    redis_outage.begin()
    response, _ = await answered_while_health_is_polled(
        nap_client, nap_client.post("/test-only/nap", params={"seconds": 0})
    )

    assert_broker_unavailable(response.json(), response.status_code)


async def test_while_a_hung_broker_is_out_sends_are_refused_without_waiting_on_it(
    nap_client: AsyncClient,
    stack: ServerStack,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A window long enough for the sends below, however slow the machine; undone before the
    # outage ends, so the broker is tried again as usual.
    monkeypatch.setattr("celery_task.application.broker_outage", Outage(60.0))
    caplog.set_level(logging.WARNING, logger="celery_task.application")
    outage = RedisOutage(stack, "frozen")
    outage.begin()
    try:
        responses = [await nap_client.post("/test-only/nap", params={"seconds": 0}) for _ in "abc"]
    finally:
        monkeypatch.undo()
        await outage.end(nap_client)

    for response in responses:
        assert_broker_unavailable(response.json(), response.status_code)
    # Only the first send waited out the timeout; the others were refused at once.
    assert caplog.text.count("out of reach") == 1


async def test_resending_the_verification_mail_while_redis_is_out_gets_503_in_time(
    client: AsyncClient, stack: ServerStack, redis_outage: RedisOutage
) -> None:
    admin = await signed_up(client, stack, admin=True)
    redis_outage.begin()

    response, _ = await answered_while_health_is_polled(
        client, client.post(f"/api/v1/users/{admin.id}/verification-email", headers=admin.headers)
    )

    assert_broker_unavailable(response.json(), response.status_code)


async def test_a_registration_while_redis_is_out_is_saved_and_answered_in_time(
    client: AsyncClient, stack: ServerStack, redis_outage: RedisOutage
) -> None:
    body = registration()
    redis_outage.begin()

    response, _ = await answered_while_health_is_polled(
        client, client.post("/api/v1/users", json=body)
    )

    # The verification mail cannot be queued, and the cache may say that other servers have not
    # heard of the change; the account is saved all the same.
    assert response.status_code in {201, 503}, response.text
    if response.status_code == 503:
        assert response.json()["error_code"] == "CHANGE_NOT_PROPAGATED"
    email = body["email"]
    assert stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{email}'") == "1"


async def test_a_task_status_read_while_redis_is_out_gets_503_in_time(
    client: AsyncClient, stack: ServerStack, redis_outage: RedisOutage
) -> None:
    # An admin may read any task id, so the broker is asked.
    user = await signed_up(client, stack, admin=True)
    redis_outage.begin()

    response, _ = await answered_while_health_is_polled(
        client, client.get(f"/api/v1/tasks/{uuid.uuid4()}", headers=user.headers)
    )

    assert_broker_unavailable(response.json(), response.status_code)


async def test_a_verification_link_the_worker_could_not_queue_is_left_to_the_catch_up(
    client: AsyncClient, stack: ServerStack
) -> None:
    from app.user.email_tokens import EmailTokenRepository
    from app.user.tasks import send_verification_email
    from celery_task import BrokerUnavailableException
    from core.db import session_scope
    from core.db.base import utcnow

    created = await client.post("/api/v1/users", json=registration())
    user_id = created.json()["id"]
    outage = RedisOutage(stack, "stopped")
    outage.begin()
    try:
        # The task's own body, as a worker runs it, with the broker gone after it was received.
        with pytest.raises(BrokerUnavailableException):
            await to_thread.run_sync(send_verification_email.run, user_id)
    finally:
        await outage.end(client)

    # Its token was issued and committed, then withdrawn: the account is "never mailed" again.
    tokens = stack.primary.psql(f"SELECT count(*) FROM email_tokens WHERE user_id = {user_id}")
    assert tokens == "0"
    async with session_scope():
        missed = await EmailTokenRepository().never_verified_nor_mailed(
            utcnow() - timedelta(days=1), utcnow() + timedelta(minutes=1)
        )
    assert user_id in missed
