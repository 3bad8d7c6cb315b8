"""The user's auth state, checked against every valid token and cached: a commit that changes it
removes it, and each commit made for the user holds it (Cache.hold), so their next requests read
from the writer: read-your-writes across processes with nothing but the cache's hold rule."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.fastapi.schemas.current_user import TierLimits
from core.helpers.cache import Cache, Fetched

# Bounds how long a change goes unseen when its removal could not reach the cache (it got a 503).
AUTH_STATE_TTL_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class AuthState:
    active: bool
    token_version: int = 0
    is_admin: bool = False
    is_verified: bool = False
    permissions: frozenset[str] = frozenset()
    # Logged-out sessions whose access tokens may not have expired yet.
    revoked_sessions: frozenset[str] = frozenset()
    # The rate-limit tier's name (None: DEFAULT_TIER) and its limits.
    tier: str | None = None
    rate_limits: TierLimits = ()
    # False when the writer was unreachable and the state was read on a replica.
    from_writer: bool = True


INACTIVE = AuthState(active=False)
LoadAuthState = Callable[[int], Awaitable[AuthState | None]]
LoadTierLimits = Callable[[str], Awaitable[TierLimits]]


@dataclass(slots=True)
class Queries:
    """The application's queries that core calls, set at startup: core knows no tables."""

    # A user's auth state (None: no such user); set by AuthenticationMiddleware.
    auth_state: LoadAuthState | None = None
    # A tier's limits, which RateLimit asks for anonymous callers (a user's come with their state).
    tier_limits: LoadTierLimits | None = None


queries = Queries()


# One read on a replica (the writer was down) is not kept: it may predate a logout, and the
# writer decides again as soon as it is back.
@Cache.cached(
    prefix="auth_state",
    ttl=AUTH_STATE_TTL_SECONDS,
    keep=lambda state: state is None or state.from_writer,
)
async def _auth_state(user_id: int) -> AuthState | None:
    if queries.auth_state is None:
        raise RuntimeError("no auth state query: add AuthenticationMiddleware to the app")
    return await queries.auth_state(user_id)


async def fetch_auth_state(user_id: int) -> Fetched[AuthState | None]:
    """The user's auth state, and whether it came from the cache."""
    return await Cache.fetch(_auth_state, user_id)


async def forget_auth_state(user_id: int) -> None:
    """Drop the user's cached auth state (it changed); inside a transaction, once it commits."""
    await Cache.remove(_auth_state, user_id)


async def forget_all_auth_states() -> None:
    """Drop every cached auth state (a tier's limits or a role's permissions changed); inside a
    transaction, once it commits."""
    await Cache.remove_by_prefix("auth_state")


async def hold_auth_state(user_id: int) -> None:
    """Hold the user's auth state after they wrote: their next reads go to the writer."""
    await Cache.hold(_auth_state, user_id)
