from __future__ import annotations

from fastapi import Request

from app.post.service import post_service
from core.db import use_writer
from core.fastapi.dependencies import BasePermission, declare_permissions, path_id

# The codes this module's routes check, in one place: roles may hold only declared codes.
PERMISSIONS = declare_permissions(
    {
        "posts:update": "Edit any post, not only one's own.",
        "posts:delete": "Delete any post, not only one's own.",
    }
)


class IsAuthor(BasePermission):
    """The caller wrote the route's `{post_id}` post; 404 when there is no such post."""

    async def has_permission(self, request: Request) -> bool:
        if (post_id := path_id(request, "post_id")) is None:
            return False
        # The request is about to write: its reads go to the writer from here on, so a post
        # written a moment ago is found. Cached, and an author never changes.
        use_writer()
        post = await post_service.get(post_id)
        return bool(post.author_id == request.user.id)
