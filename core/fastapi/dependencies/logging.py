from __future__ import annotations

from fastapi import Request

from core.logging import user_id_var


class Logging:
    """An app-wide dependency: puts the caller's id into the log context of the route's code.

    `FastAPI(dependencies=[Depends(Logging())])`; the request id is there already (middleware).
    """

    async def __call__(self, request: Request) -> None:
        user_id_var.set(request.user.id)
