from __future__ import annotations

from app.post.service import post_service
from celery_task import async_task, run_every

# How often beat sends `delete_posts_of_deleted_users`; a run not started by then is dropped.
CATCH_UP_SECONDS = 300
CATCH_UP_TASK = "post.delete_posts_of_deleted_users"


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


@async_task(name=CATCH_UP_TASK)
async def delete_posts_of_deleted_users() -> int:
    """Soft-delete every live post whose author is deleted; returns how many there were.

    The catch-up for a `delete_posts_of_user` that was never queued (the broker was out of
    reach when the user was deleted) or gave up: a failed run is simply the next one's work.
    """
    return await post_service.delete_of_deleted_authors()


# Read by `celery beat` (`make beat`, compose's `beat`), which imports every app/*/tasks.py.
run_every(CATCH_UP_SECONDS, CATCH_UP_TASK)
