"""Small reusable checks for request schemas."""

from __future__ import annotations


def no_control_characters(value: str) -> str:
    """Refuse NUL and other control characters: PostgreSQL cannot store NUL in text, and
    the others have no business in names shown to people."""
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError("must not contain control characters")
    return value
