"""`make beat`: the scheduler starts for the project's Celery app and keeps running."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.celery_task.conftest import ROOT
from tests.servers import CeleryProcess, beat_command


def test_beat_starts_as_make_beat_starts_it(tmp_path: Path) -> None:
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
