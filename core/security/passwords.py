"""Password hashing: argon2id for new hashes; older schemes still verify and get upgraded."""

from __future__ import annotations

from anyio import to_thread
from passlib.context import CryptContext

# bcrypt stays listed so hashes imported from older systems verify; "deprecated" makes
# needs_update() say they should be re-hashed with argon2id after a successful login.
_context = CryptContext(schemes=["argon2", "bcrypt"], deprecated="auto", argon2__type="ID")


# Hashing is deliberately slow CPU work: it runs in a worker thread so the event loop keeps
# serving other requests meanwhile.
async def hash_password(password: str) -> str:
    return await to_thread.run_sync(_context.hash, password)


async def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """Check a password; also return a new hash when the stored one uses an outdated scheme."""
    return await to_thread.run_sync(_context.verify_and_update, password, password_hash)
