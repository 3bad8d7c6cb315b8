"""Password hashing: argon2id for new hashes; older schemes still verify and get upgraded."""

from __future__ import annotations

from anyio import CapacityLimiter, to_thread
from passlib.context import CryptContext

# bcrypt hashes from older systems still verify, and are re-hashed with argon2id on login.
_context = CryptContext(schemes=["argon2", "bcrypt"], deprecated="auto", argon2__type="ID")

# Hashing is slow, memory-hungry work (argon2id: 64 MiB each): in threads, so the event loop keeps
# serving, and a few at a time, so a burst of logins queues instead of exhausting memory.
_hashing_slots = CapacityLimiter(4)


async def hash_password(password: str) -> str:
    return await to_thread.run_sync(_context.hash, password, limiter=_hashing_slots)


def _verify(password: str, password_hash: str) -> tuple[bool, str | None]:
    try:
        valid, new_hash = _context.verify_and_update(password, password_hash)
    except ValueError:
        # An unrecognised stored hash, or a password bcrypt cannot take: not a match.
        return False, None
    return bool(valid), new_hash


async def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """Check a password; also return a new hash when the stored one uses an outdated scheme."""
    return await to_thread.run_sync(_verify, password, password_hash, limiter=_hashing_slots)
