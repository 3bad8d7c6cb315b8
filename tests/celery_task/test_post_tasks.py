"""Deleting a user soft-deletes their posts: the post module's UserDeleted handler sends a task on
queue `post`, which a real worker runs; the periodic catch-up deletes those whose task was lost."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from httpx import AsyncClient

from tests.celery_task.conftest import Worker
from tests.celery_task.test_broker_outage import RedisOutage
from tests.celery_task.test_celery import RESULT_TIMEOUT, result_of, wait_for_log
from tests.helpers import Account, signed_up
from tests.servers import ServerStack


@pytest.fixture(scope="module")
def post_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A worker on queue `post` only, as `make worker Q=post` starts one."""
    started = Worker(tmp_path_factory.mktemp("post-worker") / "worker.log", "post")
    yield started
    started.stop()


async def posts_of(client: AsyncClient, author: Account, count: int) -> list[int]:
    ids = []
    for n in range(count):
        created = await client.post(
            "/api/v1/posts", json={"title": f"p{n}", "body": "b"}, headers=author.headers
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    return ids


def live_posts(stack: ServerStack, author_id: int) -> int:
    query = f"SELECT count(*) FROM posts WHERE author_id = {author_id} AND deleted_at IS NULL"
    return int(stack.primary.psql(query))


def wait_until_no_live_posts(stack: ServerStack, author_id: int) -> None:
    deadline = time.monotonic() + RESULT_TIMEOUT
    while live_posts(stack, author_id):
        assert time.monotonic() < deadline, "the posts were not deleted"
        time.sleep(0.2)


async def test_deleting_a_user_soft_deletes_their_posts_on_queue_post(
    post_worker: Worker, client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    author, bystander = await signed_up(client), await signed_up(client)
    ids = await posts_of(client, author, 2)
    kept = await posts_of(client, bystander, 1)
    stack.wait_for_replica()
    for post_id in ids:  # cached
        assert (await client.get(f"/api/v1/posts/{post_id}")).status_code == 200

    deleted = await client.delete(f"/api/v1/users/{author.id}", headers=admin.headers)

    assert deleted.status_code == 204
    wait_until_no_live_posts(stack, author.id)
    stack.wait_for_replica()
    # The run's own line ("Task post.delete_posts_of_user[<id>] succeeded"), not the banner's
    # task list: the posts went on the worker of queue `post`.
    wait_for_log(post_worker, "post.delete_posts_of_user[", "succeeded")
    for post_id in ids:
        assert (await client.get(f"/api/v1/posts/{post_id}")).status_code == 404
    assert (await client.get(f"/api/v1/posts/{kept[0]}")).status_code == 200
    assert live_posts(stack, bystander.id) == 1


async def test_a_failing_run_is_logged_and_retried_and_the_user_stays_deleted(
    post_worker: Worker, client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    author = await signed_up(client)
    await posts_of(client, author, 2)
    # The database refuses to change this author's posts until the trigger is dropped.
    frozen = f"frozen_posts_{author.id}"
    stack.primary.psql(
        f"CREATE FUNCTION {frozen}() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'these posts are frozen'; END $$"
    )
    stack.primary.psql(
        f"CREATE TRIGGER {frozen} BEFORE UPDATE ON posts FOR EACH ROW "
        f"WHEN (OLD.author_id = {author.id}) EXECUTE FUNCTION {frozen}()"
    )
    try:
        deleted = await client.delete(f"/api/v1/users/{author.id}", headers=admin.headers)
        assert deleted.status_code == 204

        assert "these posts are frozen" in wait_for_log(post_worker, "retry")
        assert live_posts(stack, author.id) == 2
        gone = f"SELECT deleted_at IS NOT NULL FROM users WHERE id = {author.id}"
        assert stack.primary.psql(gone) == "t"
        assert (await client.get("/api/v1/users/me", headers=author.headers)).status_code == 401
    finally:
        stack.primary.psql(f"DROP TRIGGER IF EXISTS {frozen} ON posts")
        stack.primary.psql(f"DROP FUNCTION IF EXISTS {frozen}()")

    wait_until_no_live_posts(stack, author.id)


def posts_rows(stack: ServerStack, author_id: int) -> str:
    query = f"SELECT id, deleted_at, version FROM posts WHERE author_id = {author_id} ORDER BY id"
    return stack.primary.psql(query)


async def test_the_catch_up_deletes_the_posts_of_a_user_deleted_while_the_broker_was_down(
    post_worker: Worker, client: AsyncClient, stack: ServerStack
) -> None:
    """The lost task is real: Redis, the broker, is stopped while the user is deleted, so the
    UserDeleted handler cannot queue `post.delete_posts_of_user`; beat's periodic task, run here
    through the worker as beat sends it, deletes the posts all the same."""
    # Imported here: importing a task module reads the Celery settings, which the test sets.
    from app.post.tasks import delete_posts_of_deleted_users

    admin = await signed_up(client, stack, admin=True)
    author, bystander = await signed_up(client), await signed_up(client)
    ids = await posts_of(client, author, 2)
    kept = await posts_of(client, bystander, 1)
    stack.wait_for_replica()
    for post_id in [*ids, *kept]:  # cached
        assert (await client.get(f"/api/v1/posts/{post_id}")).status_code == 200

    outage = RedisOutage(stack, "stopped")
    outage.begin()
    try:
        deleted = await client.delete(f"/api/v1/users/{author.id}", headers=admin.headers)
    finally:
        await outage.end(client)

    # The deletion is saved; the cache shares the stopped Redis, so the answer says that other
    # servers may not have heard of it yet.
    assert deleted.status_code == 503, deleted.text
    assert deleted.json()["error_code"] == "CHANGE_NOT_PROPAGATED"
    gone = f"SELECT deleted_at IS NOT NULL FROM users WHERE id = {author.id}"
    assert stack.primary.psql(gone) == "t"
    assert live_posts(stack, author.id) == 2

    outcome = await delete_posts_of_deleted_users.adelay()
    caught_up = await result_of(outcome)

    wait_for_log(post_worker, outcome.id)  # run by the worker on queue `post`

    # At least this author's; the suite's other deleted users may have left posts too.
    assert isinstance(caught_up, int)
    assert caught_up >= 2
    assert live_posts(stack, author.id) == 0
    assert live_posts(stack, bystander.id) == 1
    stack.wait_for_replica()
    for post_id in ids:
        assert (await client.get(f"/api/v1/posts/{post_id}")).status_code == 404
    assert (await client.get(f"/api/v1/posts/{kept[0]}")).status_code == 200

    # Run again: nothing is left to do, and nothing changes.
    before = posts_rows(stack, author.id)
    assert await result_of(await delete_posts_of_deleted_users.adelay()) == 0
    assert posts_rows(stack, author.id) == before
