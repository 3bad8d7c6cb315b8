"""Task ids that say who caused the task: half random, half an HMAC of that half and the user's
id, so `GET /api/v1/tasks/{id}` can tell its owner apart without storing anything."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from core.config import config


def _signature(nonce: str, user_id: int) -> str:
    key = config.JWT_SECRET_KEY.encode()
    return hmac.new(key, f"task:{nonce}:{user_id}".encode(), hashlib.sha256).hexdigest()[:16]


def task_id_for(user_id: int | None) -> str:
    """A new task id; one that only `user_id` (and admins) may read when it is given."""
    if user_id is None:
        return str(uuid.uuid4())
    nonce = secrets.token_hex(8)
    return str(uuid.UUID(nonce + _signature(nonce, user_id)))


def caused_by(task_id: str, user_id: int) -> bool:
    digits = task_id.replace("-", "")
    return len(digits) == 32 and hmac.compare_digest(digits[16:], _signature(digits[:16], user_id))
