"""Posts, the example domain module, as a client sees it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import update

from app.post import Post, PostUpdate, post_service
from core.db import session, session_factory, session_scope, use_writer
from core.exceptions import PreconditionFailedException
from core.exceptions.handlers import UnhandledErrorMiddleware, install_exception_handlers
from core.fastapi.middlewares import SQLAlchemyMiddleware
from core.helpers.cache.cache_manager import hold_seconds
from tests.api.test_auth import account_with_permission
from tests.api.test_consistency import replication_paused
from tests.api.test_rate_limits import limit_tier, new_tier
from tests.helpers import Account, signed_up
from tests.servers import ServerStack

POSTS = "/api/v1/posts"


async def written(client: AsyncClient, account: Account, **fields: Any) -> dict[str, Any]:
    body = {"title": "Hello", "body": "First line.\nSecond line.", **fields}
    response = await client.post(POSTS, json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    post: dict[str, Any] = response.json()
    return post


async def test_an_author_writes_a_post_and_anyone_reads_it(
    client: AsyncClient, stack: ServerStack
) -> None:
    author = await signed_up(client)

    post = await written(client, author, title="  Hello  ")

    assert post["author_id"] == author.id
    assert post["title"] == "Hello"
    assert post["body"] == "First line.\nSecond line."
    assert post["version"] == 1
    assert stack.primary.psql(f"SELECT author_id, title FROM posts WHERE id = {post['id']}") == (
        f"{author.id}|Hello"
    )
    stack.wait_for_replica()  # others read the replica
    read = await client.get(f"{POSTS}/{post['id']}")
    assert read.status_code == 200
    assert read.json() == post


async def test_a_new_post_s_answer_says_where_it_is_and_its_etag(client: AsyncClient) -> None:
    author = await signed_up(client)
    headers = {**author.headers, "Idempotency-Key": "located"}

    created = await client.post(POSTS, json={"title": "t", "body": "b"}, headers=headers)
    replayed = await client.post(POSTS, json={"title": "t", "body": "b"}, headers=headers)
    found = await client.get(created.headers["location"])

    assert created.status_code == 201
    assert created.headers["location"] == f"{POSTS}/{created.json()['id']}"
    assert (found.status_code, found.json()) == (200, created.json())
    assert created.headers["etag"] == found.headers["etag"] == '"1"'
    assert replayed.headers["idempotency-replayed"] == "true"
    assert (replayed.headers["location"], replayed.headers["etag"]) == (
        created.headers["location"],
        created.headers["etag"],
    )


async def test_anonymous_writes_are_401(client: AsyncClient) -> None:
    author = await signed_up(client)
    post = await written(client, author)

    attempts = [
        await client.post(POSTS, json={"title": "t", "body": "b"}),
        await client.patch(f"{POSTS}/{post['id']}", json={"title": "t"}),
        await client.delete(f"{POSTS}/{post['id']}"),
    ]

    for response in attempts:
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error_code"] == "UNAUTHORIZED"


async def test_only_the_author_or_a_permission_holder_changes_a_post(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    author, stranger = await signed_up(client), await signed_up(client)
    updater = await account_with_permission(client, admin, "posts:update")
    post = await written(client, author)
    url = f"{POSTS}/{post['id']}"

    refused = await client.patch(url, json={"title": "Mine now"}, headers=stranger.headers)
    by_author = await client.patch(url, json={"title": "Edited"}, headers=author.headers)
    by_updater = await client.patch(url, json={"body": "Moderated."}, headers=updater.headers)
    updater_deletes = await client.delete(url, headers=updater.headers)
    stranger_deletes = await client.delete(url, headers=stranger.headers)

    assert refused.status_code == 403
    assert refused.json()["error_code"] == "FORBIDDEN"
    assert by_author.status_code == 200
    assert by_author.json()["title"] == "Edited"
    assert by_author.json()["version"] == 2
    assert by_updater.status_code == 200
    assert by_updater.json() | {"updated_at": None} == {
        **by_author.json(),
        "body": "Moderated.",
        "version": 3,
        "updated_at": None,
    }
    # posts:update does not allow deleting.
    assert updater_deletes.status_code == 403
    assert stranger_deletes.status_code == 403
    stack.wait_for_replica()
    assert (await client.get(url)).json()["title"] == "Edited"


async def test_a_deleted_post_is_gone_for_readers_and_kept_in_the_table(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    author = await signed_up(client)
    deleter = await account_with_permission(client, admin, "posts:delete")
    own, other = await written(client, author), await written(client, author)

    by_author = await client.delete(f"{POSTS}/{own['id']}", headers=author.headers)
    by_deleter = await client.delete(f"{POSTS}/{other['id']}", headers=deleter.headers)

    assert by_author.status_code == 204
    assert by_deleter.status_code == 204
    stack.wait_for_replica()
    for post in (own, other):
        gone = await client.get(f"{POSTS}/{post['id']}")
        assert gone.status_code == 404
        assert gone.json()["error_code"] == "POST__NOT_FOUND"
        again = await client.delete(f"{POSTS}/{post['id']}", headers=author.headers)
        assert again.status_code == 404
        kept = f"SELECT deleted_at IS NOT NULL FROM posts WHERE id = {post['id']}"
        assert stack.primary.psql(kept) == "t"


async def test_changing_a_post_that_does_not_exist_is_a_404(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    author = await signed_up(client)

    for caller in (author, admin):
        patched = await client.patch(
            f"{POSTS}/999999999", json={"title": "x"}, headers=caller.headers
        )
        assert patched.status_code == 404
        assert patched.json()["error_code"] == "POST__NOT_FOUND"
    assert (await client.get(f"{POSTS}/999999999")).status_code == 404
    assert (await client.get(f"{POSTS}/not-a-number")).status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {"title": "", "body": "b"},
        {"title": "t\u202e", "body": "b"},
        {"title": "two\nlines", "body": "b"},
        {"title": "t", "body": "nul \x00 inside"},
        {"title": "t", "body": "lone \ud800 surrogate"},
        {"title": "\u180e", "body": "b"},
        {"title": "t", "body": " \n\t "},
        {"title": "t" * 201, "body": "b"},
        {"title": "t", "body": "b", "author_id": 1},
        {"title": "t"},
    ],
)
async def test_bad_posts_are_422_and_nothing_is_written(
    client: AsyncClient, stack: ServerStack, body: dict[str, Any]
) -> None:
    author = await signed_up(client)

    # As JSON escapes, so a lone surrogate reaches the server as sent.
    headers = {**author.headers, "content-type": "application/json"}
    response = await client.post(POSTS, content=json.dumps(body).encode(), headers=headers)

    assert response.status_code == 422
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert stack.primary.psql(f"SELECT count(*) FROM posts WHERE author_id = {author.id}") == "0"


async def listed(client: AsyncClient, **params: Any) -> list[int]:
    """The ids of every page of the list, following `next_cursor`."""
    ids: list[int] = []
    cursor = None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        response = await client.get(POSTS, params=query)
        assert response.status_code == 200, response.text
        ids += [item["id"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return ids


@pytest.mark.parametrize("body", [{"title": None}, {"body": None}, {"title": "t", "body": None}])
async def test_a_field_sent_as_null_is_a_422_not_a_silent_no_op(
    client: AsyncClient, stack: ServerStack, body: dict[str, Any]
) -> None:
    author = await signed_up(client)
    created = await client.post(POSTS, json={"title": "kept", "body": "b"}, headers=author.headers)
    post_id = created.json()["id"]

    patched = await client.patch(f"{POSTS}/{post_id}", json=body, headers=author.headers)

    assert patched.status_code == 422
    assert ["body", next(k for k, v in body.items() if v is None)] in [
        error["loc"] for error in patched.json()["errors"]
    ]
    assert stack.primary.psql(f"SELECT title, version FROM posts WHERE id = {post_id}") == "kept|1"


async def test_the_list_pages_through_live_posts_newest_first(
    client: AsyncClient, stack: ServerStack
) -> None:
    author = await signed_up(client)
    ids = [(await written(client, author, title=f"n{n}"))["id"] for n in range(5)]
    await client.delete(f"{POSTS}/{ids[2]}", headers=author.headers)
    stack.wait_for_replica()

    assert await listed(client, author_id=author.id, limit=2) == [ids[4], ids[3], ids[1], ids[0]]
    first = (await client.get(POSTS, params={"author_id": author.id, "limit": 2})).json()
    assert first["items"][0] == (await client.get(f"{POSTS}/{ids[4]}")).json()
    paged = (await client.get(POSTS, params={"author_id": author.id, "page": 2, "limit": 3})).json()
    assert [item["id"] for item in paged["items"]] == [ids[0]]
    assert paged["total"] == 4


async def test_the_list_filters_and_sorts_by_the_declared_fields(
    client: AsyncClient, stack: ServerStack
) -> None:
    author, other = await signed_up(client), await signed_up(client)
    banana = (await written(client, author, title="banana bread"))["id"]
    apple = (await written(client, author, title="apple PIE"))["id"]
    cherry = (await written(client, author, title="cherry jam"))["id"]
    elsewhere = (await written(client, other, title="Apple crumble"))["id"]
    stack.wait_for_replica()
    created = {
        post["id"]: post["created_at"]
        for post in (await client.get(POSTS, params={"author_id": author.id})).json()["items"]
    }

    mine = {"author_id": author.id}
    assert await listed(client, **mine, sort="title") == [apple, banana, cherry]
    assert await listed(client, **mine, sort="-title", limit=1) == [cherry, banana, apple]
    assert await listed(client, **mine, sort="id") == [banana, apple, cherry]
    assert await listed(client, **mine, title__contains="APPLE") == [apple]
    assert set(await listed(client, title__contains="apple")) >= {apple, elsewhere}
    assert await listed(
        client, **mine, created_at__gte=created[apple], created_at__lte=created[cherry]
    ) == [cherry, apple]


@pytest.mark.parametrize(
    "params",
    [
        {"body__contains": "x"},
        {"title": "exact"},
        {"author_id__in": "1,2"},
        {"sort": "author_id"},
        {"sort": "body"},
        {"author_id": "me"},
        {"page": 1, "cursor": "x"},
        {"limit": 101},
        {"author_id": ["1", "2"]},  # sent twice: only one would be applied
        {"limit": [1, 2]},
    ],
)
async def test_undeclared_list_parameters_are_422_naming_them(
    client: AsyncClient, params: dict[str, Any]
) -> None:
    response = await client.get(POSTS, params=params)

    assert response.status_code == 422
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    named = {str(error["loc"][-1]) for error in response.json()["errors"]}
    assert named & set(params), response.json()


async def test_a_cursor_is_bound_to_its_sort(client: AsyncClient, stack: ServerStack) -> None:
    author = await signed_up(client)
    for n in range(3):
        await written(client, author, title=f"t{n}")
    stack.wait_for_replica()
    page = (await client.get(POSTS, params={"author_id": author.id, "limit": 1})).json()

    other_sort = await client.get(POSTS, params={"cursor": page["next_cursor"], "sort": "title"})
    nonsense = await client.get(POSTS, params={"cursor": "nonsense"})

    for response in (other_sort, nonsense):
        assert response.status_code == 400
        assert response.json()["error_code"] == "INVALID_CURSOR"


async def test_reads_are_cached_and_a_change_shows_in_the_window_and_after_it(
    client: AsyncClient, stack: ServerStack
) -> None:
    author = await signed_up(client)
    post = await written(client, author, title="Before")
    url = f"{POSTS}/{post['id']}"
    stack.wait_for_replica()
    await asyncio.sleep(hold_seconds())  # the list is held after the post was added
    assert (await client.get(url)).json()["title"] == "Before"
    assert (await client.get(POSTS)).json()["items"][0]["title"] == "Before"
    # A change behind the API's back is not seen: both reads come from the cache.
    stack.primary.psql(f"UPDATE posts SET title = 'Behind' WHERE id = {post['id']}")
    stack.wait_for_replica()
    assert (await client.get(url)).json()["title"] == "Before"
    assert (await client.get(POSTS)).json()["items"][0]["title"] == "Before"

    with replication_paused(stack):
        patched = await client.patch(url, json={"title": "After"}, headers=author.headers)
        assert patched.status_code == 200
        # Within the window: the author reads from the writer; others read the replica,
        # which has not caught up, and what they read there must not be kept.
        assert (await client.get(url, headers=author.headers)).json()["title"] == "After"
        assert (await client.get(url)).json()["title"] == "Behind"
        assert (await client.get(POSTS)).json()["items"][0]["title"] == "Behind"

    await asyncio.sleep(hold_seconds())
    assert (await client.get(url)).json()["title"] == "After"
    assert (await client.get(POSTS)).json()["items"][0]["title"] == "After"
    # Cached again: a second change behind the API's back is not seen.
    stack.primary.psql(f"UPDATE posts SET title = 'Behind again' WHERE id = {post['id']}")
    stack.wait_for_replica()
    assert (await client.get(url)).json()["title"] == "After"


async def test_a_stale_if_match_is_a_412_and_changes_nothing(
    client: AsyncClient, stack: ServerStack
) -> None:
    author = await signed_up(client)
    post = await written(client, author, title="First")
    url = f"{POSTS}/{post['id']}"
    stack.wait_for_replica()
    read = await client.get(url)
    tag = read.headers["etag"]
    assert (await client.get(url, headers={"If-None-Match": tag})).status_code == 304

    fresh = await client.patch(
        url, json={"title": "Second"}, headers={**author.headers, "If-Match": tag}
    )
    stale = await client.patch(
        url, json={"title": "Lost update"}, headers={**author.headers, "If-Match": tag}
    )

    assert fresh.status_code == 200
    assert fresh.headers["etag"] != tag
    stack.wait_for_replica()
    assert fresh.headers["etag"] == (await client.get(url)).headers["etag"]
    assert stale.status_code == 412
    assert stale.json()["error_code"] == "PRECONDITION_FAILED"
    assert stack.primary.psql(f"SELECT title, version FROM posts WHERE id = {post['id']}") == (
        "Second|2"
    )
    # A delete is guarded alike: what the client read is not what it would delete.
    stale_delete = await client.delete(url, headers={**author.headers, "If-Match": tag})
    assert stale_delete.status_code == 412
    live = f"SELECT deleted_at IS NULL FROM posts WHERE id = {post['id']}"
    assert stack.primary.psql(live) == "t"
    current = {**author.headers, "If-Match": fresh.headers["etag"]}
    assert (await client.delete(url, headers=current)).status_code == 204
    assert stack.primary.psql(live) == "f"


async def test_two_editors_racing_with_the_same_if_match_one_wins(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    author = await signed_up(client)
    post = await written(client, author)
    url = f"{POSTS}/{post['id']}"
    tag = (await client.get(url, headers=author.headers)).headers["etag"]

    responses = await asyncio.gather(
        *(
            client.patch(url, json={"title": title}, headers={**caller.headers, "If-Match": tag})
            for caller, title in ((author, "By the author"), (admin, "By the admin"))
        )
    )

    assert sorted(r.status_code for r in responses) == [200, 412]
    winner = next(r for r in responses if r.status_code == 200).json()
    row = stack.primary.psql(f"SELECT title, version FROM posts WHERE id = {post['id']}")
    assert row == f"{winner['title']}|2"


async def edited_elsewhere(post_id: int) -> None:
    """Another request's edit of the post, committed at once."""
    async with session_factory() as other:
        edit = update(Post).where(Post.id == post_id).values(title="Elsewhere")
        await other.execute(edit.values(version=Post.version + 1))


async def test_an_edit_committed_after_the_post_was_read_is_seen_under_the_lock(
    client: AsyncClient, stack: ServerStack
) -> None:
    author = await signed_up(client)
    post = await written(client, author, title="First")
    async with session_scope():
        use_writer()
        # Read earlier in the request, and still held while the edit takes the row lock.
        read = await post_service.repository.get(post["id"])
        await edited_elsewhere(post["id"])
        with pytest.raises(PreconditionFailedException):
            await post_service.update(post["id"], PostUpdate(title="Mine"), versions=[1])
        assert read is not None  # held until here
    assert stack.primary.psql(f"SELECT title, version FROM posts WHERE id = {post['id']}") == (
        "Elsewhere|2"
    )


async def test_a_write_that_lost_a_race_without_a_lock_is_a_409(
    client: AsyncClient, stack: ServerStack
) -> None:
    author = await signed_up(client)
    post = await written(client, author, title="First")
    app = FastAPI()
    install_exception_handlers(app)
    app.add_middleware(SQLAlchemyMiddleware)
    app.add_middleware(UnhandledErrorMiddleware)

    @app.post("/rename")
    async def rename() -> None:
        # Read, changed elsewhere, then written: what the embedded SQLite, which has no row
        # locks, does when two edits race.
        use_writer()
        mine = await session.get(Post, post["id"])
        assert mine is not None
        await edited_elsewhere(post["id"])
        mine.title = "Mine"
        await session.commit()

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as bare:
        response = await bare.post("/rename")

    assert response.status_code == 409, response.text
    assert response.json()["error_code"] == "CHANGED_MEANWHILE"
    assert stack.primary.psql(f"SELECT title FROM posts WHERE id = {post['id']}") == "Elsewhere"


async def test_an_idempotency_key_replays_the_first_post_instead_of_writing_twice(
    client: AsyncClient, stack: ServerStack
) -> None:
    author, other = await signed_up(client), await signed_up(client)
    body = {"title": "Once", "body": "Only once."}
    key = {"Idempotency-Key": f"post-{author.id}"}

    first = await client.post(POSTS, json=body, headers={**author.headers, **key})
    again = await client.post(POSTS, json=body, headers={**author.headers, **key})
    changed = await client.post(
        POSTS, json={**body, "title": "Twice"}, headers={**author.headers, **key}
    )
    # Keys are the caller's own: another user's same key is another request.
    someone_else = await client.post(POSTS, json=body, headers={**other.headers, **key})

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotency-replayed"] == "true"
    assert changed.status_code == 422
    assert changed.json()["error_code"] == "IDEMPOTENCY_KEY_REUSED"
    assert someone_else.status_code == 201
    assert someone_else.json()["id"] != first.json()["id"]
    count = f"SELECT count(*) FROM posts WHERE author_id = {author.id}"
    assert stack.primary.psql(count) == "1"


async def test_writes_are_limited_by_the_caller_s_tier_and_reads_are_not(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    author = await signed_up(client)
    tier = await new_tier(client, admin)
    await limit_tier(client, admin, tier, POSTS, 2)
    await limit_tier(client, admin, tier, f"{POSTS}/{{post_id}}", 1)
    moved = await client.put(
        f"/api/v1/users/{author.id}/tier", json={"tier": tier}, headers=admin.headers
    )
    assert moved.status_code == 200

    created = [
        await client.post(POSTS, json={"title": "t", "body": "b"}, headers=author.headers)
        for _ in range(3)
    ]
    url = f"{POSTS}/{created[0].json()['id']}"
    patched = [
        await client.patch(url, json={"title": "u"}, headers=author.headers) for _ in range(2)
    ]
    # Another route of the same path template: counted on its own.
    other = f"{POSTS}/{created[1].json()['id']}"
    deleted = [await client.delete(other, headers=author.headers) for _ in range(2)]

    assert [r.status_code for r in created] == [201, 201, 429]
    assert created[0].headers["ratelimit-policy"] == f'"{tier}";q=2;w=60'
    assert created[2].json()["error_code"] == "RATE_LIMITED"
    assert int(created[2].headers["retry-after"]) > 0
    assert [r.status_code for r in patched] == [200, 429]
    assert [r.status_code for r in deleted] == [204, 429]
    assert stack.primary.psql(f"SELECT count(*) FROM posts WHERE author_id = {author.id}") == "2"
    stack.wait_for_replica()
    for read in (await client.get(POSTS), await client.get(url)):
        assert read.status_code == 200
        assert "ratelimit" not in read.headers
