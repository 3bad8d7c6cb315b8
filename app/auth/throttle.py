"""Login throttling: attempts counted per account, failures (more loosely) per client address.

An attempt on an account is reserved before the password is checked, atomically, so parallel
guesses cannot slip past the limit while the slow hash runs. Attempts on a locked account are
refused without counting against the address, so one attacker hammering one account locks
that account only, not everyone behind the same address. A successful login clears its
account's count. While the cache cannot be reached, each process counts on its own (the log
says so once): the limits hold per process, never off.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.auth.exceptions import TooManyLoginAttemptsException
from core.helpers.cache import BaseBackend, Cache, CacheUnavailableError, InMemoryBackend
from core.helpers.cache.base import bounded

logger = logging.getLogger(__name__)

T = TypeVar("T")


class LoginThrottle:
    def __init__(
        self, *, account_limit: int = 5, address_limit: int = 50, window_seconds: int = 900
    ) -> None:
        self.account_limit = account_limit
        self.address_limit = address_limit
        self.window_seconds = window_seconds
        # Where attempts are counted while the shared cache cannot be reached.
        self._local = InMemoryBackend()
        self._counting_locally = False

    async def _count(self, operation: Callable[[BaseBackend], Awaitable[T]]) -> T:
        """Run `operation` on the shared cache, or on this process's store when it is down."""
        try:
            result = await bounded(lambda: operation(Cache.backend))
        except CacheUnavailableError as error:
            if not self._counting_locally:
                logger.warning("login throttling counts per process: the cache is down (%s)", error)
                self._counting_locally = True
            return await operation(self._local)
        self._counting_locally = False
        return result

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
        self._refuse_if_locked(
            await self._count(lambda b: b.get_many([account_lock, address_lock]))
        )
        attempts = await self._count(lambda b: b.incr(account_attempts, self.window_seconds))
        if attempts > self.account_limit:
            await self._lock(account_lock)
            raise TooManyLoginAttemptsException(retry_after=self.window_seconds)

    async def record_failure(self, email: str, address: str) -> None:
        _, address_failures = self._keys("failures", email, address)
        _, address_lock = self._keys("lock", email, address)
        failures = await self._count(lambda b: b.incr(address_failures, self.window_seconds))
        if failures >= self.address_limit:
            await self._lock(address_lock)

    async def record_success(self, email: str) -> None:
        account_attempts, _ = self._keys("attempts", email, "")
        await self._count(lambda b: b.delete(account_attempts))

    async def reserve(self, action: str, email: str, address: str) -> None:
        """Count one `action` ("register", "forgot_password", ...) for the account and for the
        address; past either limit within the window, 429 with Retry-After."""
        account_key = f"{action}:account:{self._account(email)}"
        address_key = f"{action}:address:{address}"
        on_account = await self._count(lambda b: b.incr(account_key, self.window_seconds))
        on_address = await self._count(lambda b: b.incr(address_key, self.window_seconds))
        if on_account > self.account_limit or on_address > self.address_limit:
            raise TooManyLoginAttemptsException(
                "Too many requests of this kind; wait before trying again.",
                retry_after=self.window_seconds,
            )

    async def _lock(self, key: str) -> None:
        unlock_at = str(time.time() + self.window_seconds).encode()
        await self._count(lambda b: b.set(key, unlock_at, self.window_seconds))

    @staticmethod
    def _refuse_if_locked(locks: list[bytes | None]) -> None:
        unlock_times = [float(lock) for lock in locks if lock is not None]
        if unlock_times:
            retry_after = int(max(unlock_times) - time.time()) + 1
            raise TooManyLoginAttemptsException(retry_after=retry_after)


login_throttle = LoginThrottle()
