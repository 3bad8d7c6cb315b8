"""What a valid token still needs checked per request, kept in the cache backend and, while
this process hears every change, in the process itself.

The shared copy: a multi-get of the user's auth state and read-your-writes marker, one cache
round trip. The state is loaded from the writer on a miss, expires after AUTH_STATE_TTL_SECONDS,
and is dropped right after any commit that changes it, so role changes, logouts, password
changes and deletions apply on the next request.

The local copy (`local_auth_states`) saves that round trip: every change is also published, and
each process drops its copy when it hears of it. In the steady state a request with a valid
token then costs no round trip at all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import orjson

from core.config import config
from core.db import after_commit
from core.helpers.cache import Cache
from core.helpers.cache.change_feed import local_copy_seconds

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


# The change feed's topic: b"s<user id>" (the state changed), b"w<user id>" (the user wrote).
AUTH_TOPIC = b"auth"


class LocalAuthStates:
    """This process's copies of auth states and recent-write marks.

    Copies are used only while the cache's change feed is live; when it is not, `get` returns
    None and the caller reads the shared cache. Losing the feed drops every copy.
    """

    def __init__(self, max_users: int = 100_000) -> None:
        self.max_users = max_users
        self._states: dict[int, tuple[AuthState, float]] = {}
        self._recent_writes: dict[int, float] = {}
        # Bumped by every change heard: a state read before a change must not be kept after it.
        self.generation = 0
        Cache.changes.register(AUTH_TOPIC, self._heard, self.clear)

    def get(self, user_id: int) -> tuple[AuthState, bool] | None:
        """The user's state and whether they wrote recently, or None: ask the shared cache."""
        if not Cache.changes.live():
            return None
        found = self._states.get(user_id)
        if found is None:
            return None
        state, expires = found
        now = time.monotonic()
        if now >= expires:
            del self._states[user_id]
            return None
        return state, self.wrote_recently(user_id, now)

    def wrote_recently(self, user_id: int, now: float | None = None) -> bool:
        """Whether a write of this user was heard within READ_YOUR_WRITES_SECONDS."""
        until = self._recent_writes.get(user_id)
        return until is not None and until > (time.monotonic() if now is None else now)

    def keep(self, user_id: int, state: AuthState, recent_write: bool, generation: int) -> bool:
        """Keep what was read as of `generation`, unless a change was heard since. Whether it
        was kept."""
        if generation != self.generation or not Cache.changes.live():
            return False
        if len(self._states) >= self.max_users:
            self._states.pop(next(iter(self._states)), None)
        now = time.monotonic()
        self._states[user_id] = (state, now + local_copy_seconds())
        if recent_write:
            self.wrote(user_id, now)
        return True

    def forget(self, user_id: int) -> None:
        self.generation += 1
        self._states.pop(user_id, None)

    def wrote(self, user_id: int, now: float | None = None) -> None:
        """Send this user's reads to the writer for READ_YOUR_WRITES_SECONDS."""
        now = time.monotonic() if now is None else now
        self._recent_writes[user_id] = now + config.READ_YOUR_WRITES_SECONDS
        if len(self._recent_writes) >= self.max_users:
            self._recent_writes = {
                user: until for user, until in self._recent_writes.items() if until > now
            }

    def _heard(self, payload: bytes) -> None:
        user_id = int(payload[1:])
        if payload[:1] == b"s":
            self.forget(user_id)
        else:
            self.wrote(user_id)

    def clear(self) -> None:
        """Drop every copy."""
        self.generation += 1
        self._states.clear()
        self._recent_writes.clear()


local_auth_states = LocalAuthStates()


async def forget_auth_state(user_id: int) -> None:
    local_auth_states.forget(user_id)
    try:
        await Cache.backend.set(auth_state_key(user_id), HELD, AUTH_STATE_HOLD_SECONDS)
        await Cache.changes.announce(AUTH_TOPIC, b"s%d" % user_id)
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
    local_auth_states.wrote(user_id)
    try:
        await Cache.backend.set(recent_write_key(user_id), b"1", config.READ_YOUR_WRITES_SECONDS)
        await Cache.changes.announce(AUTH_TOPIC, b"w%d" % user_id)
    except Exception as error:
        logger.warning("could not record a recent write of user %s (%r)", user_id, error)
