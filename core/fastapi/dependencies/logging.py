"""`Depends(Logging())`: the caller's id in the log context of a route's code."""

from __future__ import annotations

from fastapi import Request

from core.logging import user_id_var

__all__ = ["Logging"]


class Logging:
    """Puts the caller's id in the log context, on routers served without the auth middleware."""

    async def __call__(self, request: Request) -> None:
        user_id_var.set(request.user.id)
