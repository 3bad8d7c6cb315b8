"""How long a failed dependency is skipped: one rule for Redis, the replica and the writer."""

from __future__ import annotations

import time


class Outage:
    """Remembers a dependency's failure for `seconds`: meanwhile callers skip it at once
    instead of each waiting out the failure again."""

    __slots__ = ("_until", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._until = 0.0

    @property
    def ongoing(self) -> bool:
        return time.monotonic() < self._until

    def begin(self) -> None:
        self._until = time.monotonic() + self.seconds
