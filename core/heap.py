"""Garbage-collector settings for long-running processes (API servers, Celery workers)."""

from __future__ import annotations

import gc

# CPython's default (a young collection every 700 container allocations) re-walks every request
# in flight, a real share of an API process's CPU under load; a higher threshold costs memory.
YOUNG_COLLECTION_THRESHOLD = 20_000


def settle_heap() -> None:
    """Call once ready to serve: freezing what lives as long as the process keeps full collections
    from walking it and forked workers from copying the pages they share with their parent."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)
