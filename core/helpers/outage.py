"""How long a failed dependency is skipped: one rule for Redis, the replica and the writer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Outage:
    """Remembers a dependency's failure for `seconds`: meanwhile callers skip it at once
    instead of each waiting out the failure again. When the time is up, one caller at a time
    tries it (`trying`) until one gets through: a dependency still hung costs one caller its
    timeout, not every caller in flight."""

    __slots__ = ("_probing", "_until", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._until = 0.0  # 0: no failure since the last use that got through
        self._probing = False

    @property
    def ongoing(self) -> bool:
        """Skip the dependency now: it failed lately, or another caller is trying it again."""
        return self._probing or time.monotonic() < self._until

    def begin(self) -> None:
        self._until = time.monotonic() + self.seconds

    @contextmanager
    def trying(self) -> Iterator[None]:
        """Around one use of the dependency: after a failure, the others skip it meanwhile;
        leaving without an error ends the outage."""
        probe = self._until > 0 and not self._probing
        if probe:
            self._probing = True
        try:
            yield
            self._until = 0.0
        finally:
            if probe:
                self._probing = False
