"""Login throttling on the rate limiter (atomic in Redis; per process while Redis is down).

- Per account **and** address: `pair_limit` attempts without a success in the window, then that
  address waits for that account. Attempts are counted before the password is checked, so
  parallel guesses cannot slip past while the slow hash runs.
- Per address: `address_limit` failures on any accounts in the window, then the address waits.
  Each attempt counts as a failure until it is known to be none, for the same reason.
- Other actions (`reserve("register", ...)`, "forgot_password", ...): `action_limit` per
  account and address, and `address_limit` per address, in the window. Per account from
  anywhere, `may_mail` caps the mail one person gets; past it the request is answered as usual
  but sends nothing: refusing would let anyone lock the owner out of their own recovery.
- Per account: past `account_free_failures` failures from anywhere in the window, an address
  that already failed on the account waits 2, 4, 8 ... seconds (up to `max_delay_seconds`)
  after the account's latest failure before its next attempt.

Failures from other addresses therefore slow an account down but never lock its owner out: an
address without failures on the account is not delayed, and a success clears its counts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerSecond

from app.auth.exceptions import TooManyLoginAttemptsException
from core.helpers.rate_limiter import Hit, caller_address, rate_limiter


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """One password check, counted: what a success or a failure then settles."""

    account: str
    address: str
    pair: Hit
    as_failure: Hit


class LoginThrottle:
    def __init__(
        self,
        *,
        pair_limit: int = 5,
        address_limit: int = 50,
        action_limit: int = 5,
        account_free_failures: int = 10,
        max_delay_seconds: int = 300,
        window_seconds: int = 900,
    ) -> None:
        self.pair = RateLimitItemPerSecond(pair_limit, window_seconds)
        self.address_failures = RateLimitItemPerSecond(address_limit, window_seconds)
        self.action_per_pair = RateLimitItemPerSecond(action_limit, window_seconds)
        self.mail_per_account = RateLimitItemPerSecond(4 * action_limit, window_seconds)
        self.action_per_address = RateLimitItemPerSecond(address_limit, window_seconds)
        # Counted up to where the delay stops growing; more would cost memory for nothing.
        self.account_failures = RateLimitItemPerSecond(
            account_free_failures + max_delay_seconds.bit_length() + 1, window_seconds
        )
        self.account_free_failures = account_free_failures
        self.max_delay_seconds = max_delay_seconds

    @staticmethod
    def _account(email: str) -> str:
        # Hashed: addresses of people have no business sitting in Redis in clear.
        return hashlib.sha256(email.lower().encode()).hexdigest()[:32]

    def _delay(self, failures: int) -> RateLimitItem | None:
        """One attempt per this many seconds, after `failures` on the account; None: no delay."""
        excess = failures - self.account_free_failures
        if excess <= 0:
            return None
        return RateLimitItemPerSecond(1, min(2**excess, self.max_delay_seconds))

    async def reserve_attempt(self, email: str, address: str) -> LoginAttempt:
        """Count this attempt; raise 429 with Retry-After while the address, the pair or the
        account's delay says wait."""
        account, address = self._account(email), caller_address(address)
        blocked = await rate_limiter.peek(self.address_failures, "login-address", address)
        if not blocked.allowed:
            raise TooManyLoginAttemptsException(retry_after=blocked.reset_in)
        tried = await rate_limiter.peek(self.pair, "login-pair", account, address)
        # The first attempt from here since a success is never delayed.
        if tried.remaining < self.pair.amount:
            failures = await rate_limiter.peek(self.account_failures, "login-account", account)
            delay = self._delay(self.account_failures.amount - failures.remaining)
            if delay is not None:
                waited = await rate_limiter.peek(delay, "login-delay", account)
                if not waited.allowed:
                    # Not counted: a client that waits as told must find its attempts left.
                    raise TooManyLoginAttemptsException(retry_after=waited.reset_in)
        pair = await rate_limiter.hit(self.pair, "login-pair", account, address)
        if not pair.allowed:
            raise TooManyLoginAttemptsException(retry_after=pair.reset_in)
        as_failure = await rate_limiter.hit(self.address_failures, "login-address", address)
        if not as_failure.allowed:
            # Lost a race with parallel attempts: this one was never made.
            await rate_limiter.take_back(self.pair, pair)
            raise TooManyLoginAttemptsException(retry_after=as_failure.reset_in)
        return LoginAttempt(account, address, pair, as_failure)

    async def withdraw(self, attempt: LoginAttempt) -> None:
        """The check could not be made (a dependency failed): the attempt does not count."""
        await rate_limiter.take_back(self.pair, attempt.pair)
        await rate_limiter.take_back(self.address_failures, attempt.as_failure)

    async def reserve(self, action: str, email: str, address: str) -> None:
        """Count one `action` ("register", "forgot_password", ...) for the account from this
        address and for the address; past either limit within the window, 429 with Retry-After."""
        address = caller_address(address)
        hits = [
            await rate_limiter.hit(self.action_per_pair, action, self._account(email), address),
            await rate_limiter.hit(self.action_per_address, action, address),
        ]
        if refused := [hit for hit in hits if not hit.allowed]:
            raise TooManyLoginAttemptsException(
                "Too many requests of this kind; wait before trying again.",
                retry_after=max(hit.reset_in for hit in refused),
            )

    async def may_mail(self, action: str, email: str) -> bool:
        """Count one mail of `action` to the account, from anywhere; False past the cap."""
        return (
            await rate_limiter.hit(self.mail_per_account, f"{action}-mail", self._account(email))
        ).allowed

    async def record_failure(self, attempt: LoginAttempt) -> None:
        failures = await rate_limiter.hit(self.account_failures, "login-account", attempt.account)
        delay = self._delay(self.account_failures.amount - failures.remaining)
        if delay is not None:
            await rate_limiter.hit(delay, "login-delay", attempt.account)

    async def record_success(self, attempt: LoginAttempt) -> None:
        await rate_limiter.take_back(self.address_failures, attempt.as_failure)
        await rate_limiter.clear(self.account_failures, "login-account", attempt.account)
        await rate_limiter.clear(self.pair, "login-pair", attempt.account, attempt.address)


login_throttle = LoginThrottle()
