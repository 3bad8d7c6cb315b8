"""`make beat`: the scheduler starts for the project's Celery app, keeps running, and schedules
the periodic tasks the app modules declare."""

from __future__ import annotations

import os
import shelve
import time
from datetime import timedelta
from pathlib import Path

from tests.celery_task.conftest import ROOT
from tests.servers import CeleryProcess, beat_command


def test_beat_starts_as_make_beat_starts_it_with_the_periodic_tasks(tmp_path: Path) -> None:
    # Imported here: importing a task module reads the Celery settings, which the test sets.
    from app.post.tasks import CATCH_UP_SECONDS
    from app.user import tasks as user_tasks

    # As compose runs it: the schedule file outside the source tree.
    schedule = tmp_path / "celerybeat-schedule"
    beat = CeleryProcess(
        [*beat_command(), f"--schedule={schedule}"], tmp_path / "beat.log", ROOT, os.environ.copy()
    )
    try:
        deadline = time.monotonic() + 60
        while "beat: Starting..." not in beat.log() and time.monotonic() < deadline:
            assert beat.is_running(), beat.log()
            time.sleep(0.2)
        time.sleep(1)
        assert beat.is_running(), beat.log()
    finally:
        beat.stop()

    assert "beat: Starting..." in beat.log()
    assert "Traceback" not in beat.log()

    # What beat itself scheduled, as it saved it: the modules' catch-ups, on their intervals.
    with shelve.open(str(schedule)) as saved:
        entries = saved["entries"]
    catch_up = entries["post.delete_posts_of_deleted_users"]
    assert catch_up.task == "post.delete_posts_of_deleted_users"
    assert catch_up.schedule.run_every == timedelta(seconds=CATCH_UP_SECONDS)
    missed_mails = entries[user_tasks.CATCH_UP_TASK]
    assert missed_mails.task == user_tasks.CATCH_UP_TASK
    assert missed_mails.schedule.run_every == timedelta(seconds=user_tasks.CATCH_UP_SECONDS)
