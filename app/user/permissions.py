from __future__ import annotations

from fastapi import Request

from core.fastapi.dependencies import BasePermission, declare_permissions

# The codes this module's routes check, in one place: roles may hold only declared codes.
PERMISSIONS = declare_permissions(
    {
        "users:read": "Read any user's account, not only one's own.",
        "users:delete": "Delete any user's account but an admin's.",
    }
)


class IsSelf(BasePermission):
    """The route's `{user_id}` is the caller's own id."""

    async def has_permission(self, request: Request) -> bool:
        try:
            return bool(int(request.path_params["user_id"]) == request.user.id)
        except (KeyError, ValueError):
            return False
