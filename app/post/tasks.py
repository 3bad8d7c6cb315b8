from __future__ import annotations

from app.post.service import post_service
from celery_task import async_task


# Retried with growing pauses on any error (the database away, a lock timeout): the user's
# deletion is committed before this is sent, so it only ever catches up.
@async_task(
    name="post.delete_posts_of_user",
    autoretry_for=(Exception,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=10,
)
async def delete_posts_of_user(user_id: int) -> int:
    """Soft-delete the posts of a deleted user; returns how many there were."""
    return await post_service.delete_by_author(user_id)
