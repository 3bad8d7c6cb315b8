"""`Depends(Logging())`: the caller's id in the log context of a route's code."""

from __future__ import annotations

from fastapi import Request

from core.logging import user_id_var

__all__ = ["Logging"]


class Logging:
    """Puts the caller's id in the log context, on apps served without the auth middleware (the
    user another authentication left in the scope; none: anonymous)."""

    async def __call__(self, request: Request) -> None:
        user_id_var.set(getattr(request.scope.get("user"), "id", None))
