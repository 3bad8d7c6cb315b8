"""Login throttling: failures counted per account, and (more loosely) per client address.

Attempts on a locked account are refused without counting against the address, so one
attacker hammering one account locks that account only, not everyone behind the same address.
Without a cache the throttle is off (it fails open) and says so in the log.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time

from app.auth.exceptions import TooManyLoginAttemptsException
from core.helpers.cache import Cache, CacheUnavailableError

logger = logging.getLogger(__name__)


class LoginThrottle:
    def __init__(
        self, *, account_limit: int = 5, address_limit: int = 50, window_seconds: int = 900
    ) -> None:
        self.account_limit = account_limit
        self.address_limit = address_limit
        self.window_seconds = window_seconds

    @staticmethod
    def _account(email: str) -> str:
        # Hashed: addresses of people have no business sitting in the cache in clear.
        return hashlib.sha256(email.lower().encode()).hexdigest()[:32]

    def _keys(self, kind: str, email: str, address: str) -> tuple[str, str]:
        return f"login:{kind}:account:{self._account(email)}", f"login:{kind}:address:{address}"

    async def check(self, email: str, address: str) -> None:
        """Raise 429 with Retry-After while the account or the address is locked."""
        try:
            locks = await Cache.backend.get_many(self._keys("lock", email, address))
        except CacheUnavailableError:
            logger.warning("login throttling is off: the cache is unavailable")
            return
        unlock_times = [float(lock) for lock in locks if lock is not None]
        if unlock_times:
            retry_after = int(max(unlock_times) - time.time()) + 1
            raise TooManyLoginAttemptsException(retry_after=retry_after)

    async def record_failure(self, email: str, address: str) -> None:
        limits = (self.account_limit, self.address_limit)
        failures = self._keys("failures", email, address)
        locks = self._keys("lock", email, address)
        try:
            for failure_key, lock_key, limit in zip(failures, locks, limits, strict=True):
                if await Cache.backend.incr(failure_key, self.window_seconds) >= limit:
                    unlock_at = str(time.time() + self.window_seconds).encode()
                    await Cache.backend.set(lock_key, unlock_at, self.window_seconds)
        except CacheUnavailableError:
            logger.warning("login throttling is off: the cache is unavailable")

    async def record_success(self, email: str) -> None:
        account_failures, _ = self._keys("failures", email, "")
        with contextlib.suppress(CacheUnavailableError):
            await Cache.backend.delete(account_failures)


login_throttle = LoginThrottle()
