from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from celery_task import celery_app

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """A real `celery worker` process, as `make worker` starts it, logging to a file."""

    def __init__(self, queues: str, log_file: Path) -> None:
        self.name = f"{queues.replace(',', '-')}-{os.getpid()}@test"
        self.log_file = log_file
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "celery_task:celery_app",
                "worker",
                f"--queues={queues}",
                "--concurrency=1",
                "--pool=prefork",
                f"--hostname={self.name}",
                "--include=tests.worker_tasks",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=log_file.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log()}")
            if celery_app.control.ping(destination=[self.name], timeout=0.5):
                return
        raise RuntimeError(f"worker did not answer within 60 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[str], Worker]]:
    workers: list[Worker] = []

    def start(queues: str) -> Worker:
        worker = Worker(queues, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker on every queue, shared by a module's tests."""
    started = Worker("default,user", tmp_path_factory.mktemp("worker") / "worker.log")
    yield started
    started.stop()
