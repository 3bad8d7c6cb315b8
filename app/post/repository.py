from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update

from app.post.models import Post
from core.db import session
from core.db.base import utcnow


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

    async def page(self, before_id: int | None, limit: int) -> Sequence[Post]:
        """Live posts newest first, those older than `before_id` when given (keyset pagination:
        stable while posts are added)."""
        query = select(Post).where(Post.deleted_at.is_(None)).order_by(Post.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(Post.id < before_id)
        return (await session.scalars(query)).all()

    async def soft_delete_by_author(self, author_id: int) -> int:
        """Mark every live post of `author_id` deleted; how many were."""
        statement = (
            update(Post)
            .where(Post.author_id == author_id, Post.deleted_at.is_(None))
            # A bulk UPDATE bypasses the ORM's version counter: bumped here, ETags change too.
            .values(deleted_at=utcnow(), version=Post.version + 1)
            .execution_options(synchronize_session=False)
        )
        result = await session.execute(statement)
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def flush(self) -> None:
        await session.flush()
