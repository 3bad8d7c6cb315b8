from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from app.post import IsAuthor, PostCreate, PostPage, PostRead, PostUpdate, post_service
from core.fastapi.dependencies import AnyOf, HasPermission, IsAuthenticated, PermissionDependency
from core.fastapi.schemas.current_user import CurrentUser

router = APIRouter(prefix="/posts", tags=["posts"])

PostId = Annotated[int, Path(ge=1, le=2**63 - 1)]

author = PermissionDependency([IsAuthenticated])
editor = PermissionDependency([IsAuthenticated, AnyOf(IsAuthor, HasPermission("posts:update"))])
remover = PermissionDependency([IsAuthenticated, AnyOf(IsAuthor, HasPermission("posts:delete"))])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PostRead)
async def create_post(body: PostCreate, user: CurrentUser = Depends(author)) -> PostRead:
    """Write a post; the caller is its author."""
    assert user.id is not None
    return await post_service.create(user.id, body)


@router.get("", response_model=PostPage)
async def list_posts(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> PostPage:
    """List posts, newest first; pass `next_cursor` back as `cursor` for the next page."""
    return await post_service.list_page(limit, cursor)


@router.get("/{post_id}", response_model=PostRead)
async def get_post(post_id: PostId) -> PostRead:
    """Read one post."""
    return await post_service.get(post_id)


@router.patch("/{post_id}", response_model=PostRead, dependencies=[Depends(editor)])
async def update_post(post_id: PostId, body: PostUpdate) -> PostRead:
    """Change a post's title or body (its author, or anyone with `posts:update`)."""
    return await post_service.update(post_id, body)


@router.delete(
    "/{post_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Depends(remover)]
)
async def delete_post(post_id: PostId) -> Response:
    """Delete a post (its author, or anyone with `posts:delete`); it is kept, marked deleted."""
    await post_service.delete(post_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
