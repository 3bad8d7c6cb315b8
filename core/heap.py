"""Garbage-collector settings for long-running processes (API servers, Celery workers)."""

from __future__ import annotations

import gc

# CPython starts a young-generation collection every 700 net allocations of container objects.
# A busy server has many requests in flight, and each of those collections walks all of their
# objects again: under load that took about a tenth of an API process's CPU. Collecting every
# 20,000 allocations costs a few megabytes at most and leaves the other generations' rhythm.
YOUNG_COLLECTION_THRESHOLD = 20_000


def settle_heap() -> None:
    """Call once a process is ready to serve.

    What exists by then (modules, routes, models, settings) lives as long as the process:
    frozen, it is no longer walked by every full collection, and a forked worker no longer
    copies the pages it shares with its parent by touching them.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)
