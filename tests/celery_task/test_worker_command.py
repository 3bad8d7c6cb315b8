"""`make worker` exactly: the `celery` console script, no `-Q`, from any working directory."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from celery_task import celery_app
from tests.celery_task.conftest import ROOT, Worker

RESULT_TIMEOUT = 60


def modules_with_tasks() -> dict[str, str]:
    """`app.<module>.tasks` -> its queue, for every app/<module>/tasks.py on disk."""
    return {
        f"app.{path.parent.name}.tasks": path.parent.name for path in ROOT.glob("app/*/tasks.py")
    }


def test_a_worker_started_like_make_worker_registers_every_task_and_serves_every_queue(
    tmp_path: Path,
) -> None:
    modules = modules_with_tasks()
    for module in modules:
        importlib.import_module(module)
    expected = {name for name, task in celery_app.tasks.items() if task.__module__ in modules}
    assert "user.send_verification_email" in expected
    # Away from the project and without PYTHONPATH: only the installed project can be found.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    worker = Worker(tmp_path / "worker.log", cwd=tmp_path, test_tasks=False, env=env)
    try:
        inspect = celery_app.control.inspect([worker.name], timeout=10)
        registered = set((inspect.registered() or {}).get(worker.name, []))
        queues = {queue["name"] for queue in (inspect.active_queues() or {}).get(worker.name, [])}
        from app.user.tasks import send_verification_email

        # No user 0: the task runs on queue `user` and says so.
        outcome = send_verification_email.delay(0).get(timeout=RESULT_TIMEOUT)
    finally:
        worker.stop()

    assert expected <= registered, worker.log()
    assert queues == {"default", *modules.values()}
    assert outcome == {"user_id": 0, "status": "skipped"}
