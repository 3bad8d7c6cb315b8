"""Celery tasks per second through one worker process, for one tree of the project.

Run by path under the tree's settings (environment), the tree first on PYTHONPATH and -P:

    python -P bench/celery_round_trip.py --core C --rounds R --tasks N --users U --out F

Starts a worker on core C with the tree's own bench.tasks, then, R times, enqueues N tasks of
each kind (an async task and a sync one doing the same DB read), waits for every result and
writes the rates to F as JSON: {"async": [...], "sync": [...]}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from core.config import load_config

WORKER = "bench@localhost"


def measure(tasks: dict[str, Any], rounds: int, count: int, users: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {kind: [] for kind in tasks}
    for task in tasks.values():  # warm-up
        for outcome in [task.delay(n + 1) for n in range(100)]:
            outcome.get(timeout=60)
    for _ in range(rounds):
        for kind, task in tasks.items():
            started = time.perf_counter()
            outcomes = [task.delay(n % users + 1) for n in range(count)]
            for outcome in outcomes:
                outcome.get(timeout=120)
            rates[kind].append(count / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--core", required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    load_config()
    import bench.tasks as bench_tasks
    from celery_task import celery_app

    worker = subprocess.Popen(
        [
            *("taskset", "-c", args.core, sys.executable, "-P", "-m", "celery"),
            *("-A", "celery_task:celery_app", "worker", "--concurrency=1", "--pool=prefork"),
            *("--queues=default", "--include=bench.tasks", "--without-gossip"),
            *("--without-mingle", "--loglevel=WARNING", f"--hostname={WORKER}"),
        ]
    )
    try:
        deadline = time.monotonic() + 60
        while not celery_app.control.ping(destination=[WORKER], timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bench worker did not start")
        tasks = {"async": bench_tasks.read_user_async, "sync": bench_tasks.read_user_sync}
        args.out.write_text(json.dumps(measure(tasks, args.rounds, args.tasks, args.users)))
    finally:
        worker.terminate()
        worker.wait(timeout=60)


if __name__ == "__main__":
    main()
