"""Celery with a real Redis broker and real worker processes."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pytest
import redis
from anyio import to_thread
from celery.exceptions import SoftTimeLimitExceeded
from celery.result import AsyncResult
from httpx import AsyncClient

from app.role import RoleCreate, role_service
from celery_task import celery_app
from celery_task.queues import queue_for_module, queue_names
from core.db import Transactional, session_scope
from tests import worker_tasks
from tests.celery_task.conftest import (
    HEALTH_ANSWERED_WITHIN,
    ROOT,
    Worker,
    answered_while_health_is_polled,
)
from tests.helpers import registration, signed_up
from tests.servers import ServerStack

RESULT_TIMEOUT = 60


async def result_of(outcome: AsyncResult) -> object:
    return await to_thread.run_sync(lambda: outcome.get(timeout=RESULT_TIMEOUT))


def wait_for_log(worker: Worker, *texts: str) -> str:
    """The first line of the worker's log containing every one of `texts` (waits for it)."""
    deadline = time.monotonic() + RESULT_TIMEOUT
    while time.monotonic() < deadline:
        for line in worker.log().splitlines():
            if all(text in line for text in texts):
                return line
        time.sleep(0.2)
    raise AssertionError(f"{texts!r} not in one line of the worker log:\n{worker.log()[-2000:]}")


async def stays_pending(outcome: AsyncResult, seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await to_thread.run_sync(lambda: outcome.state) != "PENDING":
            return False
        await asyncio.sleep(0.2)
    return True


def test_queues_come_from_the_modules_that_define_tasks() -> None:
    assert queue_names() == ["default", "mail", "post", "user"]
    assert queue_for_module("app.user.tasks") == "user"
    assert queue_for_module("tests.worker_tasks") == "default"
    assert queue_for_module("app.user.service") == "default"


IMPORT_EVERYTHING = """
import importlib
from celery_task import celery_app
from celery_task.queues import task_module_names
import app.server
for module in task_module_names():
    importlib.import_module(module)
print(celery_app.configured)
"""


def test_importing_the_application_leaves_celery_unconfigured() -> None:
    # Celery reads its configuration from the settings on first use; a module that made it do
    # so on import would freeze settings given later (main.py's --env, a test's) out of Celery.
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "False", done.stderr


async def test_a_worker_only_receives_its_own_queue(
    start_worker: Callable[[str], Worker], client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    start_worker("user")
    from app.user.tasks import send_verification_email

    for_user_queue = send_verification_email.delay(account.id)
    for_default_queue = worker_tasks.add.delay(2, 3)

    assert await result_of(for_user_queue) == {"user_id": account.id, "status": "sent"}
    assert await stays_pending(for_default_queue)

    start_worker("default")
    assert await result_of(for_default_queue) == 5


async def test_an_async_task_writes_through_transactional(
    worker: Worker, stack: ServerStack
) -> None:
    name = f"from-task-{uuid.uuid4().hex[:8]}"

    role_id = await result_of(worker_tasks.create_role.delay(name))

    assert stack.primary.psql(f"SELECT id FROM roles WHERE name = '{name}'") == str(role_id)


async def test_a_worker_writes_again_after_the_database_restarted_between_its_tasks(
    worker: Worker, stack: ServerStack
) -> None:
    before = f"before-{uuid.uuid4().hex[:8]}"
    await result_of(worker_tasks.create_role.delay(before))  # a pooled writer connection

    # Between tasks the worker's loop does not run: its pool cannot hear the server go away.
    stack.primary.restart()
    stack.wait_for_replica()
    after = f"after-{uuid.uuid4().hex[:8]}"
    role_id = await result_of(worker_tasks.create_role.delay(after))

    assert stack.primary.psql(f"SELECT id FROM roles WHERE name = '{after}'") == str(role_id)


async def test_two_hundred_async_runs_in_one_worker_process(worker: Worker) -> None:
    outcomes = [worker_tasks.count_roles.delay() for _ in range(200)]

    results = [await result_of(outcome) for outcome in outcomes]

    assert all(isinstance(count, int) for count in results)
    assert "attached to a different loop" not in worker.log()
    assert "Traceback" not in worker.log()


async def test_a_task_past_its_soft_time_limit_stops_and_never_resumes(
    worker: Worker, stack: ServerStack
) -> None:
    counter = f"soft-limit-{uuid.uuid4().hex}"

    cut_short = await worker_tasks.outlive_soft_limit.adelay(counter)
    with pytest.raises(SoftTimeLimitExceeded):
        await result_of(cut_short)
    # The worker's next runs share its event loop: the cut-short coroutine must not go on there.
    assert await result_of(await worker_tasks.nap.adelay(2.0)) == 2.0

    assert redis.Redis.from_url(stack.redis.url_for(0)).get(counter) is None


async def test_a_task_sent_in_a_transaction_is_published_after_the_commit(
    worker: Worker,
) -> None:
    name = f"after-commit-{uuid.uuid4().hex[:8]}"

    @Transactional()
    async def create_and_announce() -> AsyncResult:
        await role_service.create(RoleCreate(name=name))
        # Were this published at once, the worker could look before the row is committed.
        outcome = worker_tasks.find_role.delay(name)
        await asyncio.sleep(1)
        return outcome

    async with session_scope():
        outcome = await create_and_announce()

    assert await result_of(outcome) is not None


async def test_a_task_sent_in_a_rolled_back_transaction_is_never_published(
    worker: Worker,
) -> None:
    sent: list[AsyncResult] = []

    @Transactional()
    async def fail_after_sending() -> None:
        sent.append(worker_tasks.add.delay(1, 1))
        raise RuntimeError("roll back")

    async with session_scope():
        with pytest.raises(RuntimeError):
            await fail_after_sending()

    assert await stays_pending(sent[0])
    # The worker is alive and serving: the same task sent normally runs.
    assert await result_of(worker_tasks.add.delay(1, 1)) == 2


async def test_registration_event_sends_the_verification_mail_with_the_request_id(
    worker: Worker, client: AsyncClient
) -> None:
    body = registration()

    response = await client.post("/api/v1/users", json=body, headers={"X-Request-ID": "reg-42"})

    assert response.status_code == 201
    assert response.headers["x-request-id"] == "reg-42"
    line = await to_thread.run_sync(wait_for_log, worker, f"sent to {body['email']}")
    assert "'verify_email'" in line
    assert "request_id=reg-42" in line


async def test_the_request_id_travels_into_the_task(worker: Worker, client: AsyncClient) -> None:
    from core.logging import request_id_var

    token = request_id_var.set("req-travel-1")
    try:
        outcome = worker_tasks.echo_request_id.delay("marker-1")
    finally:
        request_id_var.reset(token)

    assert await result_of(outcome) == "req-travel-1"
    line = await to_thread.run_sync(wait_for_log, worker, "marker-1")
    assert "request_id=req-travel-1" in line


async def test_task_status_endpoint(
    worker: Worker, client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    user = await signed_up(client)

    queued = await client.post("/api/v1/auth/verify-email/resend", headers=user.headers)
    assert queued.status_code == 202
    task_id = queued.json()["task_id"]
    await result_of(AsyncResult(task_id, app=celery_app))

    expected = {
        "task_id": task_id,
        "state": "SUCCESS",
        "result": {"user_id": user.id, "status": "sent"},
        "error": None,
    }
    # The user who caused the task and admins read it; nobody else learns it exists.
    for reader in (user, admin):
        status = await client.get(f"/api/v1/tasks/{task_id}", headers=reader.headers)
        assert status.status_code == 200
        assert status.json() == expected
    other = await signed_up(client)
    hidden = await client.get(f"/api/v1/tasks/{task_id}", headers=other.headers)
    assert hidden.status_code == 404
    assert hidden.json()["error_code"] == "TASK__NOT_FOUND"
    assert (await client.get(f"/api/v1/tasks/{task_id}")).status_code == 401
    assert (await client.get("/api/v1/tasks/not-a-uuid", headers=user.headers)).status_code == 422
    unknown = await client.get(f"/api/v1/tasks/{uuid.uuid4()}", headers=admin.headers)
    assert unknown.json()["state"] == "PENDING"


async def status_when_done(client: AsyncClient, task_id: str, headers: dict[str, str]) -> str:
    deadline = time.monotonic() + RESULT_TIMEOUT
    while True:
        state = (await client.get(f"/api/v1/tasks/{task_id}", headers=headers)).json()["state"]
        if state in {"SUCCESS", "FAILURE"} or time.monotonic() > deadline:
            return str(state)
        await asyncio.sleep(0.05)


async def test_eager_mode_runs_tasks_in_process_from_requests_and_from_sync_code(
    client: AsyncClient, stack: ServerStack, caplog: pytest.LogCaptureFixture, eager: None
) -> None:
    admin = await signed_up(client, stack, admin=True)
    caplog.set_level(logging.INFO)
    body = registration()

    queued = await client.post(
        f"/api/v1/users/{admin.id}/verification-email", headers=admin.headers
    )
    registered = await client.post("/api/v1/users", json=body)
    # And from plain synchronous code, sync and async tasks alike.
    sync_result = await to_thread.run_sync(lambda: worker_tasks.add.delay(20, 22).get())
    async_result = await to_thread.run_sync(lambda: worker_tasks.count_roles.delay().get())

    assert queued.status_code == 202
    assert await status_when_done(client, queued.json()["task_id"], admin.headers) == "SUCCESS"
    assert registered.status_code == 201
    mail = next(r for r in caplog.records if f"sent to {body['email']}" in r.getMessage())
    # The request's id reaches the task's log lines in eager mode too.
    assert mail.request_id == registered.headers["x-request-id"]  # type: ignore[attr-defined]
    assert sync_result == 42
    assert isinstance(async_result, int)


async def test_an_eager_async_task_sent_by_a_request_does_not_hold_up_the_server(
    client: AsyncClient, nap_client: AsyncClient, eager: None
) -> None:
    user = await signed_up(client)
    # Naps longer than a /health may wait: were the server's loop running it, one would.
    seconds = 2 * HEALTH_ANSWERED_WITHIN

    response, answered = await answered_while_health_is_polled(
        client, nap_client.post("/test-only/nap", params={"seconds": seconds}, headers=user.headers)
    )

    assert response.status_code == 202, response.text
    # Eager: the task has run by the time the request is answered.
    status = await client.get(f"/api/v1/tasks/{response.json()['task_id']}", headers=user.headers)
    assert status.status_code == 200, status.text
    assert status.json()["state"] == "SUCCESS"
    assert status.json()["result"] == seconds
    assert answered > 1


async def test_an_eager_task_can_send_another_task(eager: None) -> None:
    outcome = await asyncio.wait_for(worker_tasks.relay.adelay(0.1), RESULT_TIMEOUT)

    nap_id = outcome.get()
    state = await to_thread.run_sync(lambda: AsyncResult(nap_id, app=celery_app).state)
    assert state == "SUCCESS"


async def test_a_chain_of_eager_tasks_three_deep_finishes_and_leaves_the_next_send_free(
    eager: None,
) -> None:
    outcome = await asyncio.wait_for(worker_tasks.relay_on.adelay(0.1), RESULT_TIMEOUT)
    relay = await to_thread.run_sync(lambda: AsyncResult(outcome.get(), app=celery_app).get())
    state = await to_thread.run_sync(lambda: AsyncResult(relay, app=celery_app).state)
    assert state == "SUCCESS"
    # The eager thread is free again: a send after the chain runs too.
    later = await asyncio.wait_for(worker_tasks.nap.adelay(0.01), RESULT_TIMEOUT)
    assert later.get() == 0.01
