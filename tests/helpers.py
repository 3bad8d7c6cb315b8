from __future__ import annotations

from uuid import uuid4

from app.user import User


def unique_email() -> str:
    return f"{uuid4().hex[:16]}@example.com"


def new_user(email: str | None = None) -> User:
    """A user row without the cost of hashing a real password."""
    return User(email=email or unique_email(), password_hash="not-a-hash", nickname="test")
