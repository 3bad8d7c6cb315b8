"""acks_late + reject_on_worker_lost: a task whose worker process dies runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable

import redis

from core.config import config
from tests import worker_tasks
from tests.celery_task.conftest import Worker


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def pool_processes(worker: Worker) -> list[int]:
    children = subprocess.run(
        ["pgrep", "-P", str(worker.process.pid)], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in children.stdout.split()]


def test_a_task_whose_worker_process_is_killed_runs_again(
    start_worker: Callable[[str], Worker],
) -> None:
    worker = start_worker("default")
    counter_key = f"attempts:{uuid.uuid4().hex}"
    assert config.REDIS_URL is not None
    counter = redis.Redis.from_url(config.REDIS_URL)

    outcome = worker_tasks.survive_worker_loss.delay(counter_key)
    wait_for(lambda: counter.get(counter_key) == b"1")
    (child,) = pool_processes(worker)
    os.kill(child, signal.SIGKILL)  # the process running the task dies mid-run

    assert outcome.get(timeout=60) == 2
    assert "WorkerLostError" in worker.log()
    counter.close()
