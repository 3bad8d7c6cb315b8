from __future__ import annotations

from app.post.tasks import delete_posts_of_user
from app.user import UserDeleted, UserDeletedParameter


@UserDeleted.subscribe
async def delete_posts_of_deleted_user(parameter: UserDeletedParameter) -> None:
    """Runs after the user's deletion is committed; the posts go on the worker of queue `post`."""
    await delete_posts_of_user.adelay(parameter.user_id)
