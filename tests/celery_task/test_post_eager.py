"""In the embedded default (tasks run eagerly) a deleted user's posts go too, with no worker:
none runs while this module's tests do."""

from __future__ import annotations

from httpx import AsyncClient

from tests.celery_task.test_post_tasks import posts_of, wait_until_no_live_posts
from tests.helpers import signed_up
from tests.servers import ServerStack


async def test_in_eager_mode_the_posts_go_without_a_worker(
    eager: None, client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    author = await signed_up(client)
    await posts_of(client, author, 2)

    deleted = await client.delete(f"/api/v1/users/{author.id}", headers=admin.headers)

    assert deleted.status_code == 204
    wait_until_no_live_posts(stack, author.id)
