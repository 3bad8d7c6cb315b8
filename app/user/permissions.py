from __future__ import annotations

from fastapi import Request

from core.fastapi.dependencies import BasePermission, declare_permissions, path_id

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
        user_id = path_id(request, "user_id")
        return user_id is not None and user_id == request.user.id
