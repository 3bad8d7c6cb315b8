from __future__ import annotations

from collections.abc import Sequence

from app.post.exceptions import PostNotFoundException
from app.post.models import Post
from app.post.repository import PostRepository
from app.post.schemas import PostCreate, PostRead, PostUpdate
from core.db import Transactional
from core.db.base import utcnow
from core.exceptions import PreconditionFailedException
from core.fastapi.lists import ListQuery, Page
from core.helpers.cache import Cache

# The cache namespaces of one post and of the list pages.
POST_PREFIX, LIST_PREFIX = "post", "post_list"


class PostService:
    def __init__(self, repository: PostRepository | None = None) -> None:
        self.repository = repository or PostRepository()

    @Transactional()
    async def create(self, author_id: int, data: PostCreate) -> PostRead:
        post = await self.repository.add(Post(author_id=author_id, **data.model_dump()))
        # Registered now, carried out once the transaction commits.
        await Cache.remove_by_prefix(LIST_PREFIX)
        return PostRead.model_validate(post)

    @Cache.cached(prefix=POST_PREFIX, ttl=60)
    async def get(self, post_id: int) -> PostRead:
        post = await self.repository.get(post_id)
        if post is None:
            raise PostNotFoundException()
        return PostRead.model_validate(post)

    @Cache.cached(prefix=LIST_PREFIX, ttl=60)
    async def list_page(self, query: ListQuery) -> Page[PostRead]:
        return await self.repository.list(query)

    @Transactional()
    async def update(
        self, post_id: int, data: PostUpdate, versions: Sequence[int] | None = None
    ) -> PostRead:
        """Change what `data` sends; with `versions` (from If-Match) only if the post's version
        is one of them: the row is locked, so no other change slips in between."""
        post = await self._lock(post_id, versions)
        for field, value in data.model_dump(exclude_none=True).items():
            setattr(post, field, value)
        await self.repository.flush()
        await self._forget(post_id)
        return PostRead.model_validate(post)

    @Transactional()
    async def delete(self, post_id: int, versions: Sequence[int] | None = None) -> None:
        """Soft delete: the row stays, the post disappears from every read; with `versions`
        (from If-Match) only if the post's version is one of them."""
        post = await self._lock(post_id, versions)
        post.deleted_at = utcnow()
        await self.repository.flush()
        await self._forget(post_id)

    @Transactional()
    async def delete_by_author(self, author_id: int) -> int:
        """Soft-delete every post of `author_id`; how many there were."""
        deleted = await self.repository.soft_delete_by_author(author_id)
        # Even when none were left: a retry after a failed removal still removes them.
        await self._forget_all()
        return deleted

    @Transactional()
    async def delete_of_deleted_authors(self) -> int:
        """Soft-delete every post left behind by a deleted author (whose `delete_by_author`
        was never queued, or a post written while they were deleted); how many there were."""
        deleted = await self.repository.soft_delete_of_deleted_authors()
        # Run every few minutes: a cache is only emptied when something changed.
        if deleted:
            await self._forget_all()
        return deleted

    async def _lock(self, post_id: int, versions: Sequence[int] | None) -> Post:
        """The post, locked: If-Match holds until the transaction ends."""
        post = await self.repository.lock(post_id)
        if post is None:
            raise PostNotFoundException()
        if versions is not None and post.version not in versions:
            raise PreconditionFailedException()
        return post

    async def _forget_all(self) -> None:
        # The whole namespace, not each post: one removal however many posts.
        await Cache.remove_by_prefix(POST_PREFIX)
        await Cache.remove_by_prefix(LIST_PREFIX)

    async def _forget(self, post_id: int) -> None:
        await Cache.remove(self.get, post_id)
        await Cache.remove_by_prefix(LIST_PREFIX)


post_service = PostService()
