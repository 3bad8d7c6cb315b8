"""Login throttling: attempts counted per account, failures (more loosely) per client address.

An attempt on an account is reserved before the password is checked, atomically, so parallel
guesses cannot slip past the limit while the slow hash runs. Attempts on a locked account are
refused without counting against the address, so one attacker hammering one account locks
that account only, not everyone behind the same address. A successful login clears its
account's count. Without a cache the throttle is off (it fails open) and says so in the log.
"""

from __future__ import annotations

import hashlib
import logging
import time

from app.auth.exceptions import TooManyLoginAttemptsException
from core.helpers.cache import Cache

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

    async def reserve_attempt(self, email: str, address: str) -> None:
        """Count this attempt; raise 429 with Retry-After if the account or address is locked."""
        account_lock, address_lock = self._keys("lock", email, address)
        account_attempts, _ = self._keys("attempts", email, address)
        try:
            locks = await Cache.backend.get_many([account_lock, address_lock])
            self._refuse_if_locked(locks)
            if await Cache.backend.incr(account_attempts, self.window_seconds) > self.account_limit:
                await self._lock(account_lock)
                raise TooManyLoginAttemptsException(retry_after=self.window_seconds)
        except TooManyLoginAttemptsException:
            raise
        except Exception as error:
            logger.warning("login throttling is off: the cache is unavailable (%r)", error)

    async def record_failure(self, email: str, address: str) -> None:
        _, address_failures = self._keys("failures", email, address)
        _, address_lock = self._keys("lock", email, address)
        try:
            if (
                await Cache.backend.incr(address_failures, self.window_seconds)
                >= self.address_limit
            ):
                await self._lock(address_lock)
        except Exception as error:
            logger.warning("login throttling is off: the cache is unavailable (%r)", error)

    async def record_success(self, email: str) -> None:
        account_attempts, _ = self._keys("attempts", email, "")
        try:
            await Cache.backend.delete(account_attempts)
        except Exception as error:
            logger.warning("could not reset login attempts (%r)", error)

    async def _lock(self, key: str) -> None:
        unlock_at = str(time.time() + self.window_seconds).encode()
        await Cache.backend.set(key, unlock_at, self.window_seconds)

    @staticmethod
    def _refuse_if_locked(locks: list[bytes | None]) -> None:
        unlock_times = [float(lock) for lock in locks if lock is not None]
        if unlock_times:
            retry_after = int(max(unlock_times) - time.time()) + 1
            raise TooManyLoginAttemptsException(retry_after=retry_after)


login_throttle = LoginThrottle()
