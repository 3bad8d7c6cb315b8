"""What a valid token still needs checked per request, kept in the cache backend.

A request with a valid access token costs one cache round trip (a multi-get of the user's auth
state and read-your-writes marker) and no database query. The state is loaded from the writer
on a miss, expires after AUTH_STATE_TTL_SECONDS, and is dropped right after any commit that
changes it, so role changes, logouts, password changes and deletions apply on the next request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson

from core.config import config
from core.db import after_commit
from core.helpers.cache import Cache

logger = logging.getLogger(__name__)

# Bounds how long a change can go unseen if dropping the cached state failed (cache outage).
AUTH_STATE_TTL_SECONDS = 60.0
# After a change the state is held (not cached) this long, so a request that loaded the old
# state just before the change cannot put it back. Longer than any state load takes.
AUTH_STATE_HOLD_SECONDS = 5.0
# What a held state's key contains.
HELD = b""


@dataclass(frozen=True, slots=True)
class AuthState:
    active: bool
    token_version: int = 0
    is_admin: bool = False
    permissions: frozenset[str] = frozenset()
    # Logged-out sessions whose access tokens may not have expired yet.
    revoked_sessions: frozenset[str] = frozenset()

    def dump(self) -> bytes:
        return orjson.dumps(
            [
                self.active,
                self.token_version,
                self.is_admin,
                sorted(self.permissions),
                sorted(self.revoked_sessions),
            ]
        )

    @classmethod
    def load(cls, raw: bytes) -> AuthState:
        active, version, is_admin, permissions, revoked = orjson.loads(raw)
        return cls(active, version, is_admin, frozenset(permissions), frozenset(revoked))


INACTIVE = AuthState(active=False)


def auth_state_key(user_id: int) -> str:
    return f"auth:state:{user_id}"


def recent_write_key(user_id: int) -> str:
    return f"ryw:{user_id}"


async def forget_auth_state(user_id: int) -> None:
    try:
        await Cache.backend.set(auth_state_key(user_id), HELD, AUTH_STATE_HOLD_SECONDS)
    except Exception as error:
        logger.warning(
            "could not drop the auth state of user %s (%r); it expires within %.0f s",
            user_id,
            error,
            AUTH_STATE_TTL_SECONDS,
        )


async def forget_auth_state_after_commit(user_id: int) -> None:
    """Drop the user's cached auth state once the current transaction has committed."""
    await after_commit(lambda: forget_auth_state(user_id))


async def remember_recent_write(user_id: int) -> None:
    """Send this user's reads to the writer for READ_YOUR_WRITES_SECONDS, in every process."""
    if config.READ_YOUR_WRITES_SECONDS <= 0:
        return
    try:
        await Cache.backend.set(recent_write_key(user_id), b"1", config.READ_YOUR_WRITES_SECONDS)
    except Exception as error:
        logger.warning("could not record a recent write of user %s (%r)", user_id, error)
