from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from app.post import POST_LIST, IsAuthor, PostCreate, PostRead, PostUpdate, post_service
from core.fastapi.conditional import etag, if_match_versions, with_etag
from core.fastapi.dependencies import (
    AnyOf,
    HasPermission,
    IsAuthenticated,
    PermissionDependency,
    RateLimit,
    RowId,
)
from core.fastapi.idempotency import Idempotency
from core.fastapi.lists import ListQuery, Page
from core.fastapi.schemas.current_user import CurrentUser

router = APIRouter(prefix="/posts", tags=["posts"])

PostId = RowId

author = PermissionDependency([IsAuthenticated])
editor = PermissionDependency([IsAuthenticated, AnyOf(IsAuthor, HasPermission("posts:update"))])
remover = PermissionDependency([IsAuthenticated, AnyOf(IsAuthor, HasPermission("posts:delete"))])


# Writes are limited per caller (their tier's limit for the route, else RATE_LIMIT_DEFAULT).
@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PostRead,
    dependencies=[Depends(RateLimit())],
)
async def create_post(
    body: PostCreate, idempotency: Idempotency, user: CurrentUser = Depends(author)
) -> Response:
    """Write a post as its author; an `Idempotency-Key` makes retries safe."""
    assert user.id is not None
    author_id = user.id
    return await idempotency.run(lambda: post_service.create(author_id, body), PostRead, 201)


@router.get(
    "",
    response_model=Page[PostRead],
    openapi_extra=POST_LIST.openapi,
)
async def list_posts(query: Annotated[ListQuery, Depends(POST_LIST.dependency)]) -> Page[PostRead]:
    """List posts (newest first): sort, filter, page by `cursor` (from `next_cursor`) or `page`."""
    return await post_service.list_page(query)


@router.get("/{post_id}", response_model=PostRead)
async def get_post(post_id: PostId, request: Request) -> Response:
    """Read one post; its `ETag` serves `If-None-Match` here and `If-Match` on PATCH."""
    found = await post_service.get(post_id)
    return with_etag(request, found, found.version)


@router.patch(
    "/{post_id}", response_model=PostRead, dependencies=[Depends(RateLimit()), Depends(editor)]
)
async def update_post(
    post_id: PostId, body: PostUpdate, request: Request, response: Response
) -> PostRead:
    """Change a post's title or body (its author, or `posts:update`); `If-Match` guards it."""
    updated = await post_service.update(post_id, body, versions=if_match_versions(request))
    response.headers["ETag"] = etag(updated.version)
    return updated


@router.delete(
    "/{post_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(RateLimit()), Depends(remover)],
)
async def delete_post(post_id: PostId, request: Request) -> Response:
    """Delete a post (its author or `posts:delete`; `If-Match` guards it); kept, marked deleted."""
    await post_service.delete(post_id, versions=if_match_versions(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
