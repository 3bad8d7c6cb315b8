from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status

from app.tier import (
    RATE_LIMIT_LIST,
    TIER_LIST,
    RateLimitCreate,
    RateLimitRead,
    Tier,
    TierCreate,
    TierRateLimit,
    TierRead,
    tier_service,
)
from core.config import TIER_NAME_PATTERN
from core.exceptions import UnprocessableEntityException
from core.fastapi.dependencies import (
    IsAdmin,
    IsAuthenticated,
    PermissionDependency,
    RateLimit,
    RowId,
    rate_limited_templates,
)
from core.fastapi.lists import ListQuery, Page

router = APIRouter(
    prefix="/tiers",
    tags=["tiers"],
    dependencies=[Depends(PermissionDependency([IsAuthenticated, IsAdmin]))],
)

TierName = Annotated[str, Path(pattern=TIER_NAME_PATTERN)]


class UnknownPathException(UnprocessableEntityException):
    error_code = "TIER__UNKNOWN_PATH"
    detail = "No rate-limited route has this path template."


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TierRead,
    dependencies=[Depends(RateLimit())],
)
async def create_tier(body: TierCreate) -> Tier:
    """Create a rate-limit tier; give users it with PUT /api/v1/users/{id}/tier."""
    return await tier_service.create(body)


@router.get("", response_model=Page[TierRead], openapi_extra=TIER_LIST.openapi)
async def list_tiers(query: Annotated[ListQuery, Depends(TIER_LIST.dependency)]) -> Page[TierRead]:
    """List tiers: sort, filter, and page by `cursor` (from `next_cursor`) or by `page`."""
    return await tier_service.list(query)


@router.post(
    "/{name}/rate-limits",
    status_code=status.HTTP_201_CREATED,
    response_model=RateLimitRead,
    dependencies=[Depends(RateLimit())],
)
async def add_rate_limit(name: TierName, body: RateLimitCreate, request: Request) -> TierRateLimit:
    """Limit one route (by its path template) for the tier's callers; applies at once."""
    # A typo, or a route without RateLimit, would limit nothing and look as if it did.
    # The template RateLimit keys on: `{id}`, even where the path says `{id:int}`.
    if body.path not in rate_limited_templates(request.app):
        raise UnknownPathException(f"No rate-limited route has the path template {body.path}.")
    return await tier_service.add_rate_limit(name, body)


@router.get(
    "/{name}/rate-limits",
    response_model=Page[RateLimitRead],
    openapi_extra=RATE_LIMIT_LIST.openapi,
)
async def list_rate_limits(
    name: TierName, query: Annotated[ListQuery, Depends(RATE_LIMIT_LIST.dependency)]
) -> Page[RateLimitRead]:
    """The tier's limits, by path unless sorted otherwise; paged as every list is."""
    return await tier_service.rate_limits(name, query)


@router.delete(
    "/{name}/rate-limits/{rate_limit_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(RateLimit())],
)
async def delete_rate_limit(name: TierName, rate_limit_id: RowId) -> Response:
    """Remove one of the tier's limits; the route's own limit applies again at once."""
    await tier_service.delete_rate_limit(name, rate_limit_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
