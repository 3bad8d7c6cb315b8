from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from redis.exceptions import ConnectionError as RedisConnectionError

from celery_task import celery_app
from celery_task.application import SEND_TIMEOUT_SECONDS
from tests import worker_tasks
from tests.servers import CeleryProcess, worker_command

ROOT = Path(__file__).resolve().parents[2]

# Beyond `make worker`: a name to find the worker by, one pool process, no chatter with the
# other workers of the suite.
TEST_WORKER_OPTIONS = ["--concurrency=1", "--pool=prefork", "--without-gossip", "--without-mingle"]
_worker_numbers = itertools.count(1)

# A /health answered while a send waits on an unreachable broker waits this long at most when
# the event loop goes on serving; one that waited for the broker takes the whole send timeout.
HEALTH_ANSWERED_WITHIN = SEND_TIMEOUT_SECONDS / 2
# Generous: a send that fails answers instead of hanging.
ANSWERED_WITHIN = 3 * SEND_TIMEOUT_SECONDS


class Worker:
    """A real worker process started as `make worker [Q=...]` does, logging to a file."""

    def __init__(
        self,
        log_file: Path,
        queues: str | None = None,
        *,
        cwd: Path = ROOT,
        test_tasks: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        label = (queues or "all").replace(",", "-")
        self.name = f"{label}-{next(_worker_numbers)}-{os.getpid()}@test"
        options = [f"--hostname={self.name}", *TEST_WORKER_OPTIONS]
        env = os.environ.copy() if env is None else env
        if test_tasks:
            options.append("--include=tests.worker_tasks")
            # fastapi-event installs a top-level `tests` package into site-packages, which
            # comes before the project on sys.path and hides this suite's `tests`.
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.process = CeleryProcess(worker_command(queues) + options, log_file, cwd, env)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.process.is_running():
                raise RuntimeError(f"worker exited:\n{self.log()}")
            try:
                if celery_app.control.ping(destination=[self.name], timeout=0.5):
                    return
            except RedisConnectionError:
                # A pooled connection from before a test restarted Redis: the next ping reconnects.
                continue
        self.stop()
        raise RuntimeError(f"worker did not answer within 60 s:\n{self.log()}")

    def log(self) -> str:
        return self.process.log()

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[str], Worker]]:
    workers: list[Worker] = []

    def start(queues: str) -> Worker:
        worker = Worker(tmp_path / f"worker-{len(workers)}.log", queues)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker on every queue, shared by a module's tests."""
    started = Worker(tmp_path_factory.mktemp("worker") / "worker.log", "default,user,mail")
    yield started
    started.stop()


@pytest.fixture
def eager() -> Iterator[None]:
    """Tasks run eagerly, as in the embedded default, while the test runs."""
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


@pytest.fixture
async def nap_client() -> AsyncIterator[AsyncClient]:
    """The app plus a route that sends an async task, the way a route of the project would."""
    from app.server import create_app

    app: FastAPI = create_app()

    @app.post("/test-only/nap", status_code=202)
    async def send_a_nap(seconds: float) -> dict[str, str]:
        outcome = await worker_tasks.nap.adelay(seconds)
        return {"task_id": outcome.id}

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


async def answered_while_health_is_polled(
    client: AsyncClient, request: Awaitable[Response]
) -> tuple[Response, int]:
    """`request`'s response, and how many /health requests were answered while it ran.

    /health is asked again and again until `request` is answered, and once more after: no
    answer may come more than HEALTH_ANSWERED_WITHIN seconds after the one before (the event
    loop was never blocked that long), and `request` is answered within ANSWERED_WITHIN.
    """
    sending = asyncio.ensure_future(request)
    deadline = time.monotonic() + ANSWERED_WITHIN
    last_answer = time.monotonic()
    answered = 0
    try:
        while True:
            was_done = sending.done()
            health = await client.get("/health")
            gap, last_answer = time.monotonic() - last_answer, time.monotonic()
            assert health.status_code == 200
            assert gap < HEALTH_ANSWERED_WITHIN, f"no /health answered for {gap:.1f} s"
            if was_done:
                return sending.result(), answered
            answered += 1
            assert last_answer < deadline, f"no answer within {ANSWERED_WITHIN} s"
            await asyncio.sleep(0.02)
    finally:
        sending.cancel()
