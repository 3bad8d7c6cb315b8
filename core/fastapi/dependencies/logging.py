from __future__ import annotations

from fastapi import Request

from core.logging import user_id_var


class Logging:
    """Puts the caller's id into the log context of a route's code.

    The authentication middleware already does this for the whole app (more cheaply than a
    dependency on every route can); use `Depends(Logging())` on routers served without it.
    """

    async def __call__(self, request: Request) -> None:
        user_id_var.set(request.user.id)
