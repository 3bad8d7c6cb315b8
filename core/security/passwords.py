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


# bcrypt reads a password's first 72 bytes; the systems its hashes come from cut longer ones there.
BCRYPT_MAX_BYTES = 72


def _verify(password: str, password_hash: str) -> tuple[bool, str | None]:
    secret: str | bytes = password
    cut = _context.identify(password_hash) == "bcrypt" and len(password.encode()) > BCRYPT_MAX_BYTES
    if cut:
        secret = password.encode()[:BCRYPT_MAX_BYTES]
    try:
        valid = bool(_context.verify(secret, password_hash))
    except ValueError:
        return False, None  # an unrecognised stored hash: not a match
    if not valid or cut or not _context.needs_update(password_hash):
        # A password longer than bcrypt read stays on bcrypt: a typo past byte 72 passed the
        # check, and re-hashing the whole of it would make the typo the password.
        return valid, None
    return True, _context.hash(password)


async def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """Check a password; also return a new hash when the stored one uses an outdated scheme."""
    return await to_thread.run_sync(_verify, password, password_hash, limiter=_hashing_slots)
