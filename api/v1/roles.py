from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from app.role import ROLE_LIST, Role, RoleCreate, RoleRead, RoleUpdate, role_service
from core.fastapi.dependencies import (
    IsAdmin,
    IsAuthenticated,
    PermissionDependency,
    RateLimit,
    RowId,
)
from core.fastapi.lists import ListQuery, Page

router = APIRouter(
    prefix="/roles",
    tags=["roles"],
    dependencies=[Depends(PermissionDependency([IsAuthenticated, IsAdmin]))],
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RoleRead,
    dependencies=[Depends(RateLimit())],
)
async def create_role(body: RoleCreate) -> Role:
    """Create a role with its permission codes, e.g. `users:read`."""
    return await role_service.create(body)


@router.get(
    "",
    response_model=Page[RoleRead],
    openapi_extra=ROLE_LIST.openapi,
)
async def list_roles(query: Annotated[ListQuery, Depends(ROLE_LIST.dependency)]) -> Page[RoleRead]:
    """List roles: sort, filter, and page by `cursor` (from `next_cursor`) or by `page`."""
    return await role_service.list(query)


@router.patch("/{role_id}", response_model=RoleRead, dependencies=[Depends(RateLimit())])
async def update_role(role_id: RowId, body: RoleUpdate) -> Role:
    """Change a role's description or permissions; holders see the change on their next request."""
    return await role_service.update(role_id, body)
