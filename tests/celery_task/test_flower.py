from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.celery_task.conftest import ROOT, Worker
from tests.servers import CeleryProcess, flower_command

AUTH = ("watcher", "flower-secret")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_flower(log: Path, **env: str) -> Iterator[str]:
    """Flower as `make flower` starts it, with `env` on top of this process's; its URL."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    flower = CeleryProcess([*flower_command(), "--port", str(port)], log, ROOT, base | env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert flower.is_running(), flower.log()
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        flower.stop()


@pytest.fixture(scope="module")
def flower(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """With basic auth from FLOWER_BASIC_AUTH."""
    log = tmp_path_factory.mktemp("flower") / "flower.log"
    with running_flower(log, FLOWER_BASIC_AUTH=":".join(AUTH)) as url:
        yield url


def test_without_a_password_flowers_api_stays_closed(tmp_path: Path) -> None:
    # Open, any web page a developer visits could drive it on 127.0.0.1.
    with running_flower(tmp_path / "flower.log") as url:
        assert httpx.get(f"{url}/api/workers", timeout=10).status_code == 401


def test_flower_needs_its_password(flower: str) -> None:
    assert httpx.get(f"{flower}/api/workers", timeout=10).status_code == 401
    wrong = httpx.get(f"{flower}/api/workers", auth=("watcher", "nope"), timeout=10)
    assert wrong.status_code == 401


def test_flower_lists_the_running_worker(flower: str, worker: Worker) -> None:
    deadline = time.monotonic() + 30
    workers: dict[str, object] = {}
    while worker.name not in workers and time.monotonic() < deadline:
        response = httpx.get(
            f"{flower}/api/workers", params={"refresh": "1"}, auth=AUTH, timeout=15
        )
        assert response.status_code == 200
        workers = response.json()
    assert worker.name in workers


def test_flower_serves_its_metrics_for_prometheus(flower: str, worker: Worker) -> None:
    """Flower serves `/metrics` without its password (upstream: mher/flower#1129), so its port
    must stay off public networks; the scrape sends the credentials anyway."""
    deadline = time.monotonic() + 30
    body = ""
    while "flower_worker_online" not in body and time.monotonic() < deadline:
        response = httpx.get(f"{flower}/metrics", auth=AUTH, timeout=15)
        assert response.status_code == 200
        body = response.text
        time.sleep(0.5)
    assert f'flower_worker_online{{worker="{worker.name}"}} 1.0' in body, body[-2000:]
