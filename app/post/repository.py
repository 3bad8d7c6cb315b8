from __future__ import annotations

from sqlalchemy import ColumnElement, select, update

from app.post.models import Post
from app.post.schemas import PostRead
from app.user import User
from core.db import session
from core.db.base import utcnow
from core.fastapi.lists import ListField, ListQuery, ListSpec, Page

_posts = Post.__table__.c
# What GET /api/v1/posts sorts and filters by: the list helper builds the query parameters,
# their validation and the SQL from it.
POST_LIST = ListSpec(
    {
        "id": ListField(_posts.id, sort=True),
        "author_id": ListField(_posts.author_id, filters=("eq",)),
        "title": ListField(_posts.title, sort=True, filters=("contains",)),
        "created_at": ListField(_posts.created_at, sort=True, filters=("gte", "lte")),
    },
    key="id",
    default_sort="-created_at",
)
# The columns of PostRead, as plain columns: a list page builds no ORM objects.
_LIVE = select(
    _posts.id,
    _posts.author_id,
    _posts.title,
    _posts.body,
    _posts.created_at,
    _posts.updated_at,
    _posts.version,
).where(_posts.deleted_at.is_(None))


class PostRepository:
    """The SQL for posts. It may flush; committing belongs to the transaction boundary."""

    async def add(self, post: Post) -> Post:
        session.add(post)
        await session.flush()
        return post

    async def get(self, post_id: int) -> Post | None:
        query = select(Post).where(Post.id == post_id, Post.deleted_at.is_(None))
        return (await session.execute(query)).scalar_one_or_none()

    async def lock(self, post_id: int) -> Post | None:
        """The live post, its row locked until the transaction ends."""
        query = select(Post).where(Post.id == post_id, Post.deleted_at.is_(None)).with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def list(self, query: ListQuery) -> Page[PostRead]:
        """A page of live posts, as POST_LIST declares."""
        return await POST_LIST.fetch(_LIVE, query, PostRead)

    async def soft_delete_by_author(self, author_id: int) -> int:
        """Mark every live post of `author_id` deleted; how many were."""
        return await self._soft_delete(Post.author_id == author_id)

    async def soft_delete_of_deleted_authors(self) -> int:
        """Mark deleted every live post whose author is deleted; how many were."""
        deleted_authors = select(User.id).where(User.deleted_at.is_not(None))
        return await self._soft_delete(Post.author_id.in_(deleted_authors))

    async def _soft_delete(self, which: ColumnElement[bool]) -> int:
        statement = (
            update(Post)
            .where(which, Post.deleted_at.is_(None))
            # A bulk UPDATE bypasses the ORM's version counter: bumped here, ETags change too.
            .values(deleted_at=utcnow(), version=Post.version + 1)
            .execution_options(synchronize_session=False)
        )
        result = await session.execute(statement)
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def flush(self) -> None:
        await session.flush()
