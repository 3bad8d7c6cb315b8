from __future__ import annotations

from fastapi import Request

from core.fastapi.dependencies import BasePermission


class IsSelf(BasePermission):
    """The route's `{user_id}` is the caller's own id."""

    async def has_permission(self, request: Request) -> bool:
        try:
            return bool(int(request.path_params["user_id"]) == request.user.id)
        except (KeyError, ValueError):
            return False
